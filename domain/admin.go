package domain

import "time"

// The User Administrator's tools beyond Enable/Disable (issue 9): users created with a
// temporary password, the "never without a user administrator" rule, "Send password
// reset", and the signed-in Change Password.

// More refusals of the administration tools.
var (
	ErrLastUserAdmin = &Error{"last_user_admin", "the provider must keep at least one user administrator; grant the role to someone else first"}
	ErrSelfAction    = &Error{"self_action", "you cannot lock, deactivate or delete your own account; ask another user administrator"}
	// ErrAccountAdminLocked is the sign-in refusal for the right password on an account an
	// administrator locked or deactivated: Forgot Password? can never help there.
	ErrAccountAdminLocked     = &Error{"account_admin_locked", "this account has been locked or deactivated by a user administrator; contact your user administrator (Forgot Password? cannot unlock it)"}
	ErrPasswordChangeRequired = &Error{"password_change_required", "change your temporary password before doing anything else"}
)

// PasswordChangedBySelf is a signed-in user's own Change Password.
const PasswordChangedBySelf = "signed_in"

// ProviderUserAdminAdded counts Login among the provider's user administrators. The
// provider stream keeps this set so that "the last user administrator" is decided under
// optimistic concurrency on one stream, never from a read model.
type ProviderUserAdminAdded struct {
	Login string `json:"login"`
	By    string `json:"by"`
}

// ProviderUserAdminRemoved takes Login out of that set (role revoked or account deleted).
type ProviderUserAdminRemoved struct {
	Login string `json:"login"`
	By    string `json:"by"`
}

func (ProviderUserAdminAdded) EventType() string   { return "ProviderUserAdminAdded" }
func (ProviderUserAdminRemoved) EventType() string { return "ProviderUserAdminRemoved" }

// applyAdmin folds this file's provider events.
func (p *Provider) applyAdmin(e Event) {
	switch e := e.(type) {
	case ProviderUserAdminAdded:
		if p.UserAdmins == nil {
			p.UserAdmins = map[string]bool{}
		}
		p.UserAdmins[e.Login] = true
	case ProviderUserAdminRemoved:
		delete(p.UserAdmins, e.Login)
	}
}

// CountUserAdmin records login as one of the provider's user administrators. The caller
// has just granted the role (or registered the user with it) on the user's stream;
// repeating it changes nothing, so a retry repairs an interrupted grant.
func (p Provider) CountUserAdmin(actor Actor, login string) ([]Event, error) {
	if !p.Registered {
		return nil, ErrProviderNotFound
	}
	if !actor.CanAdminister(p.Code) {
		return nil, ErrForbidden
	}
	if p.UserAdmins[login] {
		return nil, nil
	}
	return []Event{ProviderUserAdminAdded{Login: login, By: actor.ID()}}, nil
}

// UncountUserAdmin is decided before the role leaves login's stream: it is refused when
// no other counted user administrator would remain. Providers whose administrators were
// registered before the count existed have an empty set; they must grant the role once
// more (which counts the holder) before anyone can be revoked.
func (p Provider) UncountUserAdmin(actor Actor, login string) ([]Event, error) {
	if !p.Registered {
		return nil, ErrProviderNotFound
	}
	if !actor.CanAdminister(p.Code) {
		return nil, ErrForbidden
	}
	others := len(p.UserAdmins)
	if p.UserAdmins[login] {
		others--
	}
	if others < 1 {
		return nil, ErrLastUserAdmin
	}
	if !p.UserAdmins[login] {
		return nil, nil
	}
	return []Event{ProviderUserAdminRemoved{Login: login, By: actor.ID()}}, nil
}

// notSelf refuses an administrator locking, deactivating or deleting their own account:
// they would lock themselves out, and perhaps the provider with them.
func (u User) notSelf(actor Actor) error {
	if !actor.System && actor.Provider == u.Provider && actor.Login == u.Login {
		return ErrSelfAction
	}
	return nil
}

// SignInRefusal refines a refused sign-in for whoever typed the right password: an
// account an administrator locked or deactivated is told to contact them rather than to
// try Forgot Password?, which refuses such accounts. A wrong password keeps the uniform
// answer, so nobody learns an account's state without its password. Deleted accounts
// stay indistinguishable from unknown ones.
func (u User) SignInRefusal(passwordOK bool) error {
	if passwordOK && u.Registered && !u.Deleted && (u.AdminLocked || u.Deactivated) {
		return ErrAccountAdminLocked
	}
	return nil
}

// AdminSendReset is the admin list's "Send password reset": a token to the user's
// configured recovery email, under the same rules as a Forgot Password request that
// matched (account active, provider allowed, user enabled and configured, throttled).
func (u User) AdminSendReset(p Policy, provider Provider, actor Actor, t Secret, now time.Time) ([]Event, error) {
	if err := u.administer(actor); err != nil {
		return nil, err
	}
	if err := u.statusError(); err != nil {
		return nil, err
	}
	if reason := u.requestRefusal(p, provider, now); reason != "" {
		return nil, reasonError(reason)
	}
	e := u.issue(p, t, now, false)
	e.By = actor.ID()
	return []Event{e}, nil
}

// PasswordChange is a signed-in Change Password with the facts the caller looked up: the
// current password verified (CurrentOK) and the new one in the common-password list
// (Candidate.IsCommon). Either Work is set, and asked for the comparison with the current
// password and the new hash once every other rule passes, or those facts are given
// (Candidate.SameAsCurrent, Hash).
type PasswordChange struct {
	CurrentOK bool
	Candidate PasswordCandidate
	Hash      string
	Work      PasswordWork
}

// ChangePassword decides a signed-in user's own Change Password. A wrong current password
// counts toward the failed-login lock like a wrong sign-in. The change ends every session
// (the caller keeps the one it came from), revokes a pending reset token and clears a
// temporary password; the recovery email, when configured, is told.
func (u User) ChangePassword(p Policy, c PasswordChange, now time.Time) ([]Event, error) {
	if err := u.statusError(); err != nil {
		return nil, err
	}
	if events, err := u.authenticate(p, c.CurrentOK, true, PasswordReconfirmed{}); err != nil {
		return events, err
	}
	cand := c.Candidate
	cand.Login = u.Login
	hash, err := p.newPasswordHash(cand, c.Hash, c.Work)
	if err != nil {
		return nil, err
	}
	events := []Event{PasswordChanged{PasswordHash: hash, Method: PasswordChangedBySelf, ChangedAt: now, NotifyEmail: u.RecoveryEmail}}
	return append(events, u.revokeActiveToken(ReasonPasswordChanged)...), nil
}
