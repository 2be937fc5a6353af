package domain_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"selfreset/domain"
)

// The domain has no clock: every decision takes "now". Tests move this fixed instant
// explicitly (t0.Add(...)); nothing sleeps and nothing reads time.Now.
var t0 = time.Date(2026, time.March, 2, 9, 0, 0, 0, time.UTC)

var pol = domain.DefaultPolicy()

const (
	acme      = "ACME"
	jane      = "jane.doe"
	janeEmail = "jane@example.org"
	janeMask  = "j***e@e***e.org"
	oldHash   = "$argon2id$v=19$m=19456,t=2,p=1$old"
	newHash   = "$argon2id$v=19$m=19456,t=2,p=1$new"
	goodPass  = "correct horse battery staple"
	adminBy   = "user:ACME/admin"
)

var (
	ops        = domain.SystemActor("ops")
	acmeAdmin  = domain.Actor{Provider: acme, Login: "admin", Admin: true}
	otherAdmin = domain.Actor{Provider: "OTHER", Login: "boss", Admin: true}
	acmeUser   = domain.Actor{Provider: acme, Login: "bob"}
)

// given folds a user's history from zero, as the command side does before deciding.
func given(events ...domain.Event) domain.User {
	var u domain.User
	for _, e := range events {
		u.Apply(e)
	}
	return u
}

// givenProvider folds a provider's history from zero.
func givenProvider(events ...domain.Event) domain.Provider {
	var p domain.Provider
	for _, e := range events {
		p.Apply(e)
	}
	return p
}

// play applies freshly decided events, as appending them and reloading would.
func play(u *domain.User, events []domain.Event) {
	for _, e := range events {
		u.Apply(e)
	}
}

// with returns a new history: base followed by more (never aliasing base).
func with(base []domain.Event, more ...domain.Event) []domain.Event {
	out := make([]domain.Event, 0, len(base)+len(more))
	return append(append(out, base...), more...)
}

// The domain never sees secret values, only (id, key id, keyed hash). The fake keyed hash
// of value v is "hash(v)" under key "k1"; fakeMatch is the matching SecretMatcher.
func fakeHash(v string) string { return "hash(" + v + ")" }

func fakeMatch(keyID, hash, presented string) bool {
	return keyID == "k1" && hash == fakeHash(presented)
}

func secretFor(id, value string) domain.Secret {
	return domain.Secret{ID: id, KeyID: "k1", Hash: fakeHash(value)}
}

var (
	tokA  = secretFor("tok-a", "AAAAAAAAAA")
	tokB  = secretFor("tok-b", "BBBBBBBBBB")
	tokC  = secretFor("tok-c", "CCCCCCCCCC")
	tokD  = secretFor("tok-d", "DDDDDDDDDD")
	code1 = secretFor("code-1", "111111")
	code2 = secretFor("code-2", "222222")
)

const (
	valA  = "AAAAAAAAAA"
	valB  = "BBBBBBBBBB"
	valC  = "CCCCCCCCCC"
	cval1 = "111111"
	cval2 = "222222"
)

// ---- provider histories ----

func registeredProvider() []domain.Event {
	return []domain.Event{domain.ProviderRegistered{Code: acme, Name: "Acme Care"}}
}

func allowedProvider() []domain.Event {
	return with(registeredProvider(), domain.ProviderSelfResetAllowed{By: "system:ops"})
}

// ---- user histories ----

func registered() []domain.Event {
	return []domain.Event{domain.UserRegistered{Provider: acme, Login: jane, DisplayName: "Jane Doe", PasswordHash: oldHash}}
}

func enabled() []domain.Event {
	return with(registered(), domain.SelfResetEnabled{By: adminBy})
}

// verified: the email was proven an hour ago (outside every throttling window) but Update
// was not clicked yet.
func verified() []domain.Event {
	return with(enabled(),
		codeSent(code1, janeEmail, t0.Add(-time.Hour)),
		domain.RecoveryEmailVerified{CodeID: code1.ID, Email: janeEmail})
}

func configured() []domain.Event {
	return with(verified(), domain.SelfResetConfigured{Email: janeEmail})
}

func codeSent(s domain.Secret, email string, at time.Time) domain.RecoveryEmailCodeSent {
	return domain.RecoveryEmailCodeSent{CodeID: s.ID, KeyID: s.KeyID, CodeHash: s.Hash, Email: email,
		SentAt: at, ExpiresAt: at.Add(10 * time.Minute)}
}

// issued is a Forgot Password token issued at at, superseding nothing.
func issued(s domain.Secret, at time.Time) domain.ResetTokenIssued {
	return domain.ResetTokenIssued{TokenID: s.ID, KeyID: s.KeyID, TokenHash: s.Hash, Email: janeEmail,
		IssuedAt: at, ExpiresAt: at.Add(5 * time.Minute)}
}

// reissued is a token superseding prev; resend tells whether it came from Resend.
func reissued(s, prev domain.Secret, at time.Time, resend bool) domain.ResetTokenIssued {
	e := issued(s, at)
	e.Supersedes, e.Resend = prev.ID, resend
	return e
}

func wrongPasswords(n int) []domain.Event {
	var out []domain.Event
	for i := 1; i <= n; i++ {
		out = append(out, domain.LoginFailed{Reason: "wrong_password", FailedAttempts: i})
	}
	return out
}

func lockedOut() []domain.Event {
	return with(wrongPasswords(5), domain.AccountLocked{FailedAttempts: 5})
}

func wrongTokens(s domain.Secret, n int) []domain.Event {
	var out []domain.Event
	for i := 1; i <= n; i++ {
		out = append(out, domain.ResetTokenRejected{TokenID: s.ID, Reason: "wrong_token", Attempts: i})
	}
	return out
}

func wrongCodes(s domain.Secret, n int) []domain.Event {
	var out []domain.Event
	for i := 1; i <= n; i++ {
		out = append(out, domain.RecoveryEmailCodeRejected{CodeID: s.ID, Reason: "wrong_code", Attempts: i})
	}
	return out
}

func concat(parts ...[]domain.Event) []domain.Event {
	var out []domain.Event
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ---- given / when / then ----

// userCase is one Zitadel-style command test on the User aggregate.
type userCase struct {
	name     string
	provider []domain.Event // the provider's history; nil means allowedProvider()
	given    []domain.Event // the user's history
	when     func(u domain.User, p domain.Provider) ([]domain.Event, error)
	then     []domain.Event
	err      error
	// check, if set, looks at the state after given and then are folded.
	check func(t *testing.T, after domain.User)
}

func runUserCases(t *testing.T, cases []userCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pe := tc.provider
			if pe == nil {
				pe = allowedProvider()
			}
			p := givenProvider(pe...)
			u := given(tc.given...)
			got, err := tc.when(u, p)
			assertErr(t, err, tc.err)
			assertEvents(t, got, tc.then)
			// Deciding is pure: the folded state is untouched.
			if before := given(tc.given...); !reflect.DeepEqual(u, before) {
				t.Errorf("the decision changed the state it was given:\n got %+v\nwant %+v", u, before)
			}
			if tc.check != nil {
				after := given(tc.given...)
				play(&after, got)
				tc.check(t, after)
			}
		})
	}
}

func assertErr(t *testing.T, got, want error) {
	t.Helper()
	switch {
	case want == nil && got != nil:
		t.Fatalf("error = %v (%q), want none", got, domain.Code(got))
	case want != nil && !errors.Is(got, want):
		t.Fatalf("error = %v (%q), want %v (%q)", got, domain.Code(got), want, domain.Code(want))
	}
}

func assertEvents(t *testing.T, got, want []domain.Event) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events differ:\n got %s\nwant %s", dump(got), dump(want))
	}
}

func dump(events []domain.Event) string {
	if len(events) == 0 {
		return "(none)"
	}
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "\n\t%s %+v", e.EventType(), e)
	}
	return b.String()
}
