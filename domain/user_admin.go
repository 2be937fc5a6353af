package domain

// A user administrator's decisions on an account: registration, roles, Enable and
// Disable of Self Password Reset, locks, deactivation and deletion.

// RegisterUserCommand carries a new account.
type RegisterUserCommand struct {
	Login        string
	DisplayName  string
	PasswordHash string
	Roles        []string
	// MustChangePassword marks PasswordHash as a temporary password.
	MustChangePassword bool
}

// RegisterUser opens an account at provider.
func (u User) RegisterUser(provider Provider, actor Actor, c RegisterUserCommand) ([]Event, error) {
	if !provider.Registered {
		return nil, ErrProviderNotFound
	}
	if !actor.CanAdminister(provider.Code) {
		return nil, ErrForbidden
	}
	login := NormalizeLogin(c.Login)
	if !ValidLogin(login) || c.DisplayName == "" || len(c.DisplayName) > 200 || c.PasswordHash == "" {
		return nil, ErrInvalidInput
	}
	for _, r := range c.Roles {
		if !KnownRole(r) {
			return nil, ErrUnknownRole
		}
	}
	if u.Registered {
		return nil, ErrUserExists
	}
	return []Event{UserRegistered{Provider: provider.Code, Login: login, DisplayName: c.DisplayName,
		PasswordHash: c.PasswordHash, Roles: c.Roles, MustChangePassword: c.MustChangePassword}}, nil
}

func (u User) administer(actor Actor) error {
	if !u.Registered {
		return ErrUserNotFound
	}
	if !actor.CanAdminister(u.Provider) {
		return ErrForbidden
	}
	if u.Deleted {
		return ErrDeleted
	}
	return nil
}

// GrantRole gives a role; granting a held role changes nothing.
func (u User) GrantRole(actor Actor, role string) ([]Event, error) {
	if err := u.administer(actor); err != nil {
		return nil, err
	}
	if !KnownRole(role) {
		return nil, ErrUnknownRole
	}
	if u.Roles[role] {
		return nil, nil
	}
	return []Event{RoleGranted{Role: role, By: actor.ID()}}, nil
}

// RevokeRole takes a role away; revoking a role not held changes nothing.
func (u User) RevokeRole(actor Actor, role string) ([]Event, error) {
	if err := u.administer(actor); err != nil {
		return nil, err
	}
	if !KnownRole(role) {
		return nil, ErrUnknownRole
	}
	if !u.Roles[role] {
		return nil, nil
	}
	return []Event{RoleRevoked{Role: role, By: actor.ID()}}, nil
}

// EnableSelfReset is the admin list's Enable: only inside a provider allowed to use it.
func (u User) EnableSelfReset(provider Provider, actor Actor) ([]Event, error) {
	if err := u.administer(actor); err != nil {
		return nil, err
	}
	if !provider.SelfResetAllowed {
		return nil, ErrProviderNotAllowed
	}
	if u.SelfResetEnabled {
		return nil, nil
	}
	return []Event{SelfResetEnabled{By: actor.ID()}}, nil
}

// DisableSelfReset is the admin list's Disable; a live token dies with it.
func (u User) DisableSelfReset(actor Actor) ([]Event, error) {
	if err := u.administer(actor); err != nil {
		return nil, err
	}
	if !u.SelfResetEnabled {
		return nil, nil
	}
	return append([]Event{SelfResetDisabled{By: actor.ID()}}, u.revokeActiveToken(ReasonSelfResetDisabled)...), nil
}

// AdminLock locks the account until an admin unlocks it; a self-service reset never does.
func (u User) AdminLock(actor Actor) ([]Event, error) {
	if err := u.administer(actor); err != nil || u.AdminLocked {
		return nil, err
	}
	return u.shutOut(actor, AccountAdminLocked{By: actor.ID()}, ReasonAdminLocked)
}

// AdminUnlock lifts an admin lock and the failed-login lock with it.
func (u User) AdminUnlock(actor Actor) ([]Event, error) {
	if err := u.administer(actor); err != nil {
		return nil, err
	}
	var events []Event
	if u.AdminLocked {
		events = append(events, AccountAdminUnlocked{By: actor.ID()})
	}
	// Failed logins count even where racing attempts crossed the limit before an
	// AccountLocked was recorded: an unlock clears them too.
	if u.Locked || u.FailedLogins > 0 {
		events = append(events, AccountUnlocked{Reason: ReasonByAdmin, By: actor.ID()})
	}
	return events, nil
}

// Deactivate suspends the account.
func (u User) Deactivate(actor Actor) ([]Event, error) {
	if err := u.administer(actor); err != nil || u.Deactivated {
		return nil, err
	}
	return u.shutOut(actor, AccountDeactivated{By: actor.ID()}, ReasonDeactivated)
}

// Reactivate restores a deactivated account.
func (u User) Reactivate(actor Actor) ([]Event, error) {
	if err := u.administer(actor); err != nil || !u.Deactivated {
		return nil, err
	}
	return []Event{AccountReactivated{By: actor.ID()}}, nil
}

// Delete ends the account for good; nothing brings it back.
func (u User) Delete(actor Actor) ([]Event, error) {
	if err := u.administer(actor); err != nil {
		if err == ErrDeleted {
			return nil, nil
		}
		return nil, err
	}
	return u.shutOut(actor, AccountDeleted{By: actor.ID()}, ReasonDeleted)
}

// shutOut records e, an admin's lock, deactivation or deletion of the account: never of
// their own account (they would lock themselves out), and a live token dies with it.
func (u User) shutOut(actor Actor, e Event, reason Reason) ([]Event, error) {
	if err := u.notSelf(actor); err != nil {
		return nil, err
	}
	return append([]Event{e}, u.revokeActiveToken(reason)...), nil
}
