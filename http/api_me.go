package http

import (
	"errors"
	"net/http"
	"time"

	"selfreset/commands"
	"selfreset/domain"
)

type selfResetStatus struct {
	Enabled       bool    `json:"enabled"`
	Configured    bool    `json:"configured"`
	RecoveryEmail *string `json:"recovery_email"` // masked; null until configured
}

func statusOf(u domain.User) selfResetStatus {
	st := selfResetStatus{Enabled: u.SelfResetEnabled, Configured: u.Configured}
	if u.Configured && u.RecoveryEmail != "" {
		m := domain.MaskEmail(u.RecoveryEmail)
		st.RecoveryEmail = &m
	}
	return st
}

func self(p *Principal) commands.SelfUser {
	return commands.SelfUser{Provider: p.Session.Provider, Login: p.Session.Login}
}

// readSelfJSON is readJSON for the signed-in user's own routes, then one try of class (none
// when class is "") on their account: a malformed body costs no try. When ok is false it
// has answered.
func readSelfJSON[T any](s *Server, w http.ResponseWriter, r *http.Request, class string) (p *Principal, req T, ok bool) {
	p = PrincipalFrom(r.Context())
	req, ok = readJSON[T](w, r)
	return p, req, ok && (class == "" || s.limit(w, r, class, p.accountKey()))
}

// GET /api/v1/me/self-reset
func (s *Server) handleMySelfReset(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, statusOf(PrincipalFrom(r.Context()).User))
}

type verifyPasswordRequest struct {
	Password string `json:"password"`
}

func (q verifyPasswordRequest) check() *Error { return missing("password is required", q.Password) }

type verifyPasswordResponse struct {
	VerifiedUntil time.Time `json:"verified_until"`
}

var errStepUpFailed = &Error{Status: http.StatusUnauthorized, Code: domain.ErrInvalidCredentials.Code,
	Message: "the password is not correct"}

// POST /api/v1/me/self-reset/verify-password
func (s *Server) handleVerifyPassword(w http.ResponseWriter, r *http.Request) {
	p, req, ok := readSelfJSON[verifyPasswordRequest](s, w, r, LimitReauth)
	if !ok {
		return
	}
	until, err := s.StepUp(r.Context(), p, req.Password)
	if errors.Is(err, domain.ErrInvalidCredentials) {
		writeAPIError(w, errStepUpFailed)
		return
	}
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, verifyPasswordResponse{VerifiedUntil: until.UTC().Truncate(time.Second)})
}

type startEmailRequest struct {
	Email string `json:"email"`
}

func (q startEmailRequest) check() *Error {
	if q.Email == "" || overLong(q.Email) {
		return ErrorFor(domain.ErrInvalidInput)
	}
	return nil
}

type startEmailResponse struct {
	ExpiresInSeconds int `json:"expires_in_seconds"`
}

// POST /api/v1/me/self-reset/email
func (s *Server) handleStartEmail(w http.ResponseWriter, r *http.Request) {
	p, req, ok := readSelfJSON[startEmailRequest](s, w, r, "")
	if !ok {
		return
	}
	if _, err := s.cmds.StartEmailVerification(r.Context(), commands.StartEmailVerification{SelfUser: self(p), Email: req.Email}); err != nil {
		s.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusAccepted, startEmailResponse{ExpiresInSeconds: int(s.cmds.Policy().EmailCodeTTL / time.Second)})
}

type verifyEmailRequest struct {
	Code string `json:"code"`
}

// A missing, empty or null code is a malformed request, not a wrong try.
func (q verifyEmailRequest) check() *Error { return missing("code is required", q.Code) }

type verifyEmailResponse struct {
	EmailVerified bool `json:"email_verified"`
}

// POST /api/v1/me/self-reset/email/verify
func (s *Server) handleVerifyEmail(w http.ResponseWriter, r *http.Request) {
	p, req, ok := readSelfJSON[verifyEmailRequest](s, w, r, LimitCode)
	if !ok {
		return
	}
	if len(req.Code) > 64 {
		req.Code = req.Code[:64] // still a wrong code, and counted as one
	}
	if err := s.cmds.VerifyEmailCode(r.Context(), commands.VerifyEmailCode{SelfUser: self(p), Code: req.Code}); err != nil {
		s.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, verifyEmailResponse{EmailVerified: true})
}

// POST /api/v1/me/self-reset/configure
func (s *Server) handleConfigure(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if !readNoParams(w, r) {
		return
	}
	if err := s.cmds.ConfigureSelfReset(r.Context(), commands.ConfigureSelfReset{SelfUser: self(p)}); err != nil {
		s.WriteError(w, r, err)
		return
	}
	u, err := s.cmds.LoadUser(r.Context(), p.Session.Provider, p.Session.Login)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, statusOf(u))
}
