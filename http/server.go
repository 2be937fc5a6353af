// Package http is the service's HTTP side: the JSON API of issue 4 (and, on the same
// router, the HTML pages), its middleware (request ids, access log, security headers,
// body limit, cross-origin protection, rate limits) and its sessions.
//
// The package is named http and imports net/http as itself, as in Ben Johnson's
// "Standard Package Layout"; importers alias it, e.g. httpapi "selfreset/http".
//
// Wiring, for `selfreset serve`:
//
//	if err := httpapi.Migrate(ctx, pool); err != nil { … }
//	srv := httpapi.NewServer(httpapi.Config{
//		Commands: handler, Resets: resetService, Users: httpapi.NewPGUserLister(pool), Sessions: httpapi.NewPGSessions(pool),
//		Clock: domain.SystemClock{}, Logger: log,
//		RateLimiter: ratelimit.New(pool, clock), RateLimitPerIP: n,
//		TrustedProxies: prefixes, Ready: httpapi.PingAll(pool),
//	})
//	hs := &http.Server{Addr: addr, Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
//	… srv.Close(ctx); hs.Shutdown(ctx) // /readyz says 503 while the last requests finish
package http

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"

	"selfreset/commands"
	"selfreset/docs"
	"selfreset/domain"
	"selfreset/ratelimit"
)

// Commands is the part of *commands.Handler the HTTP side uses.
type Commands interface {
	LoadUser(ctx context.Context, provider, login string) (domain.User, error)
	Login(ctx context.Context, c commands.Login) (domain.User, error)
	VerifyPasswordForSettings(ctx context.Context, c commands.VerifyPasswordForSettings) error
	EnableSelfReset(ctx context.Context, c commands.UserCommand) error
	DisableSelfReset(ctx context.Context, c commands.UserCommand) error
	StartEmailVerification(ctx context.Context, c commands.StartEmailVerification) (string, error)
	VerifyEmailCode(ctx context.Context, c commands.VerifyEmailCode) error
	ConfigureSelfReset(ctx context.Context, c commands.ConfigureSelfReset) error
	Policy() domain.Policy
}

var _ Commands = (*commands.Handler)(nil)

// RateLimiter spends one request of key's budget (*ratelimit.Limiter). An error means
// nothing could be counted; the request is then answered 503, neither let through
// uncounted nor refused as if over budget.
type RateLimiter interface {
	Allow(ctx context.Context, key string, l ratelimit.Limit) (ratelimit.Decision, error)
}

// Config wires a Server. Commands, Resets and Sessions are required.
type Config struct {
	Commands Commands
	Resets   Resets     // the Forgot Password protocol (*reset.Service)
	Users    UserLister // the admin user list read model
	Audit    AuditLog   // the audit API's history (nil: the audit routes answer 503)
	Sessions Sessions
	Clock    domain.Clock // defaults to domain.SystemClock; must be the commands' clock
	Logger   *slog.Logger

	// RateLimiter keeps the budgets below, shared by every replica (*ratelimit.Limiter
	// over PostgreSQL). Required when a limit is on.
	RateLimiter RateLimiter
	// RateLimitPerIP is how many requests a minute one client IP may make to each of
	// login, forgot password, resend, password re-entry, code entry and token entry
	// (SELFRESET_RATE_LIMIT_PER_IP); 0 turns the IP limits off.
	RateLimitPerIP int
	// RateLimitPerAccount is the same budget per account (provider+login, or the account
	// a reset id names; SELFRESET_RATE_LIMIT_PER_ACCOUNT); 0 turns the account limits off.
	RateLimitPerAccount int
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// TrustedOrigins are other origins allowed to make state-changing browser requests
	// (e.g. "https://admin.example.org"); same-origin requests need no entry.
	TrustedOrigins []string

	// RequestTimeout, when positive, is each request's deadline: work still waiting then
	// (in line for password hashing, on a database) gives up and the answer is 503
	// unavailable. Set it below net/http.Server's WriteTimeout, after which no answer can
	// reach the client however the work ends.
	RequestTimeout time.Duration

	SessionTTL time.Duration // default 8h
	StepUpTTL  time.Duration // how long a password re-entry lasts; default 10m
	// InsecureCookies drops the Secure flag from the session cookie (plain-HTTP development).
	InsecureCookies bool

	// Ready reports whether the stores are reachable (GET /readyz); nil means always ready.
	Ready func(ctx context.Context) error

	// Observer, when set, is told of every answered request and rate-limit refusal
	// (*metrics.Metrics in `serve`).
	Observer Observer
}

// Observer records what the HTTP side did, for metrics. Calls must be cheap and safe
// for concurrent use.
type Observer interface {
	// ObserveRequest: one answered request; route is the matched route's template, ""
	// when no route matched.
	ObserveRequest(method, route string, status int, took time.Duration)
	// RateLimited: a request refused because the budget of class for scope ("ip" or
	// "account") was spent.
	RateLimited(class, scope string)
}

// Server is the HTTP side. Build it with NewServer, serve Handler(), Close on shutdown.
type Server struct {
	cfg    Config
	cmds   Commands
	resets Resets
	log    *slog.Logger
	clock  domain.Clock
	router *mux.Router

	limiter      RateLimiter
	ipLimit      ratelimit.Limit
	accountLimit ratelimit.Limit

	openAPI []byte // docs/openapi.json

	closed atomic.Bool
}

// maxIdentLen is how many bytes of an identifier or email a client may send.
const maxIdentLen = domain.MaxIdentLen

// NewServer builds the server.
func NewServer(c Config) *Server {
	if c.Commands == nil || c.Resets == nil || c.Sessions == nil {
		panic("http: NewServer needs Commands, Resets and Sessions")
	}
	c.Clock = cmp.Or[domain.Clock](c.Clock, domain.SystemClock{})
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.SessionTTL <= 0 {
		c.SessionTTL = 8 * time.Hour
	}
	if c.StepUpTTL <= 0 {
		c.StepUpTTL = 10 * time.Minute
	}
	if (c.RateLimitPerIP > 0 || c.RateLimitPerAccount > 0) && c.RateLimiter == nil {
		panic("http: NewServer needs a RateLimiter when a rate limit is on")
	}
	s := &Server{
		cfg:          c,
		cmds:         c.Commands,
		resets:       c.Resets,
		log:          c.Logger,
		clock:        c.Clock,
		router:       mux.NewRouter(),
		limiter:      c.RateLimiter,
		ipLimit:      ratelimit.PerMinute(c.RateLimitPerIP),
		accountLimit: ratelimit.PerMinute(c.RateLimitPerAccount),
		openAPI:      docs.OpenAPI(),
	}
	s.routes()
	return s
}

// Router is the mux the API's routes are on; the HTML pages add theirs to it (with full
// paths and .Methods(...): gorilla/mux v1.8.1 answers 404 instead of 405 inside
// subrouters). Routes added to it go through the middleware of Handler, and each must be
// listed in docs/api.md or the docs test fails.
func (s *Server) Router() *mux.Router { return s.router }

// Handler is the router wrapped in the middleware, to serve with net/http.Server.
func (s *Server) Handler() http.Handler {
	var h http.Handler = s.router
	h = s.crossOrigin(h)
	h = limitBody(h)
	h = securityHeaders(h)
	h = s.recoverPanics(h)
	h = s.accessLog(h)
	h = s.requestContext(h)
	return h
}

// Close marks the server as shutting down: /readyz answers 503 from now on. Call it
// before net/http.Server.Shutdown. Nothing is left to drain here: Forgot Password work
// is in the durable intake queue once answered.
func (s *Server) Close(context.Context) error {
	s.closed.Store(true)
	return nil
}

func (s *Server) isClosed() bool { return s.closed.Load() }

// ---- health ----

// Pinger is anything that can tell whether it is reachable (*pgxpool.Pool is one).
type Pinger interface {
	Ping(ctx context.Context) error
}

// PingAll is a Config.Ready that pings each store in turn.
func PingAll(ps ...Pinger) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		for _, p := range ps {
			if err := p.Ping(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.isClosed() {
		writeAPIError(w, NewError(http.StatusServiceUnavailable, CodeNotReady, "the server is shutting down"))
		return
	}
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "not ready",
				slog.String("request_id", RequestID(r.Context())), slog.String("error", err.Error()))
			writeAPIError(w, NewError(http.StatusServiceUnavailable, CodeNotReady, "a store is not reachable"))
			return
		}
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// ---- routes ----

func (s *Server) routes() {
	r := s.router
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, NewError(http.StatusNotFound, CodeNotFound, "no such resource"))
	})
	methodNotAllowed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, NewError(http.StatusMethodNotAllowed, CodeMethodNotAllow, "method not allowed on this resource"))
	})
	r.NotFoundHandler, r.MethodNotAllowedHandler = notFound, methodNotAllowed
	r.Use(recordRoute, s.checkRequestText)

	r.HandleFunc("/healthz", s.handleHealthz).Methods(http.MethodGet)
	r.HandleFunc("/readyz", s.handleReadyz).Methods(http.MethodGet)

	// Full paths on the one router: gorilla/mux v1.8.1 loses 405s inside subrouters.
	api := apiRoutes{r}
	auth := s.RequireSession
	stepUp := func(h http.HandlerFunc) http.Handler { return s.RequireSession(s.requireStepUp(h)) }

	api.HandleFunc("/sessions", s.handleCreateSession).Methods(http.MethodPost)
	api.Handle("/sessions/current", auth(http.HandlerFunc(s.handleDeleteSession))).Methods(http.MethodDelete)

	api.Handle("/providers/{code}/users", auth(http.HandlerFunc(s.handleListUsers))).Methods(http.MethodGet)
	api.Handle("/providers/{code}/users/{login}/self-reset", auth(s.adminSelfReset(s.cmds.EnableSelfReset))).Methods(http.MethodPut)
	api.Handle("/providers/{code}/users/{login}/self-reset", auth(s.adminSelfReset(s.cmds.DisableSelfReset))).Methods(http.MethodDelete)
	s.adminRoutes(api, auth)

	api.Handle("/me/self-reset", auth(http.HandlerFunc(s.handleMySelfReset))).Methods(http.MethodGet)
	api.Handle("/me/self-reset/verify-password", auth(http.HandlerFunc(s.handleVerifyPassword))).Methods(http.MethodPost)
	api.Handle("/me/self-reset/email", stepUp(s.handleStartEmail)).Methods(http.MethodPost)
	api.Handle("/me/self-reset/email/verify", stepUp(s.handleVerifyEmail)).Methods(http.MethodPost)
	api.Handle("/me/self-reset/configure", stepUp(s.handleConfigure)).Methods(http.MethodPost)

	api.HandleFunc("/password-resets", s.handleForgotPassword).Methods(http.MethodPost)
	api.HandleFunc("/password-resets/{reset_id}/resend", s.handleResend).Methods(http.MethodPost)
	api.HandleFunc("/password-resets/{reset_id}/complete", s.handleComplete).Methods(http.MethodPost)

	api.Handle("/audit/events", auth(http.HandlerFunc(s.handleAuditEvents))).Methods(http.MethodGet)
	api.Handle("/audit/state", auth(http.HandlerFunc(s.handleAuditState))).Methods(http.MethodGet)

	api.HandleFunc("/openapi.json", s.handleOpenAPI).Methods(http.MethodGet)
}

// GET /api/v1/openapi.json: the contract, as kept in docs/openapi.json.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(s.openAPI)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.openAPI)
}

// APIPrefix is where the JSON API lives.
const APIPrefix = "/api/v1"

type apiRoutes struct{ r *mux.Router }

func (a apiRoutes) HandleFunc(path string, h func(http.ResponseWriter, *http.Request)) *mux.Route {
	return a.r.HandleFunc(APIPrefix+path, h)
}

func (a apiRoutes) Handle(path string, h http.Handler) *mux.Route {
	return a.r.Handle(APIPrefix+path, h)
}

// errNotConfigured is for optional collaborators left out of Config.
var errNotConfigured = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "this part of the service is not available"}
