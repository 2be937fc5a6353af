package commands_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/internal/testkit"
	"selfreset/internal/teststore"
	"selfreset/secret"
)

// fixture is one test's world. The store is in memory under -short, else Postgres (a
// database of the test's own) or, with SELFRESET_EVENTSTORE_URL set, the shared
// EventStoreDB (see internal/teststore): the tests then keep to streams of their own
// through provider codes of their own (code).
type fixture struct {
	h     *commands.Handler
	store eventstore.Store
	keys  *secret.Keyring
	clock *testkit.Clock
	code  string // the provider the tests work in: "ACME" on a private store, "ACME<random>" on EventStoreDB
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store := teststore.Open(t)
	keys := testkit.Keyring(t, "k1")
	clk := testkit.NewClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	h := testkit.Handler(t, store, clk, keys, func(c *commands.Config) { c.MaxAttempts = 20 })
	return &fixture{h: h, store: store, keys: keys, clock: clk, code: teststore.ProviderCode(t, "ACME")}
}

var operator = domain.SystemActor("test")

const (
	oldPass  = "correct horse battery"
	newPass  = "staple-gun-wizard-42"
	recovery = "jane.doe@example.org"
)

// configuredUser walks the seed's first two sections: an admin enables jane, and jane
// configures Self Password Reset with a verified email.
func (f *fixture) configuredUser(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	must(t, f.h.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: f.code, Name: "Acme Care", AllowSelfReset: true}))
	must(t, f.h.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: f.code, Login: "admin", DisplayName: "Admin", Password: "admin-password-1", Roles: []string{domain.RoleUserAdmin}}))
	must(t, f.h.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: f.code, Login: "Jane", DisplayName: "Jane Doe", Password: oldPass}))
	admin := domain.Actor{Provider: f.code, Login: "admin"} // refreshed from the admin's stream by the handler
	must(t, f.h.EnableSelfReset(ctx, commands.UserCommand{Actor: admin, Provider: f.code, Login: "jane"}))
	must(t, f.h.VerifyPasswordForSettings(ctx, commands.VerifyPasswordForSettings{Provider: f.code, Login: "jane", Password: oldPass}))
	self := commands.SelfUser{Provider: f.code, Login: "jane"}
	codeID, err := f.h.StartEmailVerification(ctx, commands.StartEmailVerification{SelfUser: self, Email: recovery})
	must(t, err)
	value, err := f.keys.Value(secret.KindEmailCode, "k1", codeID)
	must(t, err)
	must(t, f.h.VerifyEmailCode(ctx, commands.VerifyEmailCode{SelfUser: self, Code: value}))
	must(t, f.h.ConfigureSelfReset(ctx, commands.ConfigureSelfReset{SelfUser: self}))
}

func (f *fixture) token(t *testing.T, tokenID string) string {
	t.Helper()
	v, err := f.keys.Value(secret.KindResetToken, "k1", tokenID)
	must(t, err)
	return v
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSeedWalkThrough(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)

	// Locked out by failed logins…
	for range 5 {
		if _, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: "wrong"}); !errors.Is(err, domain.ErrInvalidCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if _, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: oldPass}); !errors.Is(err, domain.ErrInvalidCredentials) {
		t.Fatalf("locked account signed in: %v", err)
	}
	// …forgets the password, gets a token, resets, and signs in again.
	tokenID, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: strings.ToLower(f.code), Login: "JANE", Email: "Jane.Doe@example.org"})
	must(t, err)
	f.clock.Add(4 * time.Minute)
	must(t, f.h.ResetPassword(ctx, commands.ResetPassword{Provider: f.code, Login: "jane", Token: strings.ToLower(f.token(t, tokenID)), NewPassword: newPass}))
	u, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: newPass, SessionID: "s1"})
	must(t, err)
	if u.Locked || u.PasswordVersion != 1 {
		t.Fatalf("after reset: locked=%v version=%d", u.Locked, u.PasswordVersion)
	}
	if _, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: oldPass}); !errors.Is(err, domain.ErrInvalidCredentials) {
		t.Fatalf("old password still works: %v", err)
	}
}

func TestTokenExpiresAfterFiveMinutes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	tokenID, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: recovery})
	must(t, err)
	f.clock.Add(5 * time.Minute)
	err = f.h.ResetPassword(ctx, commands.ResetPassword{Provider: f.code, Login: "jane", Token: f.token(t, tokenID), NewPassword: newPass})
	if !errors.Is(err, domain.ErrTokenExpired) {
		t.Fatalf("got %v, want token expired", err)
	}
	if _, err := f.h.ResendResetToken(ctx, commands.ResendResetToken{Provider: f.code, Login: "jane"}); !errors.Is(err, domain.ErrResendAfterExpiry) {
		t.Fatalf("resend after expiry: %v", err)
	}
}

// One token, many racing submissions: exactly one wins, under optimistic concurrency.
func TestConcurrentResetsWithOneToken(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	tokenID, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: recovery})
	must(t, err)
	token := f.token(t, tokenID)
	const racers = 8
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			errs[i] = f.h.ResetPassword(ctx, commands.ResetPassword{Provider: f.code, Login: "jane", Token: token, NewPassword: newPass + string(rune('a'+i))})
		})
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, domain.ErrTokenUsed):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d submissions succeeded with one token, want exactly 1", wins)
	}
	changes := countEvents(t, f, domain.UserStream(f.code, "jane"), "PasswordChanged")
	if changes != 1 {
		t.Fatalf("%d PasswordChanged events, want 1", changes)
	}
}

// Wrong tokens submitted concurrently are all counted: the fifth revokes the token.
func TestConcurrentWrongTokensAreAllCounted(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	tokenID, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: recovery})
	must(t, err)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			_ = f.h.ResetPassword(ctx, commands.ResetPassword{Provider: f.code, Login: "jane", Token: "0000000000", NewPassword: newPass})
		})
	}
	wg.Wait()
	err = f.h.ResetPassword(ctx, commands.ResetPassword{Provider: f.code, Login: "jane", Token: f.token(t, tokenID), NewPassword: newPass})
	if !errors.Is(err, domain.ErrTooManyAttempts) {
		t.Fatalf("right token after 5 concurrent wrong ones: %v, want too many attempts", err)
	}
	if n := countEvents(t, f, domain.UserStream(f.code, "jane"), "ResetTokenRevoked"); n != 1 {
		t.Fatalf("%d revocations, want 1", n)
	}
}

func TestUnmatchedRequestsAreRecordedWithoutTheEmail(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	nope := teststore.ProviderCode(t, "NOPE") // a provider nobody registered
	for _, r := range []commands.RequestResetToken{
		{Provider: nope, Login: "jane", Email: "stranger@example.net"},
		{Provider: f.code, Login: "nobody", Email: "stranger@example.net"},
	} {
		if _, err := f.h.RequestResetToken(ctx, r); !errors.Is(err, domain.ErrUnknownAccount) {
			t.Fatalf("%+v: %v", r, err)
		}
	}
	all, err := teststore.ReadUnmatched(ctx, f.store)
	must(t, err)
	// On EventStoreDB the streams are shared by every test and run: keep the requests for
	// the codes attempted here. On Postgres they hold nothing else.
	var recs []eventstore.RecordedEvent
	for _, r := range all {
		if p := teststore.EventProvider(r); p == nope || p == f.code {
			recs = append(recs, r)
		}
	}
	if len(recs) != 2 || (!teststore.Shared() && len(all) != 2) {
		t.Fatalf("%d unmatched events for %s and %s (%d in the streams), want 2", len(recs), nope, f.code, len(all))
	}
	for _, r := range recs {
		if bytes.Contains(r.Data, []byte("stranger@example.net")) {
			t.Fatalf("plain email stored: %s", r.Data)
		}
		var e domain.ResetRequestRejected
		must(t, json.Unmarshal(r.Data, &e))
		if e.Reason != domain.ReasonUnknownAccount || e.EmailMasked != "s***r@e***e.net" || e.EmailHash == "" {
			t.Fatalf("unmatched request recorded as %+v", e)
		}
		// New requests go to a shard, the one the keyed hash of the attempt names; the
		// legacy stream only keeps older history.
		if r.Stream == domain.UnmatchedStream || r.Stream != domain.UnmatchedShard(f.keys.HashEmail(e.Provider+"/"+e.Login)) {
			t.Fatalf("%s/%s recorded on %s", e.Provider, e.Login, r.Stream)
		}
	}
}

// No password, token or code value appears anywhere in the event history.
func TestNoSecretInTheHistory(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	tokenID, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: recovery})
	must(t, err)
	token := f.token(t, tokenID)
	must(t, f.h.ResetPassword(ctx, commands.ResetPassword{Provider: f.code, Login: "jane", Token: token, NewPassword: newPass}))
	// Read the streams themselves: the global feed may trail fresh appends (see eventstore.Store).
	var recs []eventstore.RecordedEvent
	for _, stream := range []string{domain.ProviderStream(f.code), domain.UserStream(f.code, "admin"), domain.UserStream(f.code, "jane")} {
		rs, err := f.store.ReadStream(ctx, stream, 0)
		must(t, err)
		recs = append(recs, rs...)
	}
	if len(recs) < 10 {
		t.Fatalf("only %d events", len(recs))
	}
	for _, r := range recs {
		for _, s := range []string{oldPass, newPass, token, "admin-password-1"} {
			if bytes.Contains(r.Data, []byte(s)) || bytes.Contains(r.Data, []byte(strings.ToLower(s))) {
				t.Fatalf("%s holds a secret in plain text: %s", r.Type, r.Data)
			}
		}
	}
}

func TestMetadataTravelsWithEvents(t *testing.T) {
	f := newFixture(t)
	ctx := commands.WithMetadata(context.Background(), eventstore.Metadata{CorrelationID: "req-1", ClientIP: "127.0.0.1", UserAgent: "test-agent"})
	must(t, f.h.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: f.code, Name: "Acme"}))
	recs, err := f.store.ReadStream(ctx, domain.ProviderStream(f.code), 0)
	must(t, err)
	md := recs[0].Metadata
	if md.Actor != "system:test" || md.CorrelationID != "req-1" || md.ClientIP != "127.0.0.1" || md.UserAgent != "test-agent" {
		t.Fatalf("metadata: %+v", md)
	}
	if !recs[0].OccurredAt.Equal(f.clock.Now()) {
		t.Fatalf("occurred at %v, want the injected clock's %v", recs[0].OccurredAt, f.clock.Now())
	}
}

func TestAdminRightsComeFromTheAdminsOwnStream(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	must(t, f.h.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: f.code, Login: "bob", DisplayName: "Bob", Password: "bob-password-1"}))
	// A caller claiming admin rights it does not have is refused.
	claimed := domain.Actor{Provider: f.code, Login: "jane", Admin: true}
	if err := f.h.EnableSelfReset(ctx, commands.UserCommand{Actor: claimed, Provider: f.code, Login: "bob"}); !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("non-admin enabled a user: %v", err)
	}
	// An admin whose role is revoked loses the right at once (bob keeps the provider
	// administered: the last user administrator's role cannot be revoked).
	must(t, f.h.GrantRole(ctx, commands.RoleCommand{UserCommand: commands.UserCommand{Actor: operator, Provider: f.code, Login: "bob"}, Role: domain.RoleUserAdmin}))
	must(t, f.h.RevokeRole(ctx, commands.RoleCommand{UserCommand: commands.UserCommand{Actor: operator, Provider: f.code, Login: "admin"}, Role: domain.RoleUserAdmin}))
	if err := f.h.EnableSelfReset(ctx, commands.UserCommand{Actor: domain.Actor{Provider: f.code, Login: "admin"}, Provider: f.code, Login: "bob"}); !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("revoked admin enabled a user: %v", err)
	}
}

func countEvents(t *testing.T, f *fixture, stream, typ string) int {
	t.Helper()
	recs, err := f.store.ReadStream(context.Background(), stream, 0)
	must(t, err)
	n := 0
	for _, r := range recs {
		if r.Type == typ {
			n++
		}
	}
	return n
}

// Racing wrong passwords all answer like an unknown account, and every one of them counts
// toward the lock (none escapes as a lost optimistic-concurrency race).
func TestConcurrentWrongLoginsAllCountAndLookAlike(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	const racers = 30
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			_, errs[i] = f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: "wrong"})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, domain.ErrInvalidCredentials) {
			t.Fatalf("racing wrong password answered %v, want invalid credentials", err)
		}
	}
	if n := countEvents(t, f, domain.UserStream(f.code, "jane"), "LoginFailed"); n != racers {
		t.Fatalf("%d LoginFailed events, want %d", n, racers)
	}
	// Each attempt was refused for a wrong password or, once the count was seen at the
	// limit, for the lock: together they are every racer.
	u, err := f.h.LoadUser(ctx, f.code, "jane")
	must(t, err)
	if locked := countReason(t, f, "locked"); u.FailedLogins+locked != racers || u.FailedLogins < domain.DefaultPolicy().MaxFailedLogins {
		t.Fatalf("failed logins folded to %d plus %d refused as locked, want %d in all and at least %d wrong passwords",
			u.FailedLogins, locked, racers, domain.DefaultPolicy().MaxFailedLogins)
	}
	// The right password is refused now: the account is locked.
	if _, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: oldPass}); !errors.Is(err, domain.ErrInvalidCredentials) {
		t.Fatalf("locked account signed in: %v", err)
	}
	if n := countEvents(t, f, domain.UserStream(f.code, "jane"), "AccountLocked"); n != 1 {
		t.Fatalf("%d AccountLocked recorded, want exactly 1", n)
	}
}

// Twenty wrong passwords at once, each refusal appended without an expected revision,
// lock the account with exactly one AccountLocked event, recorded before the last answer,
// and counting the wrong passwords it saw.
func TestConcurrentWrongLoginsRecordExactlyOneLock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	const racers = 20
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			var err error
			if i%4 == 0 { // step-up failures count toward the same lock
				err = f.h.VerifyPasswordForSettings(ctx, commands.VerifyPasswordForSettings{Provider: f.code, Login: "jane", Password: "wrong"})
			} else {
				_, err = f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: "wrong"})
			}
			if !errors.Is(err, domain.ErrInvalidCredentials) {
				t.Errorf("racer %d: %v, want invalid credentials", i, err)
			}
		})
	}
	wg.Wait()
	recs, err := f.store.ReadStream(ctx, domain.UserStream(f.code, "jane"), 0)
	must(t, err)
	var locks []domain.AccountLocked
	failed := 0
	for _, r := range recs {
		switch r.Type {
		case "AccountLocked":
			var e domain.AccountLocked
			must(t, json.Unmarshal(r.Data, &e))
			locks = append(locks, e)
		case "LoginFailed":
			failed++
		}
	}
	if failed != racers || len(locks) != 1 {
		t.Fatalf("%d LoginFailed and %d AccountLocked; want %d and exactly 1", failed, len(locks), racers)
	}
	if max := domain.DefaultPolicy().MaxFailedLogins; locks[0].FailedAttempts < max {
		t.Fatalf("the lock counted %d failed attempts, want at least %d", locks[0].FailedAttempts, max)
	}
	u, err := f.h.LoadUser(ctx, f.code, "jane")
	must(t, err)
	if !u.Locked {
		t.Fatal("the folded account is not locked")
	}
	// A later attempt adds a refusal and no second lock.
	if _, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: oldPass}); !errors.Is(err, domain.ErrInvalidCredentials) {
		t.Fatalf("locked account signed in: %v", err)
	}
	if n := countEvents(t, f, domain.UserStream(f.code, "jane"), "AccountLocked"); n != 1 {
		t.Fatalf("%d AccountLocked after a further attempt, want 1", n)
	}
}

// countReason counts jane's LoginFailed events with the given reason.
func countReason(t *testing.T, f *fixture, reason domain.Reason) int {
	t.Helper()
	recs, err := f.store.ReadStream(context.Background(), domain.UserStream(f.code, "jane"), 0)
	must(t, err)
	n := 0
	for _, r := range recs {
		var e domain.LoginFailed
		if r.Type == "LoginFailed" && json.Unmarshal(r.Data, &e) == nil && e.Reason == reason {
			n++
		}
	}
	return n
}

// An unmatched request delivered twice under one command id is recorded once (its
// record's id derives from the command id; on Postgres the second Update refuses it and
// the Append that follows answers the stored one); another id records it again.
func TestUnmatchedRedeliveryIsRecordedOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := commands.RequestResetToken{Provider: f.code, Login: "nobody", Email: "stranger@example.net"}
	id := uuid.New()
	for i, cmd := range []uuid.UUID{id, id, uuid.New()} {
		if _, err := f.h.RequestResetToken(commands.WithCommandID(ctx, cmd), req); !errors.Is(err, domain.ErrUnknownAccount) {
			t.Fatalf("delivery %d: %v, want ErrUnknownAccount", i+1, err)
		}
	}
	shard := domain.UnmatchedShard(f.keys.HashEmail(domain.NormalizeProviderCode(f.code) + "/nobody"))
	recs, err := f.store.ReadStream(ctx, shard, 0)
	must(t, err)
	mine := 0
	for _, r := range recs {
		if teststore.EventProvider(r) == f.code {
			mine++
		}
	}
	if mine != 2 {
		t.Fatalf("%d records of the request on %s after two deliveries of one command and one of another, want 2", mine, shard)
	}
}

// A command run again under the same command id (an intake message delivered twice) is
// decided once, with event ids derived from the command id; another id is a new decision.
func TestCommandIDMakesARedeliveryANoOp(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	stream := domain.UserStream(f.code, "jane")
	id := uuid.New()
	req := commands.RequestResetToken{Provider: f.code, Login: "jane", Email: recovery}
	if _, err := f.h.RequestResetToken(commands.WithCommandID(ctx, id), req); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.RequestResetToken(commands.WithCommandID(ctx, id), req); !errors.Is(err, commands.ErrAlreadyDecided) {
		t.Fatalf("second delivery: %v, want ErrAlreadyDecided", err)
	}
	if n := countEvents(t, f, stream, "ResetTokenIssued"); n != 1 {
		t.Fatalf("%d tokens issued, want 1", n)
	}
	recs, err := f.store.ReadStream(ctx, stream, 0)
	must(t, err)
	if last := recs[len(recs)-1]; last.ID != commands.EventID(id, stream, 0) {
		t.Errorf("event id %s, want the one derived from the command id", last.ID)
	}
	if _, err := f.h.RequestResetToken(commands.WithCommandID(ctx, uuid.New()), req); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, f, stream, "ResetTokenIssued"); n != 2 {
		t.Errorf("%d tokens issued after a second request, want 2", n)
	}
}
