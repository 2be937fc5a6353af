package domain

import (
	"errors"
	"strings"
)

// Error is a refusal the domain decided. Code is stable (it reaches API clients and
// auditors); Message is for people. Compare with errors.Is against the Err* values.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Refusals. Reset-request reasons double as the Reason recorded in ResetRequestRejected.
var (
	ErrInvalidInput        = &Error{"invalid_input", "the request is not well formed"}
	ErrForbidden           = &Error{"forbidden", "you are not allowed to do this"}
	ErrProviderExists      = &Error{"provider_exists", "a provider with this code already exists"}
	ErrProviderNotFound    = &Error{"provider_not_found", "no such provider"}
	ErrUserExists          = &Error{"user_exists", "a user with this login name already exists at this provider"}
	ErrUserNotFound        = &Error{"user_not_found", "no such user"}
	ErrInvalidCredentials  = &Error{"invalid_credentials", "login name, provider code or password is wrong, or the account is locked; use Forgot Password? to reset it"}
	ErrProviderNotAllowed  = &Error{"provider_not_allowed", "Self Password Reset is not enabled for the provider"}
	ErrUserNotEnabled      = &Error{"user_not_enabled", "Self Password Reset is not enabled for the user account"}
	ErrNotConfigured       = &Error{"not_configured", "Self Password Reset was not configured with the user's email information"}
	ErrIdentifiersMismatch = &Error{"identifiers_mismatch", "the Login Name, Provider Code or Email is incorrect"}
	ErrResendAfterExpiry   = &Error{"resend_after_expiry", "the Password token has expired; go back to the login page and click Forgot Password? again"}
	ErrAdminLocked         = &Error{"admin_locked", "the account has been Admin Locked"}
	ErrDeactivated         = &Error{"deactivated", "the account has been Deactivated"}
	ErrDeleted             = &Error{"deleted", "the account has been Deleted"}
	ErrThrottled           = &Error{"throttled", "too many requests for this account; try again later"}
	ErrUnknownAccount      = &Error{"unknown_account", "no account matches these identifiers"}
	ErrNoActiveToken       = &Error{"no_active_token", "there is no password token to resend"}
	ErrInvalidToken        = &Error{"invalid_token", "the Password Token is not valid"}
	ErrTokenExpired        = &Error{"token_expired", "the Password Token has expired"}
	ErrTokenUsed           = &Error{"token_used", "the Password Token has already been used"}
	ErrTokenSuperseded     = &Error{"token_superseded", "a newer Password Token was sent; use the latest one"}
	ErrTokenRevoked        = &Error{"token_revoked", "the Password Token is no longer valid"}
	ErrTooManyAttempts     = &Error{"too_many_attempts", "too many wrong attempts; request a new one"}
	ErrInvalidCode         = &Error{"invalid_code", "the code is not correct"}
	ErrNoPendingCode       = &Error{"no_pending_code", "no verification code is pending; ask for a new one"}
	ErrCodeExpired         = &Error{"code_expired", "the code has expired; ask for a new one"}
	ErrEmailNotVerified    = &Error{"email_not_verified", "verify the email address before clicking Update"}
	ErrReauthRequired      = &Error{"reauth_required", "enter your login password again to continue"}
	ErrPasswordRejected    = &Error{"password_rejected", "the new password does not meet the password policy"}
	ErrUnknownRole         = &Error{"unknown_role", "no such role"}
	ErrAccountNotActive    = &Error{"account_not_active", "the account is not active"}
)

// PasswordRejectedError lists why a new password was refused. It matches ErrPasswordRejected.
type PasswordRejectedError struct {
	Reasons []string
}

func (e *PasswordRejectedError) Error() string {
	return ErrPasswordRejected.Message + ": " + strings.Join(e.Reasons, "; ")
}

// Is makes errors.Is(err, ErrPasswordRejected) true.
func (e *PasswordRejectedError) Is(target error) bool { return target == ErrPasswordRejected }

// Code returns the stable code of a domain error, or "" if err is not one.
func Code(err error) string {
	var pr *PasswordRejectedError
	if errors.As(err, &pr) {
		return ErrPasswordRejected.Code
	}
	var de *Error
	if errors.As(err, &de) {
		return de.Code
	}
	return ""
}

// reasonError maps a recorded reason back to its refusal.
func reasonError(reason string) error {
	for _, e := range []*Error{ErrProviderNotAllowed, ErrUserNotEnabled, ErrNotConfigured, ErrIdentifiersMismatch,
		ErrResendAfterExpiry, ErrAdminLocked, ErrDeactivated, ErrDeleted, ErrThrottled, ErrUnknownAccount, ErrNoActiveToken} {
		if e.Code == reason {
			return e
		}
	}
	return ErrInvalidInput
}
