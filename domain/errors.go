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

// Refusals. Those that events also record take their code from the Reason (reasons.go).
var (
	ErrInvalidInput        = &Error{"invalid_input", "the request is not well formed"}
	ErrForbidden           = &Error{"forbidden", "you are not allowed to do this"}
	ErrProviderExists      = &Error{"provider_exists", "a provider with this code already exists"}
	ErrProviderNotFound    = &Error{"provider_not_found", "no such provider"}
	ErrUserExists          = &Error{"user_exists", "a user with this login name already exists at this provider"}
	ErrUserNotFound        = &Error{"user_not_found", "no such user"}
	ErrInvalidCredentials  = &Error{"invalid_credentials", "login name, provider code or password is wrong, or the account is locked; use Forgot Password? to reset it"}
	ErrProviderNotAllowed  = &Error{string(ReasonProviderNotAllowed), "Self Password Reset is not enabled for the provider"}
	ErrUserNotEnabled      = &Error{string(ReasonUserNotEnabled), "Self Password Reset is not enabled for the user account"}
	ErrNotConfigured       = &Error{string(ReasonNotConfigured), "Self Password Reset was not configured with the user's email information"}
	ErrIdentifiersMismatch = &Error{string(ReasonIdentifiersMismatch), "the Login Name, Provider Code or Email is incorrect"}
	ErrResendAfterExpiry   = &Error{string(ReasonResendAfterExpiry), "the Password token has expired; go back to the login page and click Forgot Password? again"}
	ErrAdminLocked         = &Error{string(ReasonAdminLocked), "the account has been Admin Locked"}
	ErrDeactivated         = &Error{string(ReasonDeactivated), "the account has been Deactivated"}
	ErrDeleted             = &Error{string(ReasonDeleted), "the account has been Deleted"}
	ErrThrottled           = &Error{string(ReasonThrottled), "too many requests for this account; try again later"}
	ErrUnknownAccount      = &Error{string(ReasonUnknownAccount), "no account matches these identifiers"}
	ErrNoActiveToken       = &Error{string(ReasonNoActiveToken), "there is no password token to resend"}
	ErrInvalidToken        = &Error{string(ReasonInvalidToken), "the Password Token is not valid"}
	ErrTokenExpired        = &Error{string(ReasonTokenExpired), "the Password Token has expired"}
	ErrTokenUsed           = &Error{string(ReasonTokenUsed), "the Password Token has already been used"}
	ErrTokenSuperseded     = &Error{string(ReasonTokenSuperseded), "a newer Password Token was sent; use the latest one"}
	ErrTokenRevoked        = &Error{string(ReasonTokenRevoked), "the Password Token is no longer valid"}
	ErrTooManyAttempts     = &Error{string(ReasonTooManyAttempts), "too many wrong attempts; request a new one"}
	ErrInvalidCode         = &Error{"invalid_code", "the code is not correct"}
	ErrNoPendingCode       = &Error{"no_pending_code", "no verification code is pending; ask for a new one"}
	ErrCodeExpired         = &Error{string(ReasonCodeExpired), "the code has expired; ask for a new one"}
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
func reasonError(reason Reason) error {
	if e, ok := RequestRefusal(reason); ok {
		return e
	}
	return ErrInvalidInput
}

// RequestRefusal is the refusal whose code a ResetRequestRejected records as reason; false
// for any other reason. The mailer words the "Password Reset Error" email from it.
func RequestRefusal(reason Reason) (*Error, bool) {
	for _, e := range []*Error{ErrProviderNotAllowed, ErrUserNotEnabled, ErrNotConfigured, ErrIdentifiersMismatch,
		ErrResendAfterExpiry, ErrAdminLocked, ErrDeactivated, ErrDeleted, ErrThrottled, ErrUnknownAccount, ErrNoActiveToken} {
		if e.Code == string(reason) {
			return e, true
		}
	}
	return nil, false
}
