package http

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/secret"
)

// The Forgot Password flow. Its answers must not tell whether an account matched
// (DESIGN §4), so:
//
//   - POST /password-resets answers 202 with a sealed reset id before the command runs;
//     the command runs on a background worker, so the answer's timing does not depend on
//     the account.
//   - Resend decides 202 or 410 from the reset id alone (issued-at + token lifetime), which
//     for a matched request is exactly when its current token expires, since every 202
//     hands back a fresh reset id for the token it sends. The command runs in the
//     background, and only when the account's current token was issued for this request
//     or a later one.
//   - A reset id reaches the account's token only when the request named the account's
//     recovery email (the reset id carries a keyed hash of the email entered) and the
//     current token was issued for this request or a later one. A reset id made with a
//     wrong email, or for someone else's login before their token, never reaches it.
//   - Complete runs the command only for a reset id that reaches the token; otherwise it
//     answers as an unmatched request would (invalid_token, or token_expired once the
//     reset id has expired). When the command runs, every refusal that a wrong value can
//     cause (a wrong token, the try that uses up the attempts, losing a race with
//     concurrent tries) gets that same answer, so no answer tells a matched request from
//     an unmatched one. Only the right value learns more (used, superseded, revoked,
//     expired, the password policy), as the domain decides.

type forgotRequest struct {
	LoginName    string `json:"login_name"`
	ProviderCode string `json:"provider_code"`
	Email        string `json:"email"`
}

type resetAccepted struct {
	ResetID          string `json:"reset_id"`
	ExpiresInSeconds int    `json:"expires_in_seconds"`
}

func (s *Server) tokenTTL() time.Duration { return s.cmds.Policy().ResetTokenTTL }

// POST /api/v1/password-resets
func (s *Server) handleForgotPassword(w http.ResponseWriter, r *http.Request) {
	var req forgotRequest
	if e := DecodeJSON(r, &req); e != nil {
		writeAPIError(w, e)
		return
	}
	if req.LoginName == "" || req.ProviderCode == "" || req.Email == "" {
		writeAPIError(w, NewError(http.StatusBadRequest, CodeBadRequest, "login_name, provider_code and email are required"))
		return
	}
	if len(req.LoginName) > maxIdentLen || len(req.ProviderCode) > maxIdentLen || len(req.Email) > maxIdentLen {
		writeAPIError(w, NewError(http.StatusBadRequest, CodeBadRequest, "login_name, provider_code and email are at most 254 bytes each"))
		return
	}
	if !s.limit(w, r, LimitForgot, AccountKey(req.ProviderCode, req.LoginName)) {
		return
	}
	id, ttl := s.RequestReset(r.Context(), req.ProviderCode, req.LoginName, req.Email)
	WriteJSON(w, http.StatusAccepted, resetAccepted{ResetID: id, ExpiresInSeconds: int(ttl / time.Second)})
}

// RequestReset is the Reset Password page's submission: it queues the command and
// returns at once with a reset id and the token lifetime, the same whether or not
// anything matches. ctx's request metadata goes with the command.
func (s *Server) RequestReset(ctx context.Context, provider, login, email string) (resetID string, expiresIn time.Duration) {
	code, login := domain.NormalizeProviderCode(provider), domain.NormalizeLogin(login)
	ref := newResetRef(s.cfg.Keyring, clipString(code, maxIdentLen), clipString(login, maxIdentLen), email, s.clock.Now())
	s.enqueue(ctx, "request-reset-token", func(ctx context.Context) {
		_, err := s.cmds.RequestResetToken(ctx, commands.RequestResetToken{Provider: code, Login: login, Email: email})
		s.logOutcome(ctx, "request-reset-token", err)
	})
	return sealResetID(s.cfg.Keyring, ref), s.tokenTTL()
}

// logOutcome logs background work: refusals at debug (the events hold them), failures
// as errors. Never the email or the token.
func (s *Server) logOutcome(ctx context.Context, what string, err error) {
	attrs := []slog.Attr{slog.String("work", what), slog.String("request_id", RequestID(ctx))}
	switch {
	case err == nil:
		s.log.LogAttrs(ctx, slog.LevelDebug, "background work done", attrs...)
	case domain.Code(err) != "":
		s.log.LogAttrs(ctx, slog.LevelDebug, "background work refused", append(attrs, slog.String("code", domain.Code(err)))...)
	default:
		s.log.LogAttrs(ctx, slog.LevelError, "background work failed", append(attrs, slog.String("error", err.Error()))...)
	}
}

// tokenForRequest reports whether u's current token was issued for the request ref names
// (or a later one of the same account), and that request named u's recovery email.
func tokenForRequest(k *secret.Keyring, u domain.User, ref resetRef) bool {
	return u.Registered && u.Token != nil && !u.Token.IssuedAt.Before(ref.IssuedAt) &&
		ref.emailMatches(k, u.RecoveryEmail)
}

// ErrResetNotFound is the answer for a reset id this server did not seal (404 not_found).
var ErrResetNotFound = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such password reset"}

// ErrResendExpired is Resend's answer once the reset id's token lifetime has passed
// (410 token_expired: start again from Forgot Password?).
var ErrResendExpired = &Error{Status: http.StatusGone, Code: domain.ErrTokenExpired.Code, Message: domain.ErrResendAfterExpiry.Message}

// POST /api/v1/password-resets/{reset_id}/resend
func (s *Server) handleResend(w http.ResponseWriter, r *http.Request) {
	resetID := mux.Vars(r)["reset_id"]
	ref, ok := openResetID(s.cfg.Keyring, resetID)
	if !ok {
		writeAPIError(w, ErrResetNotFound)
		return
	}
	var req struct{}
	if e := decodeOptionalJSON(r, &req); e != nil {
		writeAPIError(w, e)
		return
	}
	if !s.limit(w, r, LimitResend, ref.Provider+"/"+ref.Login) {
		return
	}
	id, ttl, err := s.ResendReset(r.Context(), resetID)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusAccepted, resetAccepted{ResetID: id, ExpiresInSeconds: int(ttl / time.Second)})
}

// ResendReset is the Change Password page's Resend. It answers from the reset id alone:
// ErrResetNotFound, ErrResendExpired, or a fresh reset id (use it from now on) and the
// token lifetime; the command runs in the background.
func (s *Server) ResendReset(ctx context.Context, resetID string) (newResetID string, expiresIn time.Duration, err error) {
	ref, ok := openResetID(s.cfg.Keyring, resetID)
	if !ok {
		return "", 0, ErrResetNotFound
	}
	now := s.clock.Now()
	expired := !now.Before(ref.IssuedAt.Add(s.tokenTTL()))
	s.enqueue(ctx, "resend-reset-token", func(ctx context.Context) {
		u, _, err := s.cmds.LoadUser(ctx, ref.Provider, ref.Login)
		if err != nil {
			s.logOutcome(ctx, "resend-reset-token", err)
			return
		}
		if !tokenForRequest(s.cfg.Keyring, u, ref) {
			return // nothing was sent for this request: nothing to resend
		}
		if expired && u.Token.State == domain.TokenActive && now.Before(u.Token.ExpiresAt) {
			return // a later request's token is live; an old reset id must not replace it
		}
		// The command decides: a fresh token, or a recorded refusal (after expiry the
		// owner gets a Password Reset Error email).
		_, err = s.cmds.ResendResetToken(ctx, commands.ResendResetToken{Provider: ref.Provider, Login: ref.Login})
		s.logOutcome(ctx, "resend-reset-token", err)
	})
	if expired {
		return "", 0, ErrResendExpired
	}
	// The fresh id names the same request (and email) at the time of the new token.
	next := ref
	next.IssuedAt = now.Truncate(time.Millisecond)
	return sealResetID(s.cfg.Keyring, next), s.tokenTTL(), nil
}

type completeRequest struct {
	Token           string `json:"token"`
	NewPassword     string `json:"new_password"`
	ConfirmPassword string `json:"confirm_password"`
}

var (
	errPasswordMismatch = &Error{Status: http.StatusBadRequest, Code: CodePasswordMatch,
		Message: "the new password and its confirmation do not match"}
	errInvalidToken = &Error{Status: http.StatusBadRequest, Code: domain.ErrInvalidToken.Code, Message: domain.ErrInvalidToken.Message}
	errTokenExpired = &Error{Status: http.StatusBadRequest, Code: domain.ErrTokenExpired.Code, Message: domain.ErrTokenExpired.Message}
)

// unmatchedAnswer is Complete's answer for a request that matched nothing: invalid_token,
// or token_expired once the reset id's lifetime has passed. It depends on the reset id
// and the time alone.
func (s *Server) unmatchedAnswer(ref resetRef) *Error {
	if !s.clock.Now().Before(ref.IssuedAt.Add(s.tokenTTL())) {
		return errTokenExpired
	}
	return errInvalidToken
}

// sayNothing lists the refusals of ResetPassword that a wrong value (or a concurrent
// one) can cause. They are answered as an unmatched request would be: anything else, such
// as the busy of a lost race, would tell that the reset id reached a token, that is, that
// the login, provider and email all matched. (The domain answers a fifth wrong value with
// invalid_token too; too_many_attempts goes only to whoever then types the right one.)
var sayNothing = []error{domain.ErrInvalidToken, commands.ErrTooMuchContention,
	domain.ErrUnknownAccount, domain.ErrNoActiveToken}

// tokenError maps the refusals of ResetPassword for the request ref names: those in
// sayNothing get the unmatched answer; used, superseded and revoked tokens (which only
// the right value learns) are invalid_token with a plain message saying which.
func (s *Server) tokenError(ref resetRef, err error) error {
	for _, e := range sayNothing {
		if errors.Is(err, e) {
			return s.unmatchedAnswer(ref)
		}
	}
	for _, e := range []*domain.Error{domain.ErrTokenUsed, domain.ErrTokenSuperseded, domain.ErrTokenRevoked} {
		if errors.Is(err, e) {
			return &Error{Status: http.StatusBadRequest, Code: domain.ErrInvalidToken.Code, Message: e.Message}
		}
	}
	return err
}

// POST /api/v1/password-resets/{reset_id}/complete
func (s *Server) handleComplete(w http.ResponseWriter, r *http.Request) {
	resetID := mux.Vars(r)["reset_id"]
	ref, ok := openResetID(s.cfg.Keyring, resetID)
	if !ok {
		writeAPIError(w, ErrResetNotFound)
		return
	}
	var req completeRequest
	if e := DecodeJSON(r, &req); e != nil {
		writeAPIError(w, e)
		return
	}
	if !s.limit(w, r, LimitToken, ref.Provider+"/"+ref.Login) {
		return
	}
	if err := s.CompleteReset(r.Context(), resetID, req.Token, req.NewPassword, req.ConfirmPassword); err != nil {
		s.WriteError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// CompleteReset is the Change Password page's submission. It returns nil when the
// password changed (every session of the user then ends), or an error for WriteError /
// ErrorFor: ErrResetNotFound, password_mismatch, invalid_token (wrong, or, to the right
// value only, used, superseded or revoked, said plainly), token_expired, password_rejected
// (with reasons), or a store failure. A wrong value gets the same answer whether or not
// the request matched (see unmatchedAnswer): never too_many_attempts or busy.
func (s *Server) CompleteReset(ctx context.Context, resetID, token, newPassword, confirmPassword string) error {
	ref, ok := openResetID(s.cfg.Keyring, resetID)
	if !ok {
		return ErrResetNotFound
	}
	if newPassword != confirmPassword {
		return errPasswordMismatch
	}
	if token == "" || len(token) > 64 {
		return errInvalidToken
	}
	u, _, err := s.cmds.LoadUser(ctx, ref.Provider, ref.Login)
	if err != nil {
		return err
	}
	if !tokenForRequest(s.cfg.Keyring, u, ref) {
		return s.unmatchedAnswer(ref) // as for a request that matched nothing
	}
	err = s.cmds.ResetPassword(ctx, commands.ResetPassword{Provider: ref.Provider, Login: ref.Login, Token: token, NewPassword: newPassword})
	if err != nil {
		if errors.Is(err, commands.ErrTooMuchContention) {
			s.log.LogAttrs(ctx, slog.LevelWarn, "password token check lost every race; answered as a wrong token",
				slog.String("request_id", RequestID(ctx)))
		}
		return s.tokenError(ref, err)
	}
	// Authenticate already ends sessions from before the password change; mark the rows too.
	if _, err := s.cfg.Sessions.RevokeUser(ctx, u.Provider, u.Login, s.clock.Now()); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "revoking sessions after a reset failed",
			slog.String("request_id", RequestID(ctx)), slog.String("error", err.Error()))
	}
	return nil
}
