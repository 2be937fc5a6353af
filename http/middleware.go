package http

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/ratelimit"
)

// ContentSecurityPolicy allows no inline script, no framing, and forms only to this origin.
const ContentSecurityPolicy = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

// requestInfo travels in the request context; the access log reads it at the end.
type requestInfo struct {
	id    string
	ip    netip.Addr
	route string // the matched route's template, set once the router matched
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	ri, _ := ctx.Value(infoKey{}).(*requestInfo)
	return ri
}

// RequestID is the request's id (X-Request-Id), or "" outside a request.
func RequestID(ctx context.Context) string {
	if ri := infoFrom(ctx); ri != nil {
		return ri.id
	}
	return ""
}

// ClientIP is the client's address as the server decided it (see Config.TrustedProxies).
func ClientIP(ctx context.Context) netip.Addr {
	if ri := infoFrom(ctx); ri != nil {
		return ri.ip
	}
	return netip.Addr{}
}

// acceptRequestID keeps a caller's X-Request-Id only when it is short and plain.
func acceptRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// requestContext gives every request an id, decides the client IP, and puts both (with
// the user agent) into the command metadata so that events carry them; it also sets the
// request's deadline (Config.RequestTimeout).
func (s *Server) requestContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !acceptRequestID(id) {
			id = uuid.NewString()
		}
		ri := &requestInfo{id: id, ip: clientIP(r, s.cfg.TrustedProxies)}
		w.Header().Set("X-Request-Id", id)
		ip := ""
		if ri.ip.IsValid() {
			ip = ri.ip.String()
		}
		ctx := context.WithValue(r.Context(), infoKey{}, ri)
		ctx = commands.WithMetadata(ctx, eventstore.Metadata{CorrelationID: id, ClientIP: ip, UserAgent: domain.Clip(r.UserAgent(), 256)})
		if s.cfg.RequestTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
			defer cancel()
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// recordRoute is router middleware: it notes which route matched, for the access log.
func recordRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ri := infoFrom(r.Context()); ri != nil {
			if cr := mux.CurrentRoute(r); cr != nil {
				if t, err := cr.GetPathTemplate(); err == nil {
					ri.route = t
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status and size of an answer.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (sr *statusRecorder) WriteHeader(code int) {
	if sr.status == 0 {
		sr.status = code
	}
	sr.ResponseWriter.WriteHeader(code)
}

func (sr *statusRecorder) Write(b []byte) (int, error) {
	if sr.status == 0 {
		sr.status = http.StatusOK
	}
	n, err := sr.ResponseWriter.Write(b)
	sr.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer (Flush, deadlines).
func (sr *statusRecorder) Unwrap() http.ResponseWriter { return sr.ResponseWriter }

// accessLog logs one line per request: never bodies, query strings, headers, tokens or
// passwords. The path is the matched route's template (so ids in paths stay out).
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sr := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(sr, r)
		ri := infoFrom(r.Context())
		route := ri.route
		if route == "" {
			route = redactPath(r.URL.Path)
		}
		status := sr.status
		if status == 0 {
			status = http.StatusOK
		}
		took := time.Since(start)
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
			slog.String("request_id", ri.id),
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", status),
			slog.Int64("bytes", sr.bytes),
			slog.Duration("duration", took),
			slog.String("client_ip", ri.ip.String()),
		)
		if s.cfg.Observer != nil {
			// The template only: an unmatched path is the client's choice, not a series.
			s.cfg.Observer.ObserveRequest(r.Method, ri.route, status, took)
		}
	})
}

// redactPath keeps an unmatched path readable but drops long segments, which may be
// tokens or reset ids.
func redactPath(p string) string {
	if len(p) > 200 {
		p = p[:200]
	}
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		if len(seg) > 32 {
			segs[i] = "<redacted>"
		}
	}
	return strings.Join(segs, "/")
}

// recoverPanics answers 500 instead of dropping the connection, and logs the panic.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.LogAttrs(r.Context(), slog.LevelError, "handler panicked",
				slog.String("request_id", RequestID(r.Context())), slog.Any("panic", v))
			writeAPIError(w, ErrorFor(errPanic))
		}()
		next.ServeHTTP(w, r)
	})
}

var errPanic = errorString("panic")

type errorString string

func (e errorString) Error() string { return string(e) }

// securityHeaders are set on every answer, API and pages alike.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// limitBody refuses bodies over MaxBodyBytes: at once when Content-Length says so, else
// when a handler reads past the limit (DecodeJSON then answers 413).
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			w.Header().Set("Connection", "close")
			writeAPIError(w, errTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// crossOrigin rejects state-changing browser requests from other origins (Go's
// CrossOriginProtection: Sec-Fetch-Site, else Origin against Host). Requests without
// those headers — API clients using bearer tokens — pass.
func (s *Server) crossOrigin(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	for _, o := range s.cfg.TrustedOrigins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			s.log.Warn("ignoring trusted origin", "origin", o, "error", err)
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, NewError(http.StatusForbidden, CodeCrossOrigin, "cross-origin request refused"))
	}))
	return cop.Handler(next)
}

// Rate-limit classes; each has its own budgets. The HTML pages use the same classes for
// the same actions, so a client cannot double its budget by switching between them.
const (
	LimitLogin  = "login"  // signing in
	LimitForgot = "forgot" // Forgot Password submissions
	LimitResend = "resend" // Resend
	LimitReauth = "reauth" // re-entering the password in settings
	LimitCode   = "code"   // email verification codes
	LimitToken  = "token"  // password tokens (Change Password)
)

// Allow spends one request of class from the client IP's budget and, when account is
// not "", from the account's ("CODE/login", see AccountKey). When a budget is spent it
// reports false and how long to wait. When the budgets cannot be reached it returns the
// error (logged here); callers answer 503 unavailable.
func (s *Server) Allow(r *http.Request, class, account string) (bool, time.Duration, error) {
	ctx := r.Context()
	scope := "ip"
	d, err := s.spend(ctx, class+"|ip|"+ipLimitKey(ClientIP(ctx)), s.ipLimit)
	if err == nil && d.Allowed && account != "" {
		scope = "account"
		d, err = s.spend(ctx, class+"|acct|"+account, s.accountLimit)
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "rate limit unavailable",
			slog.String("request_id", RequestID(ctx)), slog.String("error", err.Error()))
		return false, 0, err
	}
	if !d.Allowed && s.cfg.Observer != nil {
		s.cfg.Observer.RateLimited(class, scope)
	}
	return d.Allowed, d.RetryAfter, nil
}

func (s *Server) spend(ctx context.Context, key string, l ratelimit.Limit) (ratelimit.Decision, error) {
	if l.Rate <= 0 {
		return ratelimit.Decision{Allowed: true}, nil
	}
	return s.limiter.Allow(ctx, key, l)
}

// ipLimitKey is the per-IP budget a client address spends: its own for IPv4, its /64 for
// IPv6, since every IPv6 client holds at least a /64 (2^64 addresses) and could otherwise
// take a fresh budget per request. An IPv4-mapped address counts as the IPv4 one.
func ipLimitKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// limit is Allow that answers 429 rate_limited with Retry-After when a budget is spent,
// and 503 unavailable when the budgets cannot be reached.
func (s *Server) limit(w http.ResponseWriter, r *http.Request, class, account string) bool {
	ok, wait, err := s.Allow(r, class, account)
	switch {
	case err != nil:
		writeAPIError(w, errUnavailable)
	case !ok:
		writeAPIError(w, &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
			Message: "too many requests; try again later", RetryAfter: wait})
	}
	return ok
}
