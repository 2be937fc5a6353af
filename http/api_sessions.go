package http

import (
	"errors"
	"net/http"
	"time"

	"selfreset/domain"
)

type createSessionRequest struct {
	ProviderCode string `json:"provider_code"`
	LoginName    string `json:"login_name"`
	Password     string `json:"password"`
}

type createSessionResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AccountKey names an account for the per-account rate limits.
func AccountKey(provider, login string) string {
	return domain.NormalizeProviderCode(provider) + "/" + domain.NormalizeLogin(login)
}

// POST /api/v1/sessions
func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	req, ok := readJSON[createSessionRequest](w, r)
	if !ok {
		return
	}
	if req.ProviderCode == "" || req.LoginName == "" || req.Password == "" {
		writeAPIError(w, NewError(http.StatusBadRequest, CodeBadRequest, "provider_code, login_name and password are required"))
		return
	}
	if len(req.ProviderCode) > maxIdentLen || len(req.LoginName) > maxIdentLen {
		s.WriteError(w, r, domain.ErrInvalidCredentials)
		return
	}
	if !s.limit(w, r, LimitLogin, AccountKey(req.ProviderCode, req.LoginName)) {
		return
	}
	token, sess, err := s.StartSession(r.Context(), req.ProviderCode, req.LoginName, req.Password)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusCreated, createSessionResponse{Token: token, ExpiresAt: sess.ExpiresAt.UTC().Truncate(time.Second)})
}

// DELETE /api/v1/sessions/current
func (s *Server) handleDeleteSession(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if err := s.EndSession(r.Context(), p); err != nil && !errors.Is(err, ErrSessionNotFound) {
		s.WriteError(w, r, err)
		return
	}
	if p.ViaCookie {
		s.ClearSessionCookie(w)
	}
	noContent(w)
}
