package domain_test

import (
	"testing"
	"time"

	"selfreset/domain"
)

// Issue 9: temporary passwords, the counted user administrators, the admin's
// "Send password reset", signed-in Change Password and the admin-locked sign-in message.

func TestTemporaryPassword(t *testing.T) {
	reg := domain.RegisterUserCommand{Login: "newbie", DisplayName: "New Bie", PasswordHash: oldHash, MustChangePassword: true}
	runUserCases(t, []userCase{
		{name: "register with a temporary password",
			when: func(u domain.User, p domain.Provider) ([]domain.Event, error) {
				return u.RegisterUser(p, acmeAdmin, reg)
			},
			then: []domain.Event{domain.UserRegistered{Provider: acme, Login: "newbie", DisplayName: "New Bie", PasswordHash: oldHash, MustChangePassword: true}},
			check: func(t *testing.T, u domain.User) {
				if !u.MustChangePassword {
					t.Error("temporary password not marked")
				}
			}},
		{name: "any password change clears the mark",
			given: []domain.Event{domain.UserRegistered{Provider: acme, Login: jane, DisplayName: "Jane", PasswordHash: oldHash, MustChangePassword: true}},
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
				return u.ChangePassword(pol, domain.PasswordChange{CurrentOK: true, Candidate: domain.PasswordCandidate{Password: goodPass}, Hash: newHash}, t0)
			},
			then: []domain.Event{domain.PasswordChanged{PasswordHash: newHash, Method: domain.PasswordChangedBySelf, ChangedAt: t0}},
			check: func(t *testing.T, u domain.User) {
				if u.MustChangePassword || u.PasswordHash != newHash || u.SessionEpoch != 1 {
					t.Errorf("after change: %+v", u)
				}
			}},
	})
}

func TestChangePasswordSignedIn(t *testing.T) {
	change := func(currentOK bool, pw, hash string) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
			return u.ChangePassword(pol, domain.PasswordChange{CurrentOK: currentOK, Candidate: domain.PasswordCandidate{Password: pw}, Hash: hash}, t0)
		}
	}
	changed := domain.PasswordChanged{PasswordHash: newHash, Method: domain.PasswordChangedBySelf, ChangedAt: t0, NotifyEmail: janeEmail}
	runUserCases(t, []userCase{
		{name: "configured user: the recovery email is told", given: configured(), when: change(true, goodPass, newHash),
			then: []domain.Event{changed}},
		{name: "not configured: nobody to tell", given: registered(), when: change(true, goodPass, newHash),
			then: []domain.Event{domain.PasswordChanged{PasswordHash: newHash, Method: domain.PasswordChangedBySelf, ChangedAt: t0}}},
		{name: "a pending reset token dies with the change", given: with(configured(), issued(tokA, t0.Add(-time.Minute))),
			when: change(true, goodPass, newHash),
			then: []domain.Event{changed, domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "password_changed"}}},
		{name: "wrong current password counts as a failed login", given: registered(), when: change(false, goodPass, newHash),
			then: []domain.Event{domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1, StepUp: true}},
			err:  domain.ErrInvalidCredentials},
		// The lock itself is decided next, on the folded count (User.LockDue), as for sign-in.
		{name: "the fifth wrong current password is recorded", given: concat(registered(), wrongPasswords(4)), when: change(false, goodPass, newHash),
			then: []domain.Event{domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 5, StepUp: true}},
			err:  domain.ErrInvalidCredentials},
		{name: "a locked account cannot change it", given: concat(registered(), lockedOut()), when: change(true, goodPass, newHash),
			then: []domain.Event{domain.LoginFailed{Reason: "locked", FailedAttempts: 5, StepUp: true}},
			err:  domain.ErrInvalidCredentials},
		{name: "the password rules apply", given: registered(), when: change(true, "short", newHash), err: domain.ErrPasswordRejected},
		{name: "not the login name", given: registered(), when: change(true, jane, newHash), err: domain.ErrPasswordRejected},
		{name: "not the current password", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
				return u.ChangePassword(pol, domain.PasswordChange{CurrentOK: true, Candidate: domain.PasswordCandidate{Password: goodPass, SameAsCurrent: true}}, t0)
			},
			err: domain.ErrPasswordRejected},
		{name: "no hash", given: registered(), when: change(true, goodPass, ""), err: domain.ErrInvalidInput},
		{name: "admin locked", given: with(registered(), domain.AccountAdminLocked{By: adminBy}), when: change(true, goodPass, newHash), err: domain.ErrAdminLocked},
		{name: "unknown user", when: change(true, goodPass, newHash), err: domain.ErrUserNotFound},
	})
}

func TestAdminSendReset(t *testing.T) {
	send := func(a domain.Actor) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, p domain.Provider) ([]domain.Event, error) {
			return u.AdminSendReset(pol, p, a, tokB, t0)
		}
	}
	sent := issued(tokB, t0)
	sent.By = adminBy
	superseding := sent
	superseding.Supersedes = tokA.ID
	runUserCases(t, []userCase{
		{name: "configured user gets a token", given: configured(), when: send(acmeAdmin), then: []domain.Event{sent},
			check: func(t *testing.T, u domain.User) {
				if u.Token == nil || u.Token.ID != tokB.ID || u.Token.State != domain.TokenActive {
					t.Errorf("token %+v", u.Token)
				}
			}},
		{name: "a live token is superseded", given: with(configured(), issued(tokA, t0.Add(-time.Minute))), when: send(acmeAdmin),
			then: []domain.Event{superseding}},
		{name: "a failed-login lock does not stop it (the reset lifts it)", given: concat(configured(), lockedOut()), when: send(acmeAdmin),
			then: []domain.Event{sent}},
		{name: "not configured", given: enabled(), when: send(acmeAdmin), err: domain.ErrNotConfigured},
		{name: "not enabled", given: registered(), when: send(acmeAdmin), err: domain.ErrUserNotEnabled},
		{name: "provider not allowed", provider: registeredProvider(), given: configured(), when: send(acmeAdmin), err: domain.ErrProviderNotAllowed},
		{name: "admin locked", given: with(configured(), domain.AccountAdminLocked{By: adminBy}), when: send(acmeAdmin), err: domain.ErrAdminLocked},
		{name: "deactivated", given: with(configured(), domain.AccountDeactivated{By: adminBy}), when: send(acmeAdmin), err: domain.ErrDeactivated},
		{name: "deleted", given: with(configured(), domain.AccountDeleted{By: adminBy}), when: send(acmeAdmin), err: domain.ErrDeleted},
		{name: "throttled like Forgot Password", given: with(configured(), issued(tokA, t0.Add(-3*time.Minute)),
			reissued(tokC, tokA, t0.Add(-2*time.Minute), true), reissued(tokD, tokC, t0.Add(-time.Minute), true)),
			when: send(acmeAdmin), err: domain.ErrThrottled},
		{name: "a plain user may not", given: configured(), when: send(acmeUser), err: domain.ErrForbidden},
		{name: "another provider's admin may not", given: configured(), when: send(otherAdmin), err: domain.ErrForbidden},
		{name: "unknown user", when: send(acmeAdmin), err: domain.ErrUserNotFound},
	})
}

func TestNoAdminActsOnThemselves(t *testing.T) {
	self := adminHistory()
	runUserCases(t, []userCase{
		{name: "lock self", given: self, when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.AdminLock(acmeAdmin) },
			err: domain.ErrSelfAction},
		{name: "deactivate self", given: self, when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Deactivate(acmeAdmin) },
			err: domain.ErrSelfAction},
		{name: "delete self", given: self, when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Delete(acmeAdmin) },
			err: domain.ErrSelfAction},
		{name: "an operator may", given: self, when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.AdminLock(ops) },
			then: []domain.Event{domain.AccountAdminLocked{By: "system:ops"}}},
	})
}

func TestSignInRefusal(t *testing.T) {
	for _, tc := range []struct {
		name      string
		history   []domain.Event
		passOK    bool
		wantAdmin bool
	}{
		{"admin locked, right password", with(registered(), domain.AccountAdminLocked{By: adminBy}), true, true},
		{"deactivated, right password", with(registered(), domain.AccountDeactivated{By: adminBy}), true, true},
		{"admin locked, wrong password", with(registered(), domain.AccountAdminLocked{By: adminBy}), false, false},
		{"deleted, right password", with(registered(), domain.AccountDeleted{By: adminBy}), true, false},
		{"failed-login lock, right password", concat(registered(), lockedOut()), true, false},
		{"unknown", nil, true, false},
	} {
		err := given(tc.history...).SignInRefusal(tc.passOK)
		if got := err == domain.ErrAccountAdminLocked; got != tc.wantAdmin {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestCountedUserAdmins(t *testing.T) {
	counted := func(logins ...string) []domain.Event {
		h := allowedProvider()
		for _, l := range logins {
			h = with(h, domain.ProviderUserAdminAdded{Login: l, By: "system:ops"})
		}
		return h
	}
	for _, tc := range []struct {
		name    string
		history []domain.Event
		when    func(p domain.Provider) ([]domain.Event, error)
		then    []domain.Event
		err     error
		admins  int
	}{
		{name: "count", history: counted(), when: func(p domain.Provider) ([]domain.Event, error) { return p.CountUserAdmin(acmeAdmin, "bob") },
			then: []domain.Event{domain.ProviderUserAdminAdded{Login: "bob", By: adminBy}}, admins: 1},
		{name: "count again changes nothing", history: counted("bob"),
			when: func(p domain.Provider) ([]domain.Event, error) { return p.CountUserAdmin(acmeAdmin, "bob") }, admins: 1},
		{name: "uncount while another remains", history: counted("admin", "bob"),
			when: func(p domain.Provider) ([]domain.Event, error) { return p.UncountUserAdmin(acmeAdmin, "bob") },
			then: []domain.Event{domain.ProviderUserAdminRemoved{Login: "bob", By: adminBy}}, admins: 1},
		{name: "the last one stays", history: counted("admin"),
			when: func(p domain.Provider) ([]domain.Event, error) { return p.UncountUserAdmin(ops, "admin") }, err: domain.ErrLastUserAdmin, admins: 1},
		{name: "an uncounted holder with nobody counted (older providers) stays", history: counted(),
			when: func(p domain.Provider) ([]domain.Event, error) { return p.UncountUserAdmin(ops, "admin") }, err: domain.ErrLastUserAdmin},
		{name: "an uncounted holder may go while someone is counted", history: counted("bob"),
			when: func(p domain.Provider) ([]domain.Event, error) { return p.UncountUserAdmin(ops, "admin") }, admins: 1},
		{name: "another provider's admin", history: counted("admin", "bob"),
			when: func(p domain.Provider) ([]domain.Event, error) { return p.UncountUserAdmin(otherAdmin, "bob") }, err: domain.ErrForbidden, admins: 2},
		{name: "a plain user", history: counted(),
			when: func(p domain.Provider) ([]domain.Event, error) { return p.CountUserAdmin(acmeUser, "bob") }, err: domain.ErrForbidden},
		{name: "unknown provider",
			when: func(p domain.Provider) ([]domain.Event, error) { return p.CountUserAdmin(ops, "bob") }, err: domain.ErrProviderNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.when(givenProvider(tc.history...))
			assertErr(t, err, tc.err)
			assertEvents(t, got, tc.then)
			if after := givenProvider(with(tc.history, got...)...); len(after.UserAdmins) != tc.admins {
				t.Errorf("counted %v, want %d", after.UserAdmins, tc.admins)
			}
		})
	}
}
