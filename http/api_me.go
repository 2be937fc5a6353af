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

// GET /api/v1/me/self-reset
func (s *Server) handleMySelfReset(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, statusOf(PrincipalFrom(r.Context()).User))
}

type verifyPasswordRequest struct {
	Password string `json:"password"`
}

type verifyPasswordResponse struct {
	VerifiedUntil time.Time `json:"verified_until"`
}

var errStepUpFailed = &Error{Status: http.StatusUnauthorized, Code: domain.ErrInvalidCredentials.Code,
	Message: "the password is not correct"}

// POST /api/v1/me/self-reset/verify-password
func (s *Server) handleVerifyPassword(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	req, ok := readJSON[verifyPasswordRequest](w, r)
	if !ok {
		return
	}
	if req.Password == "" {
		writeAPIError(w, NewError(http.StatusBadRequest, CodeBadRequest, "password is required"))
		return
	}
	if !s.limit(w, r, LimitReauth, AccountKey(p.Session.Provider, p.Session.Login)) {
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

type startEmailResponse struct {
	ExpiresInSeconds int `json:"expires_in_seconds"`
}

// POST /api/v1/me/self-reset/email
func (s *Server) handleStartEmail(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	req, ok := readJSON[startEmailRequest](w, r)
	if !ok {
		return
	}
	if req.Email == "" || len(req.Email) > maxIdentLen {
		s.WriteError(w, r, domain.ErrInvalidInput)
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

type verifyEmailResponse struct {
	EmailVerified bool `json:"email_verified"`
}

// POST /api/v1/me/self-reset/email/verify
func (s *Server) handleVerifyEmail(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	req, ok := readJSON[verifyEmailRequest](w, r)
	if !ok {
		return
	}
	// A missing, empty or null code is a malformed request, not a wrong try.
	if req.Code == "" {
		writeAPIError(w, NewError(http.StatusBadRequest, CodeBadRequest, "code is required"))
		return
	}
	if !s.limit(w, r, LimitCode, AccountKey(p.Session.Provider, p.Session.Login)) {
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
