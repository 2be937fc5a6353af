package domain

import (
	"maps"
	"slices"
	"time"
)

// Token states, as the token-validity read model also names them.
const (
	TokenActive     = "active"
	TokenUsed       = "used"
	TokenRevoked    = "revoked"
	TokenSuperseded = "superseded"
)

// Secret is a freshly derived token or code: its id, the id of the server key it was
// derived under, and a keyed hash of its value. The value itself never enters the domain.
type Secret struct {
	ID    string
	KeyID string
	Hash  string
}

// SecretMatcher tells, in constant time, whether presented is the secret stored as
// (keyID, hash). The command side supplies it; the domain stays free of keys.
type SecretMatcher func(keyID, hash, presented string) bool

// PendingCode is the email verification code waiting for the user.
type PendingCode struct {
	ID        string
	KeyID     string
	Hash      string
	Email     string
	ExpiresAt time.Time
	Attempts  int
	Dead      bool // too many wrong tries
}

// ResetToken is the user's latest password token.
type ResetToken struct {
	ID        string
	KeyID     string
	Hash      string
	IssuedAt  time.Time
	ExpiresAt time.Time
	Attempts  int
	State     string
	// RevokedReason says why a revoked token died (too_many_attempts, admin_locked, …).
	RevokedReason Reason
}

// maxSupersededKept is how many replaced tokens a user's state remembers, so that an old
// token typed after a Resend is reported as superseded rather than as a wrong guess.
const maxSupersededKept = 4

// User is an account at a provider, folded from its stream.
type User struct {
	Provider     string
	Login        string
	Registered   bool
	DisplayName  string
	PasswordHash string
	Roles        map[string]bool

	SelfResetEnabled bool
	Configured       bool
	RecoveryEmail    string // configured (after Update)
	VerifiedEmail    string // verified, waiting for Update
	Code             *PendingCode
	Token            *ResetToken
	Superseded       []ResetToken // the last few tokens a newer one replaced, oldest first
	Issued           []time.Time  // token issue times, for throttling
	CodesSent        []time.Time  // verification code send times, for throttling
	Notified         []time.Time  // "Password Reset Error" emails asked for, for throttling

	FailedLogins    int
	Locked          bool // by failed logins; a self-service reset lifts it
	AdminLocked     bool
	Deactivated     bool
	Deleted         bool
	LastResetAt     time.Time
	PasswordVersion int // bumps on every password change
	// MustChangePassword: the password is a temporary one an administrator was shown;
	// the user must change it (signed in) before doing anything else.
	MustChangePassword bool
	// SessionEpoch bumps whenever every open session must end: a password change, an
	// admin lock, a deactivation or a deletion. A session remembers the epoch it was opened
	// in, so a lock followed by an unlock still ends the sessions from before.
	SessionEpoch int
}

// Clone returns a copy of u that shares no memory with it: Apply on either leaves the
// other as it was (Apply appends to the slices and writes through the pointers), so a
// fold kept between commands can be handed out and moved on without copying it by hand.
func (u User) Clone() User {
	c := u
	c.Roles = maps.Clone(u.Roles)
	if u.Code != nil {
		code := *u.Code
		c.Code = &code
	}
	if u.Token != nil {
		t := *u.Token
		c.Token = &t
	}
	c.Superseded = slices.Clone(u.Superseded)
	c.Issued = slices.Clone(u.Issued)
	c.CodesSent = slices.Clone(u.CodesSent)
	c.Notified = slices.Clone(u.Notified)
	return c
}

// Active reports whether the account may sign in at all (ignoring the failed-login lock).
func (u User) Active() bool { return u.Registered && !u.AdminLocked && !u.Deactivated && !u.Deleted }

// Apply folds one event into the state. Each behaviour folds its own events (see the
// apply helpers beside this one) and passes over the others, so every event is offered
// to each; an event none of them knows changes nothing.
func (u *User) Apply(e Event) {
	u.applyAccount(e)
	u.applySignIn(e)
	u.applySettings(e)
	u.applyReset(e)
}

// applyAccount folds the administration events: registration, roles, enablement and the
// administrator's locks.
func (u *User) applyAccount(e Event) {
	switch e := e.(type) {
	case UserRegistered:
		u.Provider, u.Login, u.Registered = e.Provider, e.Login, true
		u.DisplayName, u.PasswordHash = e.DisplayName, e.PasswordHash
		u.MustChangePassword = e.MustChangePassword
		u.Roles = map[string]bool{}
		for _, r := range e.Roles {
			u.Roles[r] = true
		}
	case RoleGranted:
		u.Roles[e.Role] = true
	case RoleRevoked:
		delete(u.Roles, e.Role)
	case SelfResetEnabled:
		u.SelfResetEnabled = true
	case SelfResetDisabled:
		u.SelfResetEnabled = false
	case AccountAdminLocked:
		u.AdminLocked = true
		u.SessionEpoch++
	case AccountAdminUnlocked:
		u.AdminLocked = false
	case AccountDeactivated:
		u.Deactivated = true
		u.SessionEpoch++
	case AccountReactivated:
		u.Deactivated = false
	case AccountDeleted:
		u.Deleted = true
		u.SessionEpoch++
	}
}

// applySignIn folds the sign-in events and the failed-login lock.
func (u *User) applySignIn(e Event) {
	switch e := e.(type) {
	case LoginSucceeded:
		u.FailedLogins = 0
	case LoginFailed:
		// Counted, not copied from the event: failed attempts may be appended without an
		// expected revision (see commands), so two may carry the same stale number.
		if e.Reason == ReasonWrongPassword {
			u.FailedLogins++
		}
	case AccountLocked:
		u.Locked = true
	case AccountUnlocked:
		u.Locked, u.FailedLogins = false, 0
	}
}

// applySettings folds the settings flow: the email code and the configured address.
func (u *User) applySettings(e Event) {
	switch e := e.(type) {
	case RecoveryEmailCodeSent:
		u.Code = &PendingCode{ID: e.CodeID, KeyID: e.KeyID, Hash: e.CodeHash, Email: e.Email, ExpiresAt: e.ExpiresAt}
		u.CodesSent = append(u.CodesSent, e.SentAt)
		// A new address is being proven: an earlier verified one must not be what Update saves.
		u.VerifiedEmail = ""
	case RecoveryEmailCodeRejected:
		if u.Code != nil && u.Code.ID == e.CodeID {
			u.Code.Attempts = e.Attempts
			if e.Reason == ReasonTooManyAttempts {
				u.Code.Dead = true
			}
		}
	case RecoveryEmailVerified:
		u.VerifiedEmail = e.Email
		u.Code = nil
	case SelfResetConfigured:
		u.Configured, u.RecoveryEmail = true, e.Email
	}
}

// applyReset folds the password reset events and every password change.
func (u *User) applyReset(e Event) {
	switch e := e.(type) {
	case ResetTokenIssued:
		u.applyIssued(e)
	case ResetRequestRejected:
		if e.NotifyEmail != "" {
			u.Notified = append(u.Notified, e.NotifiedAt)
		}
	case ResetTokenRejected:
		if u.Token != nil && u.Token.ID == e.TokenID && e.Reason == ReasonWrongToken {
			u.Token.Attempts = e.Attempts
		}
	case ResetTokenRevoked:
		if u.Token != nil && u.Token.ID == e.TokenID {
			u.Token.State, u.Token.RevokedReason = TokenRevoked, e.Reason
		}
	case PasswordChanged:
		u.applyPasswordChanged(e)
	}
}

func (u *User) applyIssued(e ResetTokenIssued) {
	if u.Token != nil && u.Token.State == TokenActive && e.Supersedes == u.Token.ID {
		u.Token.State = TokenSuperseded
		u.Superseded = append(u.Superseded, *u.Token)
		if n := len(u.Superseded); n > maxSupersededKept {
			u.Superseded = append([]ResetToken(nil), u.Superseded[n-maxSupersededKept:]...)
		}
	}
	u.Token = &ResetToken{ID: e.TokenID, KeyID: e.KeyID, Hash: e.TokenHash, IssuedAt: e.IssuedAt, ExpiresAt: e.ExpiresAt, State: TokenActive}
	u.Issued = append(u.Issued, e.IssuedAt)
}

func (u *User) applyPasswordChanged(e PasswordChanged) {
	u.PasswordHash = e.PasswordHash
	u.PasswordVersion++
	u.SessionEpoch++
	u.FailedLogins = 0
	u.MustChangePassword = false
	if e.TokenID != "" && u.Token != nil && u.Token.ID == e.TokenID {
		u.Token.State = TokenUsed
	}
	if e.Method == PasswordChangedBySelfReset {
		u.LastResetAt = e.ChangedAt
	}
}

// statusError is the refusal for an account that no self-service action may touch.
func (u User) statusError() error {
	switch {
	case !u.Registered:
		return ErrUserNotFound
	case u.Deleted:
		return ErrDeleted
	case u.Deactivated:
		return ErrDeactivated
	case u.AdminLocked:
		return ErrAdminLocked
	}
	return nil
}

// revokeActiveToken returns the event that kills a live token, if there is one.
func (u User) revokeActiveToken(reason Reason) []Event {
	if u.Token != nil && u.Token.State == TokenActive {
		return []Event{ResetTokenRevoked{TokenID: u.Token.ID, Reason: reason}}
	}
	return nil
}

// recent counts the times inside the throttling window.
func recent(times []time.Time, p Policy, now time.Time) int {
	n := 0
	for _, t := range times {
		if now.Sub(t) < p.TokenWindow {
			n++
		}
	}
	return n
}
