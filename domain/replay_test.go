package domain_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"selfreset/domain"
)

// TestSeedWalkthrough follows the seed from end to end through the decisions alone,
// appending whatever each decision returns, then replays the recorded history.
func TestSeedWalkthrough(t *testing.T) {
	must := func(events []domain.Event, err error) []domain.Event {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected refusal: %v", err)
		}
		return events
	}
	refused := func(want error) func([]domain.Event, error) []domain.Event {
		return func(events []domain.Event, err error) []domain.Event {
			t.Helper()
			if !errors.Is(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
			return events
		}
	}

	// An operator registers the agency and allows Self Password Reset for it.
	var p domain.Provider
	var providerLog []domain.Event
	applyP := func(events []domain.Event) {
		for _, e := range events {
			p.Apply(e)
		}
		providerLog = append(providerLog, events...)
	}
	applyP(must(p.RegisterProvider(ops, "acme", "Acme Care")))
	applyP(must(p.AllowSelfReset(ops)))

	// The operator creates a user admin, who creates Jane and enables her.
	var admin domain.User
	play(&admin, must(admin.RegisterUser(p, ops, domain.RegisterUserCommand{Login: "admin", DisplayName: "Ada", PasswordHash: oldHash,
		Roles: []string{domain.RoleUserAdmin}})))
	adminActor := domain.UserActor(admin)

	var u domain.User
	var log []domain.Event
	apply := func(events []domain.Event) {
		play(&u, events)
		log = append(log, events...)
	}
	apply(must(u.RegisterUser(p, adminActor, domain.RegisterUserCommand{Login: "Jane.Doe", DisplayName: "Jane Doe", PasswordHash: oldHash})))
	apply(must(u.EnableSelfReset(p, adminActor)))

	// Configure: password again, email, 6-digit code (one typo), Update.
	apply(must(u.ReconfirmPassword(pol, true)))
	apply(must(u.StartEmailVerification(pol, p, "Jane@Example.org", code1, t0)))
	apply(refused(domain.ErrInvalidCode)(u.VerifyEmailCode(pol, p, "111112", fakeMatch, t0.Add(time.Minute))))
	apply(must(u.VerifyEmailCode(pol, p, cval1, fakeMatch, t0.Add(2*time.Minute))))
	apply(must(u.ConfigureSelfReset(p)))
	if !u.Configured || u.RecoveryEmail != janeEmail {
		t.Fatalf("not configured: %+v", u)
	}

	// Days later Jane forgets her password and locks herself out.
	day := t0.Add(72 * time.Hour)
	for range 5 {
		apply(refused(domain.ErrInvalidCredentials)(u.SignIn(pol, false, "")))
		apply(u.LockDue(pol))
	}
	if !u.Locked {
		t.Fatal("not locked after five wrong passwords")
	}

	// Forgot Password? → token A; the mail is slow, she clicks Resend → token B.
	apply(must(u.RequestResetToken(pol, p, domain.ResetRequest{Email: "jane@example.org", EmailHash: "eh", Token: tokA}, day)))
	apply(must(u.ResendResetToken(pol, p, tokB, day.Add(time.Minute))))
	// Token A arrives first and she types it: told plainly to use the newer one.
	apply(refused(domain.ErrTokenSuperseded)(u.ResetPassword(pol, p, newPassword(valA, goodPass), fakeMatch, day.Add(2*time.Minute))))
	// A common password is refused without using up token B.
	if ev, err := u.ResetPassword(pol, p, domain.NewPassword{Token: valB, Candidate: domain.PasswordCandidate{Password: "password", IsCommon: true}, Hash: newHash},
		fakeMatch, day.Add(3*time.Minute)); !errors.Is(err, domain.ErrPasswordRejected) || len(ev) != 0 {
		t.Fatalf("common password: %v %s", err, dump(ev))
	}
	apply(must(u.ResetPassword(pol, p, newPassword(valB, goodPass), fakeMatch, day.Add(4*time.Minute))))
	if u.Locked || u.PasswordVersion != 1 || u.Token.State != domain.TokenUsed || !u.LastResetAt.Equal(day.Add(4*time.Minute)) {
		t.Fatalf("after reset: %+v token %+v", u, u.Token)
	}
	// Login Again.
	apply(must(u.SignIn(pol, true, "sess-2")))
	// The token is single use.
	apply(refused(domain.ErrTokenUsed)(u.ResetPassword(pol, p, newPassword(valB, "another good passphrase"), fakeMatch, day.Add(5*time.Minute))))

	// Replay: folding the recorded history from zero, twice, gives the live state.
	first, second := given(log...), given(log...)
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("replay is not deterministic:\n%+v\n%+v", first, second)
	}
	if !reflect.DeepEqual(first, u) {
		t.Fatalf("replay differs from the live state:\nreplay %+v\nlive   %+v", first, u)
	}
	if pp := givenProvider(providerLog...); !reflect.DeepEqual(pp, p) {
		t.Fatalf("provider replay %+v, live %+v", pp, p)
	}
}

// TestReplayDeterminism folds every test history twice from zero and compares.
func TestReplayDeterminism(t *testing.T) {
	histories := map[string][]domain.Event{
		"registered":   registered(),
		"configured":   configured(),
		"locked out":   concat(configured(), lockedOut()),
		"wrong codes":  concat(enabled(), []domain.Event{codeSent(code2, janeEmail, t0)}, wrongCodes(code2, 5)),
		"token chain":  with(configured(), issued(tokA, t0), reissued(tokB, tokA, t0.Add(time.Minute), true), reissued(tokC, tokB, t0.Add(2*time.Minute), true)),
		"wrong tokens": concat(configured(), []domain.Event{issued(tokA, t0)}, wrongTokens(tokA, 5)),
		"statuses": with(configured(), domain.AccountAdminLocked{By: adminBy}, domain.AccountAdminUnlocked{By: adminBy},
			domain.AccountDeactivated{By: adminBy}, domain.AccountReactivated{By: adminBy}, domain.AccountDeleted{By: adminBy}),
	}
	for name, h := range histories {
		a, b := given(h...), given(h...)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: replay differs:\n%+v\n%+v", name, a, b)
		}
	}
	// Unknown events are ignored, so a newer stream never breaks an older reader.
	a := given(with(configured(), domain.ProviderRegistered{Code: "X"})...)
	if b := given(configured()...); !reflect.DeepEqual(a, b) {
		t.Errorf("a foreign event changed the user")
	}
}

// TestSupersededTokensAreBounded: the state remembers only the last few replaced tokens.
func TestSupersededTokensAreBounded(t *testing.T) {
	h := configured()
	prev := secretFor("tok-0", "T0")
	h = append(h, issued(prev, t0))
	for i := 1; i <= 10; i++ {
		s := secretFor(fmt.Sprintf("tok-%d", i), fmt.Sprintf("T%d", i))
		h = append(h, reissued(s, prev, t0.Add(time.Duration(i)*time.Minute), true))
		prev = s
	}
	u := given(h...)
	if n := len(u.Superseded); n == 0 || n > 5 {
		t.Fatalf("Superseded holds %d tokens", n)
	}
	if last := u.Superseded[len(u.Superseded)-1]; last.ID != "tok-9" {
		t.Errorf("newest superseded = %q, want tok-9", last.ID)
	}
	p := givenProvider(allowedProvider()...)
	// The oldest, forgotten token is just a wrong guess now.
	if _, err := u.ResetPassword(pol, p, newPassword("T0", goodPass), fakeMatch, t0.Add(10*time.Minute)); !errors.Is(err, domain.ErrInvalidToken) {
		t.Errorf("forgotten token: err = %v", err)
	}
	if _, err := u.ResetPassword(pol, p, newPassword("T9", goodPass), fakeMatch, t0.Add(10*time.Minute)); !errors.Is(err, domain.ErrTokenSuperseded) {
		t.Errorf("recent superseded token: err = %v", err)
	}
}
