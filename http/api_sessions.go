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

func (q createSessionRequest) check() *Error {
	if e := missing("provider_code, login_name and password are required", q.ProviderCode, q.LoginName, q.Password); e != nil {
		return e
	}
	if overLong(q.ProviderCode, q.LoginName) {
		return ErrorFor(domain.ErrInvalidCredentials) // no account has such a name
	}
	return nil
}

func (q createSessionRequest) accountKey() string { return AccountKey(q.ProviderCode, q.LoginName) }

// AccountKey names an account for the per-account rate limits.
func AccountKey(provider, login string) string {
	return domain.NormalizeProviderCode(provider) + "/" + domain.NormalizeLogin(login)
}

// readAccountJSON is readJSON for a body that names an account (sign-in, Forgot Password),
// then one try of class on that account: a malformed body costs no try. When it returns
// false it has answered.
func readAccountJSON[T interface{ accountKey() string }](s *Server, w http.ResponseWriter, r *http.Request, class string) (T, bool) {
	req, ok := readJSON[T](w, r)
	return req, ok && s.limit(w, r, class, req.accountKey())
}

// POST /api/v1/sessions
func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	req, ok := readAccountJSON[createSessionRequest](s, w, r, LimitLogin)
	if !ok {
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
