package domain_test

import (
	"errors"
	"testing"

	"selfreset/domain"
)

func TestSignIn(t *testing.T) {
	signIn := func(ok bool) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.SignIn(pol, ok, "sess-1") }
	}
	reconfirm := func(ok bool) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.ReconfirmPassword(pol, ok) }
	}
	failedLogins := func(n int) func(*testing.T, domain.User) {
		return func(t *testing.T, u domain.User) {
			t.Helper()
			if u.FailedLogins != n {
				t.Errorf("FailedLogins = %d, want %d", u.FailedLogins, n)
			}
		}
	}
	// lockDue checks the state after the refusal: the count at n, not yet locked, and
	// LockDue deciding the one AccountLocked, which, once applied, is due no more.
	lockDue := func(n int) func(*testing.T, domain.User) {
		return func(t *testing.T, u domain.User) {
			t.Helper()
			if u.Locked || u.FailedLogins != n || !u.Active() {
				t.Fatalf("state %+v (a failed-login lock is not an admin status)", u)
			}
			events := u.LockDue(pol)
			assertEvents(t, events, []domain.Event{domain.AccountLocked{FailedAttempts: n}})
			play(&u, events)
			if !u.Locked || u.LockDue(pol) != nil {
				t.Errorf("after the lock: Locked %v, still due %v", u.Locked, u.LockDue(pol))
			}
		}
	}
	runUserCases(t, []userCase{
		{name: "success", given: registered(), when: signIn(true),
			then: []domain.Event{domain.LoginSucceeded{SessionID: "sess-1"}}},
		{name: "success resets the failed count", given: concat(registered(), wrongPasswords(3)), when: signIn(true),
			then: []domain.Event{domain.LoginSucceeded{SessionID: "sess-1"}}, check: failedLogins(0)},
		{name: "first wrong password", given: registered(), when: signIn(false),
			then: []domain.Event{domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1}},
			err:  domain.ErrInvalidCredentials, check: failedLogins(1)},
		{name: "fourth wrong password does not lock", given: concat(registered(), wrongPasswords(3)), when: signIn(false),
			then: []domain.Event{domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 4}},
			err:  domain.ErrInvalidCredentials},
		{name: "fifth wrong password: refused, and the lock is due", given: concat(registered(), wrongPasswords(4)), when: signIn(false),
			then: []domain.Event{domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 5}},
			err:  domain.ErrInvalidCredentials, check: lockDue(5)},
		{name: "racing failures crossed the limit unseen: refused as locked, and the lock is due",
			given: concat(registered(), []domain.Event{
				domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1}, domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1},
				domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 2}, domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 2},
				domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 3}}),
			when: signIn(true),
			then: []domain.Event{domain.LoginFailed{Reason: "locked", FailedAttempts: 5}},
			err:  domain.ErrInvalidCredentials, check: lockDue(5)},
		{name: "locked: the right password is refused", given: concat(registered(), lockedOut()), when: signIn(true),
			then: []domain.Event{domain.LoginFailed{Reason: "locked", FailedAttempts: 5}},
			err:  domain.ErrInvalidCredentials, check: failedLogins(5)},
		{name: "admin locked", given: with(registered(), domain.AccountAdminLocked{By: adminBy}), when: signIn(true),
			then: []domain.Event{domain.LoginFailed{Reason: "admin_locked"}}, err: domain.ErrInvalidCredentials},
		{name: "deactivated", given: with(registered(), domain.AccountDeactivated{By: adminBy}), when: signIn(true),
			then: []domain.Event{domain.LoginFailed{Reason: "deactivated"}}, err: domain.ErrInvalidCredentials},
		{name: "deleted", given: with(registered(), domain.AccountDeleted{By: adminBy}), when: signIn(true),
			then: []domain.Event{domain.LoginFailed{Reason: "deleted"}}, err: domain.ErrInvalidCredentials},
		{name: "deleted outranks admin locked",
			given: with(registered(), domain.AccountAdminLocked{By: adminBy}, domain.AccountDeleted{By: adminBy}), when: signIn(true),
			then: []domain.Event{domain.LoginFailed{Reason: "deleted"}}, err: domain.ErrInvalidCredentials},
		{name: "admin locked with a wrong password does not count", given: with(registered(), domain.AccountAdminLocked{By: adminBy}), when: signIn(false),
			then: []domain.Event{domain.LoginFailed{Reason: "admin_locked"}}, err: domain.ErrInvalidCredentials, check: failedLogins(0)},
		{name: "unknown account: nothing to record here", when: signIn(true), err: domain.ErrInvalidCredentials},
		{name: "unlocked by a reset: the new password works",
			given: concat(registered(), lockedOut(), []domain.Event{
				domain.PasswordChanged{PasswordHash: newHash, Method: domain.PasswordChangedBySelfReset, ChangedAt: t0},
				domain.AccountUnlocked{Reason: "password_reset"}}),
			when: signIn(true), then: []domain.Event{domain.LoginSucceeded{SessionID: "sess-1"}}},

		// the settings page's "enter the login Password and click Verify"
		{name: "reconfirm password", given: enabled(), when: reconfirm(true),
			then: []domain.Event{domain.PasswordReconfirmed{}}},
		{name: "reconfirm wrong password is a step-up failure", given: enabled(), when: reconfirm(false),
			then: []domain.Event{domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1, StepUp: true}},
			err:  domain.ErrInvalidCredentials, check: failedLogins(1)},
		{name: "reconfirm failures count toward the lock", given: concat(enabled(), wrongPasswords(4)), when: reconfirm(false),
			then: []domain.Event{domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 5, StepUp: true}},
			err:  domain.ErrInvalidCredentials, check: lockDue(5)},
		{name: "reconfirm on a locked account", given: concat(enabled(), lockedOut()), when: reconfirm(true),
			then: []domain.Event{domain.LoginFailed{Reason: "locked", FailedAttempts: 5, StepUp: true}},
			err:  domain.ErrInvalidCredentials},
	})
}

// TestSignInFiveWrongPasswords drives the decision five times, appending what it decides.
func TestSignInFiveWrongPasswords(t *testing.T) {
	u := given(registered()...)
	for i := 1; i <= 5; i++ {
		events, err := u.SignIn(pol, false, "")
		if !errors.Is(err, domain.ErrInvalidCredentials) {
			t.Fatalf("attempt %d: err = %v", i, err)
		}
		assertEvents(t, events, []domain.Event{domain.LoginFailed{Reason: "wrong_password", FailedAttempts: i}})
		play(&u, events)
		lock := u.LockDue(pol)
		if (i == 5) != (len(lock) == 1) {
			t.Fatalf("attempt %d: lock due %v", i, lock)
		}
		play(&u, lock)
	}
	events, err := u.SignIn(pol, true, "")
	assertErr(t, err, domain.ErrInvalidCredentials)
	assertEvents(t, events, []domain.Event{domain.LoginFailed{Reason: "locked", FailedAttempts: 5}})

	// Sign-in and step-up failures share one counter.
	u = given(registered()...)
	for i := 1; i <= 5; i++ {
		var events []domain.Event
		if i%2 == 0 {
			events, _ = u.ReconfirmPassword(pol, false)
		} else {
			events, _ = u.SignIn(pol, false, "")
		}
		play(&u, events)
		play(&u, u.LockDue(pol))
	}
	if !u.Locked || u.FailedLogins != 5 {
		t.Errorf("mixed failures: Locked %v, FailedLogins %d", u.Locked, u.FailedLogins)
	}
}
