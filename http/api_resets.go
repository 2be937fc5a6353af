package http

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"selfreset/domain"
	"selfreset/reset"
)

// The Forgot Password API: transport only. The protocol (reset ids, answers that never
// tell whether anything matched, the durable intake) is the reset package's; these
// handlers decode, call it and map its errors (resetError).

// Resets is the reset protocol (*reset.Service); the API and the pages share it.
type Resets interface {
	RequestReset(ctx context.Context, provider, login, email string) (reset.Accepted, error)
	ResendReset(ctx context.Context, resetID string) (reset.Accepted, error)
	CompleteReset(ctx context.Context, resetID, token, newPassword, confirmPassword string) (reset.Ref, error)
	Open(resetID string) (reset.Ref, bool)
	Expired(ref reset.Ref) bool
	TokenTTL() time.Duration
}

var _ Resets = (*reset.Service)(nil)

type forgotRequest struct {
	LoginName    string `json:"login_name"`
	ProviderCode string `json:"provider_code"`
	Email        string `json:"email"`
}

func (q forgotRequest) check() *Error {
	if e := missing("login_name, provider_code and email are required", q.LoginName, q.ProviderCode, q.Email); e != nil {
		return e
	}
	if overLong(q.LoginName, q.ProviderCode, q.Email) {
		return NewError(http.StatusBadRequest, CodeBadRequest, "login_name, provider_code and email are at most 254 bytes each")
	}
	return nil
}

func (q forgotRequest) accountKey() string { return AccountKey(q.ProviderCode, q.LoginName) }

type resetAccepted struct {
	ResetID          string `json:"reset_id"`
	ExpiresInSeconds int    `json:"expires_in_seconds"`
}

func acceptedBody(a reset.Accepted) resetAccepted {
	return resetAccepted{ResetID: a.ResetID, ExpiresInSeconds: int(a.ExpiresIn / time.Second)}
}

func (s *Server) tokenTTL() time.Duration { return s.resets.TokenTTL() }

// Errors of the reset protocol as the API answers them.
var (
	// ErrResetNotFound is the answer for a reset id this server did not seal (404 not_found).
	ErrResetNotFound = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such password reset"}
	// ErrResendExpired is Resend's answer once the reset id's token lifetime has passed
	// (410 token_expired: start again from Forgot Password?).
	ErrResendExpired    = &Error{Status: http.StatusGone, Code: domain.ErrTokenExpired.Code, Message: domain.ErrResendAfterExpiry.Message}
	errPasswordMismatch = &Error{Status: http.StatusBadRequest, Code: CodePasswordMatch,
		Message: "the new password and its confirmation do not match"}
	errResetUnavailable = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
		Message: "the request could not be stored; try again in a moment", RetryAfter: 5 * time.Second}
)

// resetError maps the reset protocol's own errors to answers; domain refusals and
// failures pass through to ErrorFor.
func resetError(err error) error {
	switch {
	case errors.Is(err, reset.ErrNotFound):
		return ErrResetNotFound
	case errors.Is(err, reset.ErrResendExpired):
		return ErrResendExpired
	case errors.Is(err, reset.ErrPasswordMismatch):
		return errPasswordMismatch
	case errors.Is(err, reset.ErrUnavailable):
		return errResetUnavailable
	}
	return err
}

// POST /api/v1/password-resets
func (s *Server) handleForgotPassword(w http.ResponseWriter, r *http.Request) {
	req, ok := readAccountJSON[forgotRequest](s, w, r, LimitForgot)
	if !ok {
		return
	}
	a, err := s.resets.RequestReset(r.Context(), req.ProviderCode, req.LoginName, req.Email)
	if err != nil {
		s.WriteError(w, r, resetError(err))
		return
	}
	WriteJSON(w, http.StatusAccepted, acceptedBody(a))
}

// openReset is the reset the route's reset_id names. When there is none (unknown,
// expired or ended), notFound has answered and ok is false.
func (s *Server) openReset(w http.ResponseWriter, r *http.Request, notFound http.HandlerFunc) (resetID string, ref reset.Ref, ok bool) {
	resetID = mux.Vars(r)["reset_id"]
	if ref, ok = s.resets.Open(resetID); !ok {
		notFound(w, r)
	}
	return resetID, ref, ok
}

func apiResetNotFound(w http.ResponseWriter, _ *http.Request) { writeAPIError(w, ErrResetNotFound) }

// POST /api/v1/password-resets/{reset_id}/resend
func (s *Server) handleResend(w http.ResponseWriter, r *http.Request) {
	resetID, ref, ok := s.openReset(w, r, apiResetNotFound)
	if !ok {
		return
	}
	if !readNoParams(w, r) {
		return
	}
	if !s.limit(w, r, LimitResend, ref.Provider+"/"+ref.Login) {
		return
	}
	a, err := s.resets.ResendReset(r.Context(), resetID)
	if err != nil {
		s.WriteError(w, r, resetError(err))
		return
	}
	WriteJSON(w, http.StatusAccepted, acceptedBody(a))
}

type completeRequest struct {
	Token           string `json:"token"`
	NewPassword     string `json:"new_password"`
	ConfirmPassword string `json:"confirm_password"`
}

// POST /api/v1/password-resets/{reset_id}/complete
func (s *Server) handleComplete(w http.ResponseWriter, r *http.Request) {
	resetID, ref, ok := s.openReset(w, r, apiResetNotFound)
	if !ok {
		return
	}
	req, ok := readJSON[completeRequest](w, r)
	if !ok {
		return
	}
	if !s.limit(w, r, LimitToken, ref.Provider+"/"+ref.Login) {
		return
	}
	if err := s.completeReset(r.Context(), resetID, req.Token, req.NewPassword, req.ConfirmPassword); err != nil {
		s.WriteError(w, r, err)
		return
	}
	noContent(w)
}

// completeReset runs Change Password and, when the password changed, marks the user's
// session rows ended (Authenticate already refuses sessions from before the change).
// The error is mapped (resetError) for WriteError / pageError.
func (s *Server) completeReset(ctx context.Context, resetID, token, newPassword, confirm string) error {
	ref, err := s.resets.CompleteReset(ctx, resetID, token, newPassword, confirm)
	if err != nil {
		return resetError(err)
	}
	if _, err := s.cfg.Sessions.RevokeUser(ctx, ref.Provider, ref.Login, s.clock.Now()); err != nil {
		s.log.WarnContext(ctx, "revoking sessions after a reset failed",
			"request_id", RequestID(ctx), "error", err.Error())
	}
	return nil
}
