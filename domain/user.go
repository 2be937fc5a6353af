package domain

import (
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

// Active reports whether the account may sign in at all (ignoring the failed-login lock).
func (u User) Active() bool { return u.Registered && !u.AdminLocked && !u.Deactivated && !u.Deleted }

// Apply folds one event into the state.
func (u *User) Apply(e Event) {
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
	case ResetTokenIssued:
		if u.Token != nil && u.Token.State == TokenActive && e.Supersedes == u.Token.ID {
			u.Token.State = TokenSuperseded
			u.Superseded = append(u.Superseded, *u.Token)
			if n := len(u.Superseded); n > maxSupersededKept {
				u.Superseded = append([]ResetToken(nil), u.Superseded[n-maxSupersededKept:]...)
			}
		}
		u.Token = &ResetToken{ID: e.TokenID, KeyID: e.KeyID, Hash: e.TokenHash, IssuedAt: e.IssuedAt, ExpiresAt: e.ExpiresAt, State: TokenActive}
		u.Issued = append(u.Issued, e.IssuedAt)
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

// ---- administration ----

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
	if err := u.notSelf(actor); err != nil {
		return nil, err
	}
	return append([]Event{AccountAdminLocked{By: actor.ID()}}, u.revokeActiveToken(ReasonAdminLocked)...), nil
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
	if err := u.notSelf(actor); err != nil {
		return nil, err
	}
	return append([]Event{AccountDeactivated{By: actor.ID()}}, u.revokeActiveToken(ReasonDeactivated)...), nil
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
	if err := u.notSelf(actor); err != nil {
		return nil, err
	}
	return append([]Event{AccountDeleted{By: actor.ID()}}, u.revokeActiveToken(ReasonDeleted)...), nil
}

// ---- signing in ----

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

// ---- configuring Self Password Reset ----

// canConfigure is what the settings flow needs: an active, enabled account in an allowed provider.
func (u User) canConfigure(provider Provider) error {
	if err := u.statusError(); err != nil {
		return err
	}
	if !provider.SelfResetAllowed {
		return ErrProviderNotAllowed
	}
	if !u.SelfResetEnabled {
		return ErrUserNotEnabled
	}
	return nil
}

// StartEmailVerification sends a 6-digit code to email; a newer code replaces an older one.
func (u User) StartEmailVerification(p Policy, provider Provider, email string, code Secret, now time.Time) ([]Event, error) {
	if err := u.canConfigure(provider); err != nil {
		return nil, err
	}
	email = NormalizeEmail(email)
	if !ValidEmail(email) {
		return nil, ErrInvalidInput
	}
	if recent(u.CodesSent, p, now) >= p.MaxTokensPerWindow {
		return nil, ErrThrottled
	}
	return []Event{RecoveryEmailCodeSent{CodeID: code.ID, KeyID: code.KeyID, CodeHash: code.Hash, Email: email,
		SentAt: now, ExpiresAt: now.Add(p.EmailCodeTTL)}}, nil
}

// VerifyEmailCode checks the 6-digit code. Wrong and late codes are recorded; the fifth
// wrong code kills it.
func (u User) VerifyEmailCode(p Policy, provider Provider, presented string, match SecretMatcher, now time.Time) ([]Event, error) {
	if err := u.canConfigure(provider); err != nil {
		return nil, err
	}
	c := u.Code
	if c == nil {
		return nil, ErrNoPendingCode
	}
	if c.Dead {
		return []Event{RecoveryEmailCodeRejected{CodeID: c.ID, Reason: ReasonTooManyAttempts, Attempts: c.Attempts}}, ErrTooManyAttempts
	}
	if !now.Before(c.ExpiresAt) {
		return []Event{RecoveryEmailCodeRejected{CodeID: c.ID, Reason: ReasonCodeExpired, Attempts: c.Attempts}}, ErrCodeExpired
	}
	if !match(c.KeyID, c.Hash, presented) {
		n := c.Attempts + 1
		if n >= p.MaxCodeAttempts {
			return []Event{RecoveryEmailCodeRejected{CodeID: c.ID, Reason: ReasonTooManyAttempts, Attempts: n}}, ErrTooManyAttempts
		}
		return []Event{RecoveryEmailCodeRejected{CodeID: c.ID, Reason: ReasonWrongCode, Attempts: n}}, ErrInvalidCode
	}
	return []Event{RecoveryEmailVerified{CodeID: c.ID, Email: c.Email}}, nil
}

// ConfigureSelfReset is the seed's Update: the verified email becomes the recovery email.
func (u User) ConfigureSelfReset(provider Provider) ([]Event, error) {
	if err := u.canConfigure(provider); err != nil {
		return nil, err
	}
	if u.VerifiedEmail == "" {
		return nil, ErrEmailNotVerified
	}
	if u.Configured && u.RecoveryEmail == u.VerifiedEmail {
		return nil, nil
	}
	return []Event{SelfResetConfigured{Email: u.VerifiedEmail}}, nil
}

// ---- resetting a forgotten password ----

// ResetRequest is a Forgot Password submission that found this account.
type ResetRequest struct {
	Email     string // as entered
	EmailHash string // keyed hash of the normalized entered email, for auditors
	Token     Secret // the token to issue if the request is granted
	// SealedEmail is Email encrypted for the mailer (NoticeEmailLabel). With it, a refusal
	// that cannot tell the owner mails the typed address the fixed reasons text; nil
	// (SELFRESET_NOTIFY_UNKNOWN_RECIPIENTS off) sends nothing there.
	SealedEmail []byte
}

// notifiable reasons: the verified owner is told why no token came (DESIGN §4), but only
// when the request named the owner's own email (or came from a reset id made with it),
// so strangers cannot aim the exact reason at anyone.
var notifiable = map[Reason]bool{
	ReasonProviderNotAllowed: true, ReasonUserNotEnabled: true, ReasonNotConfigured: true,
	ReasonAdminLocked: true, ReasonDeactivated: true, ReasonDeleted: true, ReasonResendAfterExpiry: true,
	ReasonThrottled: true, ReasonNoActiveToken: true,
}

// nextTokenAt is when the throttle lets this account have a token again (now if it does).
func (u User) nextTokenAt(p Policy, now time.Time) time.Time {
	var in []time.Time
	for _, t := range u.Issued {
		if now.Sub(t) < p.TokenWindow {
			in = append(in, t)
		}
	}
	if len(in) < p.MaxTokensPerWindow {
		return now
	}
	// The oldest issue that keeps the count at the limit must leave the window.
	slices.SortFunc(in, func(a, b time.Time) int { return a.Compare(b) })
	return in[len(in)-p.MaxTokensPerWindow].Add(p.TokenWindow)
}

// UnmatchedResetRequest is the refusal of a request whose provider and login name no
// account. The typed address gets the fixed reasons text when sealed is given and the
// address is valid; nothing tells it that the login does not exist.
func UnmatchedResetRequest(code, login, email, emailHash string, sealed []byte, now time.Time) ResetRequestRejected {
	email = NormalizeEmail(email)
	e := ResetRequestRejected{Reason: ReasonUnknownAccount, Provider: code, Login: login,
		EmailMasked: MaskEmail(email), EmailHash: emailHash}
	if len(sealed) > 0 && ValidEmail(email) {
		e.NoticeEmail, e.NoticeAt = sealed, now
	}
	return e
}

// knownEmail is the address the owner has proven: configured first, else verified.
func (u User) knownEmail() string {
	if u.RecoveryEmail != "" {
		return u.RecoveryEmail
	}
	return u.VerifiedEmail
}

// reject records a refusal and decides its one "Password Reset Error" email: to the
// owner's verified address, with the exact reason, when the request named it (capped by
// Notified); else to the typed address, with the fixed reasons text, when the caller
// sealed it and it is a valid address (capped per recipient by the mailer).
func (u User) reject(p Policy, now time.Time, reason Reason, email, emailHash string, sealed []byte, resend bool) ([]Event, error) {
	e := ResetRequestRejected{Reason: reason, Provider: u.Provider, Login: u.Login, EmailHash: emailHash, Resend: resend}
	if email != "" {
		e.EmailMasked = MaskEmail(email)
	}
	known := u.knownEmail()
	switch {
	case known != "" && (resend || email == known):
		if notifiable[reason] && recent(u.Notified, p, now) < p.MaxTokensPerWindow {
			e.NotifyEmail, e.NotifiedAt = known, now
			if reason == ReasonThrottled || reason == ReasonNoActiveToken || reason == ReasonResendAfterExpiry {
				if at := u.nextTokenAt(p, now); at.After(now) {
					e.RetryAt = at
				}
			}
		}
	case !resend && len(sealed) > 0 && ValidEmail(email):
		e.NoticeEmail, e.NoticeAt = sealed, now
	}
	return []Event{e}, reasonError(reason)
}

// requestRefusal is why this account may not get a token now ("" when it may).
func (u User) requestRefusal(p Policy, provider Provider, now time.Time) Reason {
	switch {
	case u.Deleted:
		return ReasonDeleted
	case u.Deactivated:
		return ReasonDeactivated
	case u.AdminLocked:
		return ReasonAdminLocked
	case !provider.SelfResetAllowed:
		return ReasonProviderNotAllowed
	case !u.SelfResetEnabled:
		return ReasonUserNotEnabled
	case !u.Configured:
		return ReasonNotConfigured
	case recent(u.Issued, p, now) >= p.MaxTokensPerWindow:
		return ReasonThrottled
	}
	return ""
}

// RequestResetToken decides a Forgot Password request for this account. Refusals are
// recorded with their precise reason (for auditors) and returned as errors; the HTTP layer
// answers every request alike whatever happens here. A failed-login lock does not stop a
// reset: that is how locked-out users get back in.
func (u User) RequestResetToken(p Policy, provider Provider, r ResetRequest, now time.Time) ([]Event, error) {
	email := NormalizeEmail(r.Email)
	reason := u.requestRefusal(p, provider, now)
	// A wrong email outranks throttling and missing configuration: it is what the
	// requester got wrong, and it must never trigger mail to the owner.
	if u.Configured && email != u.RecoveryEmail && reason != ReasonDeleted && reason != ReasonDeactivated && reason != ReasonAdminLocked {
		reason = ReasonIdentifiersMismatch
	}
	if reason != "" {
		return u.reject(p, now, reason, email, r.EmailHash, r.SealedEmail, false)
	}
	return []Event{u.issue(p, r.Token, now, false)}, nil
}

func (u User) issue(p Policy, t Secret, now time.Time, resend bool) ResetTokenIssued {
	e := ResetTokenIssued{TokenID: t.ID, KeyID: t.KeyID, TokenHash: t.Hash, Email: u.RecoveryEmail,
		IssuedAt: now, ExpiresAt: now.Add(p.ResetTokenTTL), Resend: resend}
	// A token that already expired unused is not "superseded": analysts count it as expired.
	if u.Token != nil && u.Token.State == TokenActive && now.Before(u.Token.ExpiresAt) {
		e.Supersedes = u.Token.ID
	}
	return e
}

// ResendResetToken is the Change Password page's Resend: only while the current token is
// still valid; it issues a fresh token and the old one dies. After expiry the user must
// start again from Forgot Password?.
func (u User) ResendResetToken(p Policy, provider Provider, t Secret, now time.Time) ([]Event, error) {
	if u.Token == nil || u.Token.State != TokenActive {
		return u.reject(p, now, ReasonNoActiveToken, "", "", nil, true)
	}
	if !now.Before(u.Token.ExpiresAt) {
		return u.reject(p, now, ReasonResendAfterExpiry, "", "", nil, true)
	}
	if reason := u.requestRefusal(p, provider, now); reason != "" {
		return u.reject(p, now, reason, "", "", nil, true)
	}
	return []Event{u.issue(p, t, now, true)}, nil
}

// NewPassword is a Change Password submission once the caller has checked the rules
// that need I/O. Hash is the argon2id hash of the new password.
type NewPassword struct {
	Token     string // as typed
	Candidate PasswordCandidate
	Hash      string
}

// CheckResetToken decides whether presented is the account's live token. Refusals come
// with the events that record them (wrong tries count; the fifth revokes the token).
// The caller may call it before doing expensive work for ResetPassword, which checks again.
func (u User) CheckResetToken(p Policy, provider Provider, presented string, match SecretMatcher, now time.Time) ([]Event, error) {
	if !u.Registered {
		return nil, ErrInvalidToken
	}
	t := u.Token
	if t == nil {
		return []Event{ResetTokenRejected{Reason: ReasonNoActiveToken}}, ErrInvalidToken
	}
	// Only whoever holds the right value learns a token's fate (used, expired, replaced);
	// any other value gets invalid_token, so the page cannot be used to probe accounts.
	if !match(t.KeyID, t.Hash, presented) {
		// An older token that a Resend or a new request replaced: say so plainly
		// (DESIGN §4) and do not count it as a guess against the live token.
		for i := len(u.Superseded) - 1; i >= 0; i-- {
			if old := u.Superseded[i]; match(old.KeyID, old.Hash, presented) {
				return []Event{ResetTokenRejected{TokenID: old.ID, Reason: ReasonTokenSuperseded, Attempts: old.Attempts}}, ErrTokenSuperseded
			}
		}
		if t.State != TokenActive || !now.Before(t.ExpiresAt) {
			return []Event{ResetTokenRejected{TokenID: t.ID, Reason: ReasonInvalidToken, Attempts: t.Attempts}}, ErrInvalidToken
		}
		n := t.Attempts + 1
		events := []Event{ResetTokenRejected{TokenID: t.ID, Reason: ReasonWrongToken, Attempts: n}}
		if n >= p.MaxTokenAttempts {
			// The token dies, but the answer stays invalid_token: a wrong value must not
			// learn that it reached a live token. Whoever holds the right value is told
			// too_many_attempts when they try it.
			return append(events, ResetTokenRevoked{TokenID: t.ID, Reason: ReasonTooManyAttempts}), ErrInvalidToken
		}
		return events, ErrInvalidToken
	}
	if t.State != TokenActive {
		err := map[string]error{TokenUsed: ErrTokenUsed, TokenSuperseded: ErrTokenSuperseded}[t.State]
		if err == nil {
			err = ErrTokenRevoked
			if t.RevokedReason == ReasonTooManyAttempts {
				err = ErrTooManyAttempts
			}
		}
		return []Event{ResetTokenRejected{TokenID: t.ID, Reason: ReasonOf(err), Attempts: t.Attempts}}, err
	}
	if err := u.statusError(); err != nil {
		return append([]Event{ResetTokenRejected{TokenID: t.ID, Reason: ReasonOf(err), Attempts: t.Attempts}},
			u.revokeActiveToken(ReasonOf(err))...), ErrTokenRevoked
	}
	if !provider.SelfResetAllowed || !u.SelfResetEnabled {
		reason := ReasonProviderNotAllowed
		if provider.SelfResetAllowed {
			reason = ReasonUserNotEnabled
		}
		return []Event{ResetTokenRejected{TokenID: t.ID, Reason: reason, Attempts: t.Attempts},
			ResetTokenRevoked{TokenID: t.ID, Reason: ReasonSelfResetNotAllowed}}, ErrTokenRevoked
	}
	if !now.Before(t.ExpiresAt) {
		return []Event{ResetTokenRejected{TokenID: t.ID, Reason: ReasonTokenExpired, Attempts: t.Attempts}}, ErrTokenExpired
	}
	return nil, nil
}

// ResetPassword decides the Change Password page. The token is checked on this aggregate
// under optimistic concurrency, so two racing submissions of one token cannot both
// succeed. A password the policy refuses does not consume the token.
func (u User) ResetPassword(p Policy, provider Provider, np NewPassword, match SecretMatcher, now time.Time) ([]Event, error) {
	if events, err := u.CheckResetToken(p, provider, np.Token, match, now); err != nil {
		return events, err
	}
	t := u.Token
	cand := np.Candidate
	cand.Login = u.Login
	if err := p.CheckPassword(cand); err != nil {
		return nil, err
	}
	if np.Hash == "" {
		return nil, ErrInvalidInput
	}
	events := []Event{PasswordChanged{PasswordHash: np.Hash, Method: PasswordChangedBySelfReset, TokenID: t.ID,
		ChangedAt: now, NotifyEmail: u.RecoveryEmail}}
	if u.Locked {
		events = append(events, AccountUnlocked{Reason: ReasonPasswordReset})
	}
	return events, nil
}
