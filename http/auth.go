package http

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"selfreset/commands"
	"selfreset/domain"
)

// SessionCookieName is the cookie the HTML pages keep the session token in. Cookie and
// bearer sessions are the same sessions, in the same store.
const SessionCookieName = "selfreset_session"

// ErrNoSession means the request carries no live session: none given, unknown, expired,
// revoked, or ended by a password change or an account status change.
var ErrNoSession = errors.New("http: no live session")

// Principal is the signed-in user of a request: the session and the user's aggregate as
// folded for this request (never a read model).
type Principal struct {
	Session Session
	User    domain.User
	// ViaCookie is true when the token came from the session cookie.
	ViaCookie bool
}

// Actor is the principal as the command side names actors.
func (p *Principal) Actor() domain.Actor { return domain.UserActor(p.User) }

// accountKey names the signed-in account for the per-account rate limits.
func (p *Principal) accountKey() string { return AccountKey(p.Session.Provider, p.Session.Login) }

type principalKey struct{}

// PrincipalFrom returns the principal RequireSession put into ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// WithPrincipal returns ctx carrying p (for handlers that authenticate by themselves).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// SessionToken returns the token a request presents: "Authorization: Bearer <token>"
// first, else the session cookie. ok is false when there is none or the Authorization
// header is not a bearer token.
func SessionToken(r *http.Request) (token string, viaCookie, ok bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, found := strings.Cut(h, " ")
		if !found || !strings.EqualFold(scheme, "Bearer") {
			return "", false, false
		}
		tok = strings.TrimSpace(tok)
		return tok, false, tok != ""
	}
	if c, err := r.Cookie(SessionCookieName); err == nil && c.Value != "" {
		return c.Value, true, true
	}
	return "", false, false
}

// Authenticate finds the request's session and checks it against the user's current
// aggregate: the session is dead when the password changed since it was opened (every
// reset ends all sessions) or the account is admin-locked, deactivated or deleted; a dead
// session is revoked on the spot. It returns ErrNoSession, or another error when a store
// failed.
func (s *Server) Authenticate(r *http.Request) (*Principal, error) {
	token, viaCookie, ok := SessionToken(r)
	if !ok || !wellFormedToken(token) {
		return nil, ErrNoSession
	}
	ctx := r.Context()
	now := s.clock.Now()
	sess, err := s.cfg.Sessions.Get(ctx, SessionID(token), now)
	if errors.Is(err, ErrSessionNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, err
	}
	u, err := s.cmds.LoadUser(ctx, sess.Provider, sess.Login)
	if err != nil {
		return nil, err
	}
	if !u.Active() || u.SessionEpoch != sess.Epoch {
		if err := s.cfg.Sessions.Revoke(ctx, sess.ID, now); err != nil {
			return nil, err
		}
		return nil, ErrNoSession
	}
	return &Principal{Session: sess, User: u, ViaCookie: viaCookie}, nil
}

var errUnauthorized = &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
	Message: "sign in first; the session is missing, expired or has ended"}

// RequireSession answers 401 unauthorized unless the request has a live session, and
// otherwise puts the Principal into the request context (see PrincipalFrom).
func (s *Server) RequireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.Authenticate(r)
		if errors.Is(err, ErrNoSession) {
			writeAPIError(w, errUnauthorized)
			return
		}
		if err != nil {
			s.WriteError(w, r, err)
			return
		}
		if p.User.MustChangePassword && !passwordChangeAllowed(r) {
			writeAPIError(w, errPasswordChangeRequired)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// requireStepUp answers 403 reauth_required unless the password was re-entered on this
// session within StepUpTTL.
func (s *Server) requireStepUp(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		if p == nil || !p.Session.SteppedUp(s.clock.Now()) {
			s.WriteError(w, r, domain.ErrReauthRequired)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// StartSession signs a user in and opens a session. Every refusal (unknown user, wrong
// password, any lock) is domain.ErrInvalidCredentials. The event records the session's
// handle, never the token.
func (s *Server) StartSession(ctx context.Context, provider, login, password string) (token string, sess Session, err error) {
	token, id := NewSessionToken()
	u, err := s.cmds.Login(ctx, commands.Login{Provider: provider, Login: login, Password: password, SessionID: SessionHandle(id)})
	if err != nil {
		return "", Session{}, err
	}
	now := s.clock.Now()
	sess = Session{ID: id, Provider: u.Provider, Login: u.Login, Epoch: u.SessionEpoch,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL)}
	if err := s.cfg.Sessions.Create(ctx, sess); err != nil {
		return "", Session{}, err
	}
	return token, sess, nil
}

// EndSession revokes p's session.
func (s *Server) EndSession(ctx context.Context, p *Principal) error {
	return s.cfg.Sessions.Revoke(ctx, p.Session.ID, s.clock.Now())
}

// StepUp re-checks the user's password on p's session and, when right, lets the
// settings calls through until the returned time.
func (s *Server) StepUp(ctx context.Context, p *Principal, password string) (time.Time, error) {
	err := s.cmds.VerifyPasswordForSettings(ctx, commands.VerifyPasswordForSettings{
		Provider: p.Session.Provider, Login: p.Session.Login, Password: password})
	if err != nil {
		return time.Time{}, err
	}
	until := s.clock.Now().Add(s.cfg.StepUpTTL)
	if err := s.cfg.Sessions.SetStepUp(ctx, p.Session.ID, until); err != nil {
		return time.Time{}, err
	}
	p.Session.StepUpUntil = until
	return until, nil
}

// SetSessionCookie gives the browser the session token (HttpOnly, SameSite=Lax, Secure
// unless Config.InsecureCookies).
func (s *Server) SetSessionCookie(w http.ResponseWriter, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookieName, Value: token, Path: "/", Expires: expires,
		MaxAge: max(int(expires.Sub(s.clock.Now()).Seconds()), 1), HttpOnly: true, Secure: !s.cfg.InsecureCookies,
		SameSite: http.SameSiteLaxMode})
}

// ClearSessionCookie removes the session cookie.
func (s *Server) ClearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: !s.cfg.InsecureCookies, SameSite: http.SameSiteLaxMode})
}
