package domain

import (
	"slices"
	"time"
)

// Resetting a forgotten password: the Forgot Password request, Resend, and the Change
// Password page's token check and decision.

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

// NewPassword is a Change Password submission. Candidate carries the facts the caller
// looked up (IsCommon). Either Work is set, and asked for the comparison with the current
// password and the new hash once the token and every other rule pass, or the facts are
// given: Candidate.SameAsCurrent and Hash (the argon2id hash of the new password).
type NewPassword struct {
	Token     string // as typed
	Candidate PasswordCandidate
	Hash      string
	Work      PasswordWork
}

// CheckResetToken decides whether presented is the account's live token. Refusals come
// with the events that record them (wrong tries count; the fifth revokes the token).
// ResetPassword runs it first, so a refused token never costs the password's hashing.
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
	hash, err := p.newPasswordHash(cand, np.Hash, np.Work)
	if err != nil {
		return nil, err
	}
	events := []Event{PasswordChanged{PasswordHash: hash, Method: PasswordChangedBySelfReset, TokenID: t.ID,
		ChangedAt: now, NotifyEmail: u.RecoveryEmail}}
	if u.Locked {
		events = append(events, AccountUnlocked{Reason: ReasonPasswordReset})
	}
	return events, nil
}
