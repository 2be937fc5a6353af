package http

// The HTML pages (issue 4, web half): server-rendered with html/template, no JavaScript
// (the CSP allows no inline script, and nothing needs one), a small embedded stylesheet,
// in the seed's words. They sit on the API's router and middleware, use the same
// sessions (in the selfreset_session cookie), the same rate-limit classes and the same
// reset service (reset.Service: RequestReset, ResendReset, CompleteReset), so that a browser
// and an API client get the same answers to the same questions.
//
// Wiring, for `selfreset serve`, once, after NewServer:
//
//	srv := httpapi.NewServer(cfg)
//	srv.MountPages()
//
// The pages' routes are listed in docs/api.md's "HTML pages" table (pages_test checks it).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"selfreset/domain"
	"selfreset/links"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static/*
var staticFiles embed.FS

// pageNames are the templates under templates/, each rendered inside layout.html.
var pageNames = []string{"login", "forgot", "change", "change_landing", "reset_done", "settings",
	"configure", "admin", "users", "message", "user", "user_new", "password"}

// pageTemplates holds one parsed template set per page (each defines "content").
var pageTemplates = func() map[string]*template.Template {
	m := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		m[name] = template.Must(template.New(name).
			ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html"))
	}
	return m
}()

// staticAsset is one embedded file, with the version that goes into its URL.
type staticAsset struct {
	body        []byte
	contentType string
	version     string
}

var staticAssets = func() map[string]staticAsset {
	m := map[string]staticAsset{}
	types := map[string]string{".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
	entries, err := fs.ReadDir(staticFiles, "static")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		body, err := staticFiles.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		ct := "application/octet-stream"
		if i := strings.LastIndexByte(e.Name(), '.'); i >= 0 && types[e.Name()[i:]] != "" {
			ct = types[e.Name()[i:]]
		}
		sum := sha256.Sum256(body)
		m[e.Name()] = staticAsset{body: body, contentType: ct, version: hex.EncodeToString(sum[:6])}
	}
	return m
}()

// stylesheetURL is the stylesheet's address; the version changes with its content, so
// browsers may cache it for long.
var stylesheetURL = "/static/style.css?v=" + staticAssets["style.css"].version

// Page paths. The pages emails link to take theirs from package links, which the mailer
// builds its links from.
const (
	PathLogin          = links.Login
	PathForgotPassword = links.ForgotPassword
	PathChangePassword = links.ChangePassword
	PathSettings       = "/settings"
	PathSelfReset      = "/settings/self-reset"
	// PathSettingsPassword is the signed-in Change Password (issue 9).
	PathSettingsPassword = "/settings/password"
	PathAdmin            = "/admin"
	PathAdminUsers       = "/admin/users"
)

// resetCookieName keeps the latest reset id of this browser, so that the link in the
// token email (/change-password?provider=…&login=…) can find the Change Password page
// of the request it belongs to.
const resetCookieName = "selfreset_reset"

// MountPages adds the HTML pages to the server's router. Call it once, after NewServer
// and before serving Handler().
func (s *Server) MountPages() {
	r := s.router
	page := func(h http.HandlerFunc) http.Handler { return s.pageSession(h) }
	get, post := http.MethodGet, http.MethodPost

	r.HandleFunc("/", s.handleRootPage).Methods(get)
	r.HandleFunc("/static/{name}", s.handleStatic).Methods(get)

	r.HandleFunc(PathLogin, s.handleLoginPage).Methods(get)
	r.HandleFunc(PathLogin, s.handleLoginSubmit).Methods(post)
	r.HandleFunc("/logout", s.handleLogoutSubmit).Methods(post)

	r.HandleFunc(PathForgotPassword, s.handleForgotPage).Methods(get)
	r.HandleFunc(PathForgotPassword, s.handleForgotSubmit).Methods(post)
	r.HandleFunc(PathChangePassword, s.handleChangeLanding).Methods(get)
	r.HandleFunc(PathChangePassword+"/{reset_id}", s.handleChangePage).Methods(get)
	r.HandleFunc(PathChangePassword+"/{reset_id}", s.handleChangeSubmit).Methods(post)
	r.HandleFunc(PathChangePassword+"/{reset_id}/resend", s.handleResendSubmit).Methods(post)

	r.Handle(PathSettings, page(s.handleSettingsPage)).Methods(get)
	r.Handle(PathSelfReset, page(s.handleSelfResetPage)).Methods(get)
	r.Handle(PathSelfReset+"/verify-password", page(s.handleSelfResetVerifyPassword)).Methods(post)
	r.Handle(PathSelfReset+"/email", page(s.configureStep(s.selfResetEmailStep))).Methods(post)
	r.Handle(PathSelfReset+"/email/verify", page(s.configureStep(s.selfResetCodeStep))).Methods(post)
	r.Handle(PathSelfReset+"/configure", page(s.configureStep(s.selfResetConfigureStep))).Methods(post)

	r.Handle(PathAdmin, page(s.handleAdminPage)).Methods(get)
	r.Handle(PathAdminUsers, page(s.handleUserListPage)).Methods(get)
	r.Handle(PathAdminUsers+"/{login}/self-reset/enable", page(s.userSelfResetSubmit(s.cmds.EnableSelfReset))).Methods(post)
	r.Handle(PathAdminUsers+"/{login}/self-reset/disable", page(s.userSelfResetSubmit(s.cmds.DisableSelfReset))).Methods(post)
	s.mountAdminPages(page)
}

// ---- rendering ----

// pageUser is the signed-in user as the header shows them.
type pageUser struct {
	Login, Provider, DisplayName string
	Admin                        bool
}

// page is what every template gets.
type page struct {
	Title   string
	Tab     string // "settings" or "admin": the highlighted tab
	User    *pageUser
	Notice  string   // a neutral status line
	Error   string   // what went wrong, plainly
	Reasons []string // password policy reasons under Error
	CSS     string
	Form    map[string]string // values to show again (never passwords, tokens or codes)
	Data    any               // the page's own data
}

func userOf(p *Principal) *pageUser {
	if p == nil {
		return nil
	}
	name := p.User.DisplayName
	if name == "" {
		name = p.User.Login
	}
	return &pageUser{Login: p.User.Login, Provider: p.User.Provider, DisplayName: name,
		Admin: adminOf(p, p.User.Provider)}
}

// render writes the page with status. Pages are never cached: they carry session state,
// reset ids and form values.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, pg page) {
	t, ok := pageTemplates[name]
	if !ok {
		s.renderFailure(w, r, errors.New("http: no page template "+name))
		return
	}
	if pg.CSS == "" {
		pg.CSS = stylesheetURL
	}
	if pg.Form == nil {
		pg.Form = map[string]string{}
	}
	if pg.User == nil {
		pg.User = userOf(PrincipalFrom(r.Context()))
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", pg); err != nil {
		s.renderFailure(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderFailure is the last resort when a page cannot be rendered.
func (s *Server) renderFailure(w http.ResponseWriter, r *http.Request, err error) {
	s.log.LogAttrs(r.Context(), slog.LevelError, "page failed",
		slog.String("request_id", RequestID(r.Context())), slog.String("error", err.Error()))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte("Something went wrong; try again later.\n"))
}

// link is a button-like link on a message page.
type link struct{ URL, Text string }

type messageData struct {
	Text  string
	Links []link
}

// renderMessage shows a page with a title, an error or notice and some links.
func (s *Server) renderMessage(w http.ResponseWriter, r *http.Request, status int, title, errText, text string, links ...link) {
	s.render(w, r, status, "message", page{Title: title, Error: errText, Data: messageData{Text: text, Links: links}})
}

// renderError shows err (as ErrorFor maps it) on a message page. Failures that are not
// refusals are logged with the request id and shown without detail.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, err error, links ...link) {
	e := s.pageError(r, err)
	if len(links) == 0 {
		links = []link{{URL: PathLogin, Text: "Back to the login page"}}
	}
	s.setRetryAfter(w, e)
	title := "Something went wrong"
	switch {
	case e.Status == http.StatusForbidden:
		title = "Not allowed"
	case e.Status == http.StatusNotFound:
		title = "Not found"
	case e.Status == http.StatusTooManyRequests:
		title = "Too many requests"
	case e.Status < 500:
		title = "Request refused"
	}
	s.renderMessage(w, r, e.Status, title, sentence(e.Message), "", links...)
}

// pageError is ErrorFor, logging what is not a refusal.
func (s *Server) pageError(r *http.Request, err error) *Error {
	e := ErrorFor(err)
	if e.Status >= 500 {
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("request_id", RequestID(r.Context())), slog.String("error", err.Error()))
	}
	return e
}

func (s *Server) setRetryAfter(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(e.RetryAfter)))
	}
}

func retrySeconds(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 1)
}

// rateLimited is the refusal for a spent budget, in words for a page.
func rateLimited(wait time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited, RetryAfter: wait,
		Message: "too many attempts; wait " + humanWait(wait) + " and try again"}
}

func humanWait(d time.Duration) string {
	n := retrySeconds(d)
	if n == 1 {
		return "1 second"
	}
	if n < 120 {
		return strconv.Itoa(n) + " seconds"
	}
	return strconv.Itoa((n+59)/60) + " minutes"
}

// pageLimit spends one request of class (see Allow); when the budget is spent, or cannot
// be reached, it returns the refusal to show.
func (s *Server) pageLimit(r *http.Request, class, account string) *Error {
	ok, wait, err := s.Allow(r, class, account)
	switch {
	case err != nil:
		return errUnavailable
	case !ok:
		return rateLimited(wait)
	}
	return nil
}

// sentence makes a domain message a sentence: capital first letter, final period.
func sentence(msg string) string {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return ""
	}
	msg = domain.UpperFirst(msg)
	switch msg[len(msg)-1] {
	case '.', '?', '!':
		return msg
	}
	return msg + "."
}

// humanDuration says 5 minutes, 10 minutes, 1 hour…
func humanDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		if d == time.Hour {
			return "1 hour"
		}
		return strconv.Itoa(int(d/time.Hour)) + " hours"
	case d >= time.Minute:
		m := int((d + time.Minute - 1) / time.Minute)
		if m == 1 {
			return "1 minute"
		}
		return strconv.Itoa(m) + " minutes"
	default:
		return strconv.Itoa(retrySeconds(d)) + " seconds"
	}
}

// ---- requests ----

// parsePageForm reads a form body. A body over MaxBodyBytes is 413, anything unreadable
// or not acceptable text (checkValues) 400.
func parsePageForm(r *http.Request) *Error {
	err := r.ParseForm()
	if err == nil {
		return checkValues(r.PostForm)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge
	}
	return NewError(http.StatusBadRequest, CodeBadRequest, "the form could not be read")
}

// formValue is one field of the posted form, without surrounding spaces for identifiers.
func formValue(r *http.Request, name string) string { return strings.TrimSpace(r.PostForm.Get(name)) }

// redirect answers 303 See Other: after a POST the browser GETs the target.
func redirect(w http.ResponseWriter, r *http.Request, target string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// pageSession is RequireSession for pages: without a live session it sends the browser
// to the login page (dropping a dead cookie) instead of answering 401.
func (s *Server) pageSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.Authenticate(r)
		if errors.Is(err, ErrNoSession) {
			if _, viaCookie, ok := SessionToken(r); ok && viaCookie {
				s.ClearSessionCookie(w)
			}
			redirect(w, r, PathLogin)
			return
		}
		if err != nil {
			s.renderError(w, r, err)
			return
		}
		if p.User.MustChangePassword && !passwordChangeAllowed(r) {
			redirect(w, r, PathSettingsPassword+"?required=1")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// GET /
func (s *Server) handleRootPage(w http.ResponseWriter, r *http.Request) {
	if p, err := s.Authenticate(r); err == nil && p != nil {
		redirect(w, r, PathSettings)
		return
	}
	redirect(w, r, PathLogin)
}

// GET /static/{name}
func (s *Server) handleStatic(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	a, ok := staticAssets[name]
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	h.Set("ETag", `"`+a.version+`"`)
	if r.URL.Query().Get("v") == a.version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if match := r.Header.Get("If-None-Match"); match == `"`+a.version+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(a.body)
}

// providerLoader is the optional part of Commands that reads a provider
// (*commands.Handler has it); without it the pages assume the provider allows
// Self Password Reset and let the commands refuse.
type providerLoader interface {
	LoadProvider(ctx context.Context, code string) (domain.Provider, error)
}
