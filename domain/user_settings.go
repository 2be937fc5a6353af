package domain

import (
	"time"
)

// Configuring Self Password Reset: the recovery email, proven by a 6-digit code.

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
