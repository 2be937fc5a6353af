package domain

import "time"

// Event is a fact the domain decided. Its EventType is the stored type name.
type Event interface {
	EventType() string
}

// Provider stream events.

// ProviderRegistered opens a provider's stream.
type ProviderRegistered struct {
	Code string `json:"code"`
	Name string `json:"name"`
}

// ProviderSelfResetAllowed lets the provider's users be enabled for self-service reset.
type ProviderSelfResetAllowed struct {
	By string `json:"by"`
}

// ProviderSelfResetRevoked withdraws that permission; requests are then refused.
type ProviderSelfResetRevoked struct {
	By string `json:"by"`
}

// User stream events.

// UserRegistered opens a user's stream. PasswordHash is an argon2id PHC string.
type UserRegistered struct {
	Provider     string   `json:"provider"`
	Login        string   `json:"login"`
	DisplayName  string   `json:"display_name"`
	PasswordHash string   `json:"password_hash"`
	Roles        []string `json:"roles,omitempty"`
	// MustChangePassword: PasswordHash is a temporary password to change at first sign-in.
	MustChangePassword bool `json:"must_change_password,omitempty"`
}

// RoleGranted gives the user a role.
type RoleGranted struct {
	Role string `json:"role"`
	By   string `json:"by"`
}

// RoleRevoked takes a role away.
type RoleRevoked struct {
	Role string `json:"role"`
	By   string `json:"by"`
}

// SelfResetEnabled: a user-admin made the feature available to this user.
type SelfResetEnabled struct {
	By string `json:"by"`
}

// SelfResetDisabled: a user-admin withdrew it.
type SelfResetDisabled struct {
	By string `json:"by"`
}

// PasswordReconfirmed: the user re-entered the login password to reach Self Password Reset settings.
type PasswordReconfirmed struct{}

// RecoveryEmailCodeSent: a 6-digit code was derived for Email. Only the code's id and a keyed
// hash are stored; the mailer derives the code itself from the id and the server secret.
type RecoveryEmailCodeSent struct {
	CodeID    string    `json:"code_id"`
	KeyID     string    `json:"key_id"`
	CodeHash  string    `json:"code_hash"`
	Email     string    `json:"email"`
	SentAt    time.Time `json:"sent_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RecoveryEmailCodeRejected: a wrong or late code. Attempts counts wrong tries so far.
type RecoveryEmailCodeRejected struct {
	CodeID   string `json:"code_id"`
	Reason   Reason `json:"reason"` // wrong_code, code_expired, too_many_attempts
	Attempts int    `json:"attempts"`
}

// RecoveryEmailVerified: the right code came back; Email is proven to reach the user.
type RecoveryEmailVerified struct {
	CodeID string `json:"code_id"`
	Email  string `json:"email"`
}

// SelfResetConfigured: the user clicked Update; Email is now the recovery address.
type SelfResetConfigured struct {
	Email string `json:"email"`
}

// ResetTokenIssued: a password token was derived and is to be mailed to Email.
// Supersedes names the token this one replaces (which dies with it).
type ResetTokenIssued struct {
	TokenID    string    `json:"token_id"`
	KeyID      string    `json:"key_id"`
	TokenHash  string    `json:"token_hash"`
	Email      string    `json:"email"`
	IssuedAt   time.Time `json:"issued_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Supersedes string    `json:"supersedes,omitempty"`
	Resend     bool      `json:"resend,omitempty"`
	// By names the user administrator who sent it ("Send password reset"); empty for
	// the user's own Forgot Password.
	By string `json:"by,omitempty"`
}

// ResetTokenRejected: a token was presented and refused.
//
// On UnmatchedStream (Reason no_token_for_request) it records a token typed for a
// request that reached no token (unknown account, wrong email, or an older request), and
// Provider and Login say what was attempted.
type ResetTokenRejected struct {
	TokenID  string `json:"token_id,omitempty"`
	Reason   Reason `json:"reason"` // wrong_token, token_expired, token_used, token_superseded, token_revoked, no_active_token, no_token_for_request
	Attempts int    `json:"attempts"`
	Provider string `json:"provider,omitempty"`
	Login    string `json:"login,omitempty"`
}

// ResetTokenRevoked: the token died before use (too many wrong tries, account change).
type ResetTokenRevoked struct {
	TokenID string `json:"token_id"`
	Reason  Reason `json:"reason"`
}

// ResetRequestRejected: a Forgot Password (or Resend) request got no token. The attempted
// email is never stored in plain text: masked for people, keyed hash for correlation.
// NotifyEmail is set when the verified owner should get a "Password Reset Error" email.
// On UnmatchedStream, Provider and Login say what was attempted.
type ResetRequestRejected struct {
	Reason      Reason `json:"reason"`
	Provider    string `json:"provider"`
	Login       string `json:"login"`
	EmailMasked string `json:"email_masked,omitempty"`
	EmailHash   string `json:"email_hash,omitempty"`
	NotifyEmail string `json:"notify_email,omitempty"`
	// NotifiedAt is when that email was asked for (set with NotifyEmail): the owner gets
	// no more of them than tokens per throttling window, however often strangers try.
	NotifiedAt time.Time `json:"notified_at,omitzero"`
	// RetryAt, with NotifyEmail, is when the owner may ask for a token again (throttled,
	// or a Resend that found no live token); zero when at once.
	RetryAt time.Time `json:"retry_at,omitzero"`
	Resend  bool      `json:"resend,omitempty"`
	// NoticeEmail is set when the typed address (not the owner's verified one) is to get
	// the fixed "Password Reset Error" text listing the seed's reasons. It is the address
	// encrypted with the server key (secret.Keyring.Encrypt, label NoticeEmailLabel): an
	// auditor without the key learns nothing from it; the mailer opens it at send time.
	// NoticeAt is when it was asked for. The mailer caps these per recipient (EmailHash).
	NoticeEmail []byte    `json:"notice_email,omitempty"`
	NoticeAt    time.Time `json:"notice_at,omitzero"`
}

// NoticeEmailLabel separates the encryption of ResetRequestRejected.NoticeEmail from
// every other use of the server key.
const NoticeEmailLabel = "domain.reset-error-notice.email"

// Ways a password changes.
const (
	PasswordChangedBySelfReset = "self_reset"
)

// PasswordChanged: a new argon2id hash. All earlier sessions of the user end with it.
// NotifyEmail receives a "your password was changed" email.
type PasswordChanged struct {
	PasswordHash string    `json:"password_hash"`
	Method       string    `json:"method"`
	TokenID      string    `json:"token_id,omitempty"`
	ChangedAt    time.Time `json:"changed_at"`
	NotifyEmail  string    `json:"notify_email,omitempty"`
}

// LoginSucceeded: a session was opened.
type LoginSucceeded struct {
	SessionID string `json:"session_id,omitempty"`
}

// LoginFailed: a login (or settings re-authentication) was refused.
// On UnmatchedStream, Provider and Login say what was attempted.
type LoginFailed struct {
	Reason         Reason `json:"reason"` // wrong_password, locked, admin_locked, deactivated, deleted, unknown_account
	FailedAttempts int    `json:"failed_attempts"`
	StepUp         bool   `json:"step_up,omitempty"`
	Provider       string `json:"provider,omitempty"`
	Login          string `json:"login,omitempty"`
}

// AccountLocked: too many failed logins; a self-service reset unlocks it.
type AccountLocked struct {
	FailedAttempts int `json:"failed_attempts"`
}

// AccountUnlocked: the failed-login lock was lifted.
type AccountUnlocked struct {
	Reason Reason `json:"reason"` // password_reset, admin
	By     string `json:"by,omitempty"`
}

// AccountAdminLocked and the rest are administrative status changes; By names the admin.
type AccountAdminLocked struct {
	By string `json:"by"`
}
type AccountAdminUnlocked struct {
	By string `json:"by"`
}
type AccountDeactivated struct {
	By string `json:"by"`
}
type AccountReactivated struct {
	By string `json:"by"`
}
type AccountDeleted struct {
	By string `json:"by"`
}

// Audit trail events.

// FeedPosition is a place in the global feed (eventstore.Position; the domain does no I/O
// and so does not import the store).
type FeedPosition struct {
	Commit  uint64 `json:"commit"`
	Prepare uint64 `json:"prepare"`
}

// AuditSealed closes a range of the global feed: the Count events after After up to and
// including Through (seal events not counted), with Digest the running hash over their
// (stream, revision, chain hash) in feed order, started from the previous seal's digest.
// Signature is the HMAC-SHA256, under the seal key named KeyID, of all the other fields
// (package audit defines the encoding).
type AuditSealed struct {
	After     FeedPosition `json:"after"`
	Through   FeedPosition `json:"through"`
	Count     int64        `json:"count"`
	Digest    string       `json:"digest"`
	KeyID     string       `json:"key_id"`
	Signature string       `json:"signature"`
}

// AuditLogRead records one read of a provider's history through the audit API, before
// anything is returned: who (the metadata actor, client IP and user agent) and what (the
// filters as understood).
type AuditLogRead struct {
	Provider string            `json:"provider"`
	What     string            `json:"what"` // "events" or "state"
	Filters  map[string]string `json:"filters"`
}

func (ProviderRegistered) EventType() string        { return "ProviderRegistered" }
func (ProviderSelfResetAllowed) EventType() string  { return "ProviderSelfResetAllowed" }
func (ProviderSelfResetRevoked) EventType() string  { return "ProviderSelfResetRevoked" }
func (UserRegistered) EventType() string            { return "UserRegistered" }
func (RoleGranted) EventType() string               { return "RoleGranted" }
func (RoleRevoked) EventType() string               { return "RoleRevoked" }
func (SelfResetEnabled) EventType() string          { return "SelfResetEnabled" }
func (SelfResetDisabled) EventType() string         { return "SelfResetDisabled" }
func (PasswordReconfirmed) EventType() string       { return "PasswordReconfirmed" }
func (RecoveryEmailCodeSent) EventType() string     { return "RecoveryEmailCodeSent" }
func (RecoveryEmailCodeRejected) EventType() string { return "RecoveryEmailCodeRejected" }
func (RecoveryEmailVerified) EventType() string     { return "RecoveryEmailVerified" }
func (SelfResetConfigured) EventType() string       { return "SelfResetConfigured" }
func (ResetTokenIssued) EventType() string          { return "ResetTokenIssued" }
func (ResetTokenRejected) EventType() string        { return "ResetTokenRejected" }
func (ResetTokenRevoked) EventType() string         { return "ResetTokenRevoked" }
func (ResetRequestRejected) EventType() string      { return "ResetRequestRejected" }
func (PasswordChanged) EventType() string           { return "PasswordChanged" }
func (LoginSucceeded) EventType() string            { return "LoginSucceeded" }
func (LoginFailed) EventType() string               { return "LoginFailed" }
func (AccountLocked) EventType() string             { return "AccountLocked" }
func (AccountUnlocked) EventType() string           { return "AccountUnlocked" }
func (AccountAdminLocked) EventType() string        { return "AccountAdminLocked" }
func (AccountAdminUnlocked) EventType() string      { return "AccountAdminUnlocked" }
func (AccountDeactivated) EventType() string        { return "AccountDeactivated" }
func (AccountReactivated) EventType() string        { return "AccountReactivated" }
func (AccountDeleted) EventType() string            { return "AccountDeleted" }
func (AuditSealed) EventType() string               { return "AuditSealed" }
func (AuditLogRead) EventType() string              { return "AuditLogRead" }

// AllEvents lists one value of every event type at its current schema version, for codecs.
func AllEvents() []Event {
	return []Event{
		ProviderRegistered{}, ProviderSelfResetAllowed{}, ProviderSelfResetRevoked{},
		UserRegistered{}, RoleGranted{}, RoleRevoked{}, SelfResetEnabled{}, SelfResetDisabled{},
		PasswordReconfirmed{}, RecoveryEmailCodeSent{}, RecoveryEmailCodeRejected{}, RecoveryEmailVerified{},
		SelfResetConfigured{}, ResetTokenIssued{}, ResetTokenRejected{}, ResetTokenRevoked{},
		ResetRequestRejected{}, PasswordChanged{}, LoginSucceeded{}, LoginFailed{}, AccountLocked{},
		AccountUnlocked{}, AccountAdminLocked{}, AccountAdminUnlocked{}, AccountDeactivated{},
		AccountReactivated{}, AccountDeleted{},
		ProviderUserAdminAdded{}, ProviderUserAdminRemoved{}, AuditSealed{}, AuditLogRead{},
	}
}
