package domain

// Signing in and the step-up re-entry of the password, with the failed-login lock.

// SignIn decides a sign-in. passwordOK is the result of verifying the presented password
// against PasswordHash (done by the caller, who owns the hasher). On refusal the events
// are still to be appended, and the error is always ErrInvalidCredentials so callers
// cannot tell a locked account from a wrong password.
func (u User) SignIn(p Policy, passwordOK bool, sessionID string) ([]Event, error) {
	return u.authenticate(p, passwordOK, false, LoginSucceeded{SessionID: sessionID})
}

// ReconfirmPassword is the settings page's "enter the login Password and click Verify".
// Wrong passwords count toward the failed-login lock like any other.
func (u User) ReconfirmPassword(p Policy, passwordOK bool) ([]Event, error) {
	return u.authenticate(p, passwordOK, true, PasswordReconfirmed{})
}

func (u User) authenticate(p Policy, passwordOK, stepUp bool, success Event) ([]Event, error) {
	if !u.Registered {
		return nil, ErrInvalidCredentials
	}
	var reason Reason
	switch {
	case u.Deleted:
		reason = ReasonDeleted
	case u.Deactivated:
		reason = ReasonDeactivated
	case u.AdminLocked:
		reason = ReasonAdminLocked
	case u.Locked || u.FailedLogins >= p.MaxFailedLogins:
		reason = ReasonLocked
	}
	if reason != "" {
		return []Event{LoginFailed{Reason: reason, FailedAttempts: u.FailedLogins, StepUp: stepUp}}, ErrInvalidCredentials
	}
	if !passwordOK {
		return []Event{LoginFailed{Reason: ReasonWrongPassword, FailedAttempts: u.FailedLogins + 1, StepUp: stepUp}}, ErrInvalidCredentials
	}
	return []Event{success}, nil
}

// LockDue decides the failed-login lock on the folded count: AccountLocked once the
// wrong passwords reached the limit and no lock is recorded, else nothing (already
// locked, or an unlock cleared the count). It is a decision of its own, taken after a
// refusal is recorded: refusals are appended without an expected revision so that racing
// attempts all count, and may cross the limit without any of them seeing it; the lock is
// appended with one, so however many attempts race, exactly one AccountLocked lands.
func (u User) LockDue(p Policy) []Event {
	if !u.Registered || u.Locked || u.FailedLogins < p.MaxFailedLogins {
		return nil
	}
	return []Event{AccountLocked{FailedAttempts: u.FailedLogins}}
}
