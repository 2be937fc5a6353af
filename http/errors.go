package http

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"selfreset/commands"
	"selfreset/domain"
)

// Codes the HTTP layer itself answers with (the domain's own codes come from domain.Code).
const (
	CodeBadRequest      = "bad_request"
	CodePayloadTooLarge = "payload_too_large"
	CodeUnauthorized    = "unauthorized"
	CodeForbidden       = "forbidden"
	CodeNotFound        = "not_found"
	CodeMethodNotAllow  = "method_not_allowed"
	CodeCrossOrigin     = "cross_origin_forbidden"
	CodeRateLimited     = "rate_limited"
	CodePasswordMatch   = "password_mismatch"
	CodeNotReady        = "not_ready"
	CodeBusy            = "busy"
	CodeUnavailable     = "unavailable"
	CodeInternal        = "internal"
)

// Error is an answer the API gives instead of a result. It is written as
// {"error":{"code":"...","message":"...","reasons":[...]}} with Status.
type Error struct {
	Status     int
	Code       string
	Message    string
	Reasons    []string      // password_rejected only: what the policy objected to
	RetryAfter time.Duration // set the Retry-After header when positive
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// NewError builds an Error.
func NewError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// statusByCode is the HTTP status of every domain refusal that can reach a client.
var statusByCode = map[string]int{
	domain.ErrInvalidInput.Code:           http.StatusBadRequest,
	domain.ErrForbidden.Code:              http.StatusForbidden,
	domain.ErrProviderExists.Code:         http.StatusConflict,
	domain.ErrProviderNotFound.Code:       http.StatusNotFound,
	domain.ErrUserExists.Code:             http.StatusConflict,
	domain.ErrUserNotFound.Code:           http.StatusNotFound,
	domain.ErrInvalidCredentials.Code:     http.StatusUnauthorized,
	domain.ErrProviderNotAllowed.Code:     http.StatusConflict,
	domain.ErrUserNotEnabled.Code:         http.StatusConflict,
	domain.ErrNotConfigured.Code:          http.StatusConflict,
	domain.ErrAdminLocked.Code:            http.StatusConflict,
	domain.ErrDeactivated.Code:            http.StatusConflict,
	domain.ErrDeleted.Code:                http.StatusConflict,
	domain.ErrThrottled.Code:              http.StatusTooManyRequests,
	domain.ErrInvalidToken.Code:           http.StatusBadRequest,
	domain.ErrTokenExpired.Code:           http.StatusBadRequest,
	domain.ErrTooManyAttempts.Code:        http.StatusBadRequest,
	domain.ErrInvalidCode.Code:            http.StatusBadRequest,
	domain.ErrNoPendingCode.Code:          http.StatusBadRequest,
	domain.ErrCodeExpired.Code:            http.StatusBadRequest,
	domain.ErrEmailNotVerified.Code:       http.StatusConflict,
	domain.ErrReauthRequired.Code:         http.StatusForbidden,
	domain.ErrPasswordRejected.Code:       http.StatusBadRequest,
	domain.ErrUnknownRole.Code:            http.StatusBadRequest,
	domain.ErrAccountNotActive.Code:       http.StatusForbidden,
	domain.ErrIdentifiersMismatch.Code:    http.StatusBadRequest,
	domain.ErrLastUserAdmin.Code:          http.StatusConflict,
	domain.ErrSelfAction.Code:             http.StatusConflict,
	domain.ErrAccountAdminLocked.Code:     http.StatusForbidden,
	domain.ErrPasswordChangeRequired.Code: http.StatusForbidden,
}

// ErrorFor turns any error into the Error a client sees: domain refusals keep their code
// and message; anything else is a 500 whose detail stays in the log.
func ErrorFor(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var pr *domain.PasswordRejectedError
	if errors.As(err, &pr) {
		return &Error{Status: http.StatusBadRequest, Code: domain.ErrPasswordRejected.Code,
			Message: domain.ErrPasswordRejected.Message, Reasons: append([]string(nil), pr.Reasons...)}
	}
	var de *domain.Error
	if errors.As(err, &de) {
		status, ok := statusByCode[de.Code]
		if !ok {
			status = http.StatusBadRequest
		}
		e := &Error{Status: status, Code: de.Code, Message: de.Message}
		if de == domain.ErrThrottled {
			e.RetryAfter = time.Minute
		}
		return e
	}
	if errors.Is(err, commands.ErrTooMuchContention) {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeBusy,
			Message: "the account is busy; try again", RetryAfter: time.Second}
	}
	if Unreachable(err) || errors.Is(err, context.Canceled) {
		// A store out of reach, or work that could not finish in time (e.g. waiting in
		// line for password hashing): nothing was decided, so the client may try again.
		return errUnavailable
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "something went wrong; try again later"}
}

// errUnavailable answers a request the service could not handle right now: a store it
// needs is unreachable, or the request ran out of time waiting for its turn.
var errUnavailable = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
	Message: "the service is temporarily unavailable; try again shortly", RetryAfter: 5 * time.Second}

// Unreachable reports whether err says a store could not be reached, rather than that
// something is wrong with the request or the code: no connection (refused, lost, the
// pool closed), a timeout, or PostgreSQL refusing work while it starts or stops. Such
// failures answer 503 unavailable (try again), not 500 internal.
func Unreachable(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.Timeout(err),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, puddle.ErrClosedPool):
		return true
	case errors.As(err, &pe):
		// Class 08: connection exception; 57P01–57P03: shutting down, cannot connect now.
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P")
	}
	return false
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Reasons []string `json:"reasons,omitempty"`
}

// WriteJSON writes v as JSON with status. API answers are never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if v == nil {
		w.WriteHeader(status)
		return
	}
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"something went wrong; try again later"}}`)
	}
	body = append(body, '\n')
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// noContent answers 204; like WriteJSON's answers, never cached.
func noContent(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// WriteError writes err as the API's error body. Errors that are not refusals are logged
// (with the request id) and answered with a bare 500.
func (s *Server) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := ErrorFor(err)
	if e.Status >= 500 {
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("request_id", RequestID(r.Context())), slog.String("error", err.Error()))
	}
	writeAPIError(w, e)
}

func writeAPIError(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		secs := int((e.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	if e.Status == http.StatusUnauthorized && e.Code == CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="selfreset"`)
	}
	WriteJSON(w, e.Status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message, Reasons: e.Reasons}})
}
