package domain_test

import (
	"errors"
	"testing"
	"time"

	"selfreset/domain"
)

func TestStartEmailVerification(t *testing.T) {
	start := func(email string, now time.Time) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, p domain.Provider) ([]domain.Event, error) {
			return u.StartEmailVerification(pol, p, email, code2, now)
		}
	}
	sent := codeSent(code2, janeEmail, t0)
	threeCodes := concat(enabled(), []domain.Event{
		codeSent(code1, janeEmail, t0.Add(-14*time.Minute)),
		codeSent(code1, janeEmail, t0.Add(-10*time.Minute)),
		codeSent(code1, janeEmail, t0.Add(-time.Minute)),
	})
	runUserCases(t, []userCase{
		{name: "ok: address normalized, expires in 10 minutes", given: enabled(), when: start("  Jane@Example.ORG ", t0),
			then: []domain.Event{domain.RecoveryEmailCodeSent{CodeID: code2.ID, KeyID: "k1", CodeHash: code2.Hash,
				Email: janeEmail, SentAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}},
			check: func(t *testing.T, u domain.User) {
				if u.Code == nil || u.Code.ID != code2.ID || u.Code.Email != janeEmail || u.Code.Attempts != 0 || u.Code.Dead {
					t.Errorf("pending code %+v", u.Code)
				}
			}},
		{name: "provider not allowed", provider: registeredProvider(), given: enabled(), when: start(janeEmail, t0), err: domain.ErrProviderNotAllowed},
		{name: "user not enabled", given: registered(), when: start(janeEmail, t0), err: domain.ErrUserNotEnabled},
		{name: "admin locked", given: with(enabled(), domain.AccountAdminLocked{By: adminBy}), when: start(janeEmail, t0), err: domain.ErrAdminLocked},
		{name: "deactivated", given: with(enabled(), domain.AccountDeactivated{By: adminBy}), when: start(janeEmail, t0), err: domain.ErrDeactivated},
		{name: "unknown user", when: start(janeEmail, t0), err: domain.ErrUserNotFound},
		{name: "invalid email: no at sign", given: enabled(), when: start("jane.example.org", t0), err: domain.ErrInvalidInput},
		{name: "invalid email: no dot in the domain", given: enabled(), when: start("jane@localhost", t0), err: domain.ErrInvalidInput},
		{name: "invalid email: empty", given: enabled(), when: start("", t0), err: domain.ErrInvalidInput},
		{name: "throttled: a fourth code within 15 minutes", given: threeCodes, when: start(janeEmail, t0), err: domain.ErrThrottled},
		{name: "allowed again once the oldest leaves the window", given: threeCodes, when: start(janeEmail, t0.Add(time.Minute)),
			then: []domain.Event{codeSent(code2, janeEmail, t0.Add(time.Minute))}},
		// Codes and tokens share one budget (Policy.MaxTokensPerWindow).
		{name: "reset tokens do not use up the code allowance",
			given: with(configured(), issued(tokA, t0.Add(-3*time.Minute)), reissued(tokB, tokA, t0.Add(-2*time.Minute), true), reissued(tokC, tokB, t0.Add(-time.Minute), true)),
			when:  start(janeEmail, t0), then: []domain.Event{sent}},
		{name: "a newer code replaces an older one", given: with(enabled(), codeSent(code1, janeEmail, t0.Add(-time.Hour))), when: start(janeEmail, t0),
			then: []domain.Event{sent},
			check: func(t *testing.T, u domain.User) {
				if u.Code.ID != code2.ID {
					t.Errorf("pending code %+v", u.Code)
				}
			}},
	})
}

func TestVerifyEmailCode(t *testing.T) {
	verify := func(presented string, now time.Time) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, p domain.Provider) ([]domain.Event, error) {
			return u.VerifyEmailCode(pol, p, presented, fakeMatch, now)
		}
	}
	pending := with(enabled(), codeSent(code2, janeEmail, t0.Add(-time.Minute))) // expires t0+9m
	rejected := func(reason domain.Reason, n int) domain.Event {
		return domain.RecoveryEmailCodeRejected{CodeID: code2.ID, Reason: reason, Attempts: n}
	}
	dead := func(t *testing.T, u domain.User) {
		if u.Code == nil || !u.Code.Dead {
			t.Errorf("code should be dead: %+v", u.Code)
		}
	}
	runUserCases(t, []userCase{
		{name: "no pending code", given: enabled(), when: verify(cval2, t0), err: domain.ErrNoPendingCode},
		{name: "no pending code after it was verified", given: verified(), when: verify(cval1, t0), err: domain.ErrNoPendingCode},
		{name: "correct code", given: pending, when: verify(cval2, t0),
			then: []domain.Event{domain.RecoveryEmailVerified{CodeID: code2.ID, Email: janeEmail}},
			check: func(t *testing.T, u domain.User) {
				if u.VerifiedEmail != janeEmail || u.Code != nil || u.Configured || u.RecoveryEmail != "" {
					t.Errorf("state %+v", u)
				}
			}},
		{name: "correct code after four wrong ones", given: concat(pending, wrongCodes(code2, 4)), when: verify(cval2, t0),
			then: []domain.Event{domain.RecoveryEmailVerified{CodeID: code2.ID, Email: janeEmail}}},
		{name: "wrong code counts", given: pending, when: verify("999999", t0),
			then: []domain.Event{rejected("wrong_code", 1)}, err: domain.ErrInvalidCode,
			check: func(t *testing.T, u domain.User) {
				if u.Code.Attempts != 1 || u.Code.Dead {
					t.Errorf("code %+v", u.Code)
				}
			}},
		{name: "fifth wrong code kills it", given: concat(pending, wrongCodes(code2, 4)), when: verify("999999", t0),
			then: []domain.Event{rejected("too_many_attempts", 5)}, err: domain.ErrTooManyAttempts, check: dead},
		{name: "a dead code refuses even the right value", given: with(concat(pending, wrongCodes(code2, 4)), rejected("too_many_attempts", 5)),
			when: verify(cval2, t0), then: []domain.Event{rejected("too_many_attempts", 5)}, err: domain.ErrTooManyAttempts},
		{name: "one instant before expiry", given: pending, when: verify(cval2, t0.Add(9*time.Minute-time.Nanosecond)),
			then: []domain.Event{domain.RecoveryEmailVerified{CodeID: code2.ID, Email: janeEmail}}},
		{name: "expired exactly at ExpiresAt", given: pending, when: verify(cval2, t0.Add(9*time.Minute)),
			then: []domain.Event{rejected("code_expired", 0)}, err: domain.ErrCodeExpired},
		{name: "expired keeps the attempt count", given: concat(pending, wrongCodes(code2, 2)), when: verify(cval2, t0.Add(time.Hour)),
			then: []domain.Event{rejected("code_expired", 2)}, err: domain.ErrCodeExpired},
		{name: "an older code's value no longer works",
			given: with(enabled(), codeSent(code1, "old@example.org", t0.Add(-2*time.Minute)), codeSent(code2, janeEmail, t0.Add(-time.Minute))),
			when:  verify(cval1, t0), then: []domain.Event{rejected("wrong_code", 1)}, err: domain.ErrInvalidCode},
		{name: "provider no longer allowed", provider: registeredProvider(), given: pending, when: verify(cval2, t0), err: domain.ErrProviderNotAllowed},
		{name: "user disabled meanwhile", given: with(pending, domain.SelfResetDisabled{By: adminBy}), when: verify(cval2, t0), err: domain.ErrUserNotEnabled},
	})
}

// TestVerifyEmailCodeFiveWrong drives five wrong codes through the decision.
func TestVerifyEmailCodeFiveWrong(t *testing.T) {
	u := given(with(enabled(), codeSent(code2, janeEmail, t0))...)
	p := givenProvider(allowedProvider()...)
	for i := 1; i <= 5; i++ {
		events, err := u.VerifyEmailCode(pol, p, "000000", fakeMatch, t0.Add(time.Duration(i)*time.Second))
		want := domain.ErrInvalidCode
		if i == 5 {
			want = domain.ErrTooManyAttempts
		}
		if !errors.Is(err, want) {
			t.Fatalf("attempt %d: err = %v, want %v", i, err, want)
		}
		play(&u, events)
	}
	if _, err := u.VerifyEmailCode(pol, p, cval2, fakeMatch, t0.Add(time.Minute)); !errors.Is(err, domain.ErrTooManyAttempts) {
		t.Fatalf("the right code after five wrong ones: err = %v", err)
	}
}

func TestConfigureSelfReset(t *testing.T) {
	update := func(u domain.User, p domain.Provider) ([]domain.Event, error) { return u.ConfigureSelfReset(p) }
	runUserCases(t, []userCase{
		{name: "email not verified", given: enabled(), when: update, err: domain.ErrEmailNotVerified},
		{name: "code sent but not verified", given: with(enabled(), codeSent(code2, janeEmail, t0)), when: update, err: domain.ErrEmailNotVerified},
		{name: "ok", given: verified(), when: update,
			then: []domain.Event{domain.SelfResetConfigured{Email: janeEmail}},
			check: func(t *testing.T, u domain.User) {
				if !u.Configured || u.RecoveryEmail != janeEmail {
					t.Errorf("state %+v", u)
				}
			}},
		{name: "again changes nothing", given: configured(), when: update},
		{name: "a newly verified address replaces the old one",
			given: with(configured(), codeSent(code2, "jane.new@example.org", t0), domain.RecoveryEmailVerified{CodeID: code2.ID, Email: "jane.new@example.org"}),
			when:  update, then: []domain.Event{domain.SelfResetConfigured{Email: "jane.new@example.org"}}},
		{name: "an address verified earlier does not stand in for one still being proven",
			given: with(verified(), codeSent(code2, "jane.new@example.org", t0)), when: update, err: domain.ErrEmailNotVerified},
		{name: "provider not allowed", provider: registeredProvider(), given: verified(), when: update, err: domain.ErrProviderNotAllowed},
		{name: "user not enabled", given: with(verified(), domain.SelfResetDisabled{By: adminBy}), when: update, err: domain.ErrUserNotEnabled},
		{name: "deleted", given: with(verified(), domain.AccountDeleted{By: adminBy}), when: update, err: domain.ErrDeleted},
	})
}
