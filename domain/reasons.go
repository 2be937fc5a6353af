package domain

// Reason says why something was refused or happened, as events record it in their
// "reason" field (ResetRequestRejected, ResetTokenRejected, ResetTokenRevoked,
// RecoveryEmailCodeRejected, LoginFailed, AccountUnlocked). The values are stable: stored
// histories, read models, the mailer and auditors match on them, so they are written out
// only here. A refusal that is also returned as an error takes its Code from its reason.
type Reason string

// Reasons shared with the refusal of the same name (errors.go builds its codes from them).
const (
	ReasonProviderNotAllowed  Reason = "provider_not_allowed"
	ReasonUserNotEnabled      Reason = "user_not_enabled"
	ReasonNotConfigured       Reason = "not_configured"
	ReasonIdentifiersMismatch Reason = "identifiers_mismatch"
	ReasonResendAfterExpiry   Reason = "resend_after_expiry"
	ReasonAdminLocked         Reason = "admin_locked"
	ReasonDeactivated         Reason = "deactivated"
	ReasonDeleted             Reason = "deleted"
	ReasonThrottled           Reason = "throttled"
	ReasonUnknownAccount      Reason = "unknown_account"
	ReasonNoActiveToken       Reason = "no_active_token"
	ReasonInvalidToken        Reason = "invalid_token"
	ReasonTokenExpired        Reason = "token_expired"
	ReasonTokenUsed           Reason = "token_used"
	ReasonTokenSuperseded     Reason = "token_superseded"
	ReasonTokenRevoked        Reason = "token_revoked"
	ReasonTooManyAttempts     Reason = "too_many_attempts"
	ReasonCodeExpired         Reason = "code_expired"
)

// Reasons only events record.
const (
	// ReasonWrongCode: a wrong email verification code (RecoveryEmailCodeRejected).
	ReasonWrongCode Reason = "wrong_code"
	// ReasonWrongToken: a wrong value against the live token; it counts as a guess.
	ReasonWrongToken Reason = "wrong_token"
	// ReasonWrongPassword: a wrong password at sign-in; it counts toward the lock.
	ReasonWrongPassword Reason = "wrong_password"
	// ReasonLocked: sign-in refused while the failed-login lock holds.
	ReasonLocked Reason = "locked"
	// ReasonNoTokenForRequest: a token typed for a request that reached no token
	// (ResetTokenRejected on an unmatched stream).
	ReasonNoTokenForRequest Reason = "no_token_for_request"
	// ReasonSelfResetNotAllowed: the token died because self-service reset was turned off
	// for the provider or the user before it was used.
	ReasonSelfResetNotAllowed Reason = "self_reset_not_allowed"
	// ReasonSelfResetDisabled: an administrator disabled self-service reset for the user.
	ReasonSelfResetDisabled Reason = "self_reset_disabled"
	// ReasonPasswordChanged: the password changed by another way than the token.
	ReasonPasswordChanged Reason = "password_changed"
	// ReasonPasswordReset: a self-service reset lifted the failed-login lock.
	ReasonPasswordReset Reason = "password_reset"
	// ReasonByAdmin: a user administrator lifted the failed-login lock.
	ReasonByAdmin Reason = "admin"
)

// ReasonOf is the reason a refusal records: its stable code ("" if err is not one).
func ReasonOf(err error) Reason { return Reason(Code(err)) }
