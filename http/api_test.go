package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/internal/teststore"
	"selfreset/projections"
	"selfreset/reset"
)

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(req{Method: "GET", Path: "/healthz"})
	expect(t, r, http.StatusOK, "")
	r = e.do(req{Method: "GET", Path: "/readyz"})
	expect(t, r, http.StatusOK, "")

	down := newEnv(t, func(c *Config) {
		c.Ready = func(context.Context) error { return errors.New("database is down") }
	})
	r = down.do(req{Method: "GET", Path: "/readyz"})
	expect(t, r, http.StatusServiceUnavailable, CodeNotReady)
	if strings.Contains(string(r.body), "database is down") {
		t.Errorf("readyz leaks the error: %s", r.body)
	}

	if err := e.srv.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do(req{Method: "GET", Path: "/readyz"}), http.StatusServiceUnavailable, CodeNotReady)
	expect(t, e.do(req{Method: "GET", Path: "/healthz"}), http.StatusOK, "")
}

func TestUnknownRouteAndMethod(t *testing.T) {
	e := newEnv(t, nil)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/nothing"}), http.StatusNotFound, CodeNotFound)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/sessions"}), http.StatusMethodNotAllowed, CodeMethodNotAllow)
}

func TestLoginAndLogout(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "acme", "login_name": "Jane", "password": janePW}})
	expect(t, r, http.StatusCreated, "")
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	r.decode(t, &out)
	if want := e.clock.Now().Add(8 * time.Hour); !out.ExpiresAt.Equal(want) {
		t.Errorf("expires_at %v, want %v", out.ExpiresAt, want)
	}
	// The session is kept under the token's id (TestSessionStore: never the token itself),
	// and the event records a handle, not the token.
	if s, err := e.sessions.Get(e.ctx, SessionID(out.Token), e.clock.Now()); err != nil || s.Provider != "ACME" || s.Login != "jane" {
		t.Fatalf("session: %+v %v", s, err)
	}
	recs, err := e.store.ReadStream(e.ctx, domain.UserStream("ACME", "jane"), 0)
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	if last.Type != "LoginSucceeded" || !strings.Contains(string(last.Data), SessionHandle(SessionID(out.Token))) || strings.Contains(string(last.Data), out.Token) {
		t.Errorf("login event: %s %s", last.Type, last.Data)
	}

	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: out.Token}), http.StatusOK, "")
	expect(t, e.do(req{Method: "DELETE", Path: "/api/v1/sessions/current", Token: out.Token}), http.StatusNoContent, "")
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: out.Token}), http.StatusUnauthorized, CodeUnauthorized)
	expect(t, e.do(req{Method: "DELETE", Path: "/api/v1/sessions/current", Token: out.Token}), http.StatusUnauthorized, CodeUnauthorized)

	r = e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Invalid: true})
	expect(t, r, http.StatusUnauthorized, CodeUnauthorized)
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: "garbage"}), http.StatusUnauthorized, CodeUnauthorized)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Header: map[string]string{"Authorization": "Basic amFuZTp4"}, Invalid: true}), http.StatusUnauthorized, CodeUnauthorized)
	// The cookie carries the same sessions.
	tok := e.login("ACME", "jane", janePW)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Header: map[string]string{"Cookie": SessionCookieName + "=" + tok}}), http.StatusOK, "")
}

func TestLoginRefusalsLookAlike(t *testing.T) {
	e := newEnv(t, nil)
	body := func(code, login, pw string) map[string]string {
		return map[string]string{"provider_code": code, "login_name": login, "password": pw}
	}
	wrong := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: body("ACME", "jane", "not-her-password")})
	expect(t, wrong, http.StatusUnauthorized, domain.ErrInvalidCredentials.Code)
	if !strings.Contains(wrong.errMessage(), "Forgot Password") {
		t.Errorf("message does not point to Forgot Password: %s", wrong.body)
	}
	unknown := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: body("ACME", "nobody", "whatever-pass")})
	noProvider := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: body("ZZZ", "jane", janePW)})
	// Lock joe by failed logins, then even his right password gets the same answer.
	for range 5 {
		e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: body("ACME", "joe", "bad-password-1")})
	}
	locked := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: body("ACME", "joe", joePW)})
	if err := e.cmds.AdminLock(e.ctx, commands.UserCommand{Actor: domain.SystemActor("test"), Provider: "ACME", Login: "jane"}); err != nil {
		t.Fatal(err)
	}
	adminLocked := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: body("ACME", "jane", "not-her-password")})
	for name, r := range map[string]resp{"unknown": unknown, "no provider": noProvider, "locked": locked, "admin locked, wrong password": adminLocked} {
		if r.status != wrong.status || !bytes.Equal(r.body, wrong.body) {
			t.Errorf("%s: %d %s; want the same as a wrong password: %d %s", name, r.status, r.body, wrong.status, wrong.body)
		}
	}
	// Only the right password on an admin-locked account learns that Forgot Password?
	// cannot help and whom to ask instead.
	r := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: body("ACME", "jane", janePW)})
	expect(t, r, http.StatusForbidden, domain.ErrAccountAdminLocked.Code)
	if msg := r.errMessage(); !strings.Contains(msg, "contact your user administrator") {
		t.Errorf("admin-locked message: %s", msg)
	}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "jane"}, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
}

func TestRequestBodies(t *testing.T) {
	e := newEnv(t, nil)
	huge := `{"provider_code":"ACME","login_name":"jane","password":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: huge}), http.StatusRequestEntityTooLarge, CodePayloadTooLarge)
	// Without a Content-Length (chunked), the limit bites while reading.
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/password-resets", Body: io.MultiReader(strings.NewReader(huge)), Invalid: true}), http.StatusRequestEntityTooLarge, CodePayloadTooLarge)

	for name, body := range map[string]string{
		"malformed":     `{"provider_code":"ACME",`,
		"not an object": `["ACME"]`,
		"wrong type":    `{"provider_code":1,"login_name":"jane","password":"x"}`,
		"unknown field": `{"provider_code":"ACME","login_name":"jane","password":"x","admin":true}`,
		"trailing data": `{"provider_code":"ACME","login_name":"jane","password":"x"} {}`,
		"empty":         ``,
	} {
		// Trailing data is the one kin-openapi's decoder lets through.
		r := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: body, Invalid: name != "trailing data"})
		if r.status != http.StatusBadRequest || r.errCode() != CodeBadRequest {
			t.Errorf("%s: %d %s; want 400 bad_request", name, r.status, r.body)
		}
	}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/password-resets", Body: `{"login_name":"jane","provider_code":"ACME","email":"a@b.org","x":1}`, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
}

func TestSecurityHeadersAndRequestMetadata(t *testing.T) {
	e := newEnv(t, nil)
	for _, r := range []resp{
		e.do(req{Method: "GET", Path: "/healthz"}),
		e.do(req{Method: "GET", Path: "/nowhere"}),
		e.do(req{Method: "POST", Path: "/api/v1/password-resets", Body: strings.Repeat("x", MaxBodyBytes+1), Invalid: true}),
	} {
		for k, want := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := r.header.Get(k); got != want {
				t.Errorf("%d answer: %s = %q, want %q", r.status, k, got, want)
			}
		}
		if r.header.Get("X-Request-Id") == "" {
			t.Errorf("%d answer has no X-Request-Id", r.status)
		}
	}
	r := e.do(req{Method: "GET", Path: "/healthz", Header: map[string]string{"X-Request-Id": "bad id\u00e9"}})
	if id := r.header.Get("X-Request-Id"); id == "" || strings.Contains(id, " ") {
		t.Errorf("unacceptable request id kept: %q", id)
	}

	// The request id, client IP and user agent reach the events.
	r = e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW},
		Header: map[string]string{"X-Request-Id": "req-abc-123", "User-Agent": "selfreset-test/1"}})
	expect(t, r, http.StatusCreated, "")
	if got := r.header.Get("X-Request-Id"); got != "req-abc-123" {
		t.Errorf("X-Request-Id %q", got)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("API answer is cacheable: %q", r.header.Get("Cache-Control"))
	}
	recs, err := e.store.ReadStream(e.ctx, domain.UserStream("ACME", "jane"), 0)
	if err != nil {
		t.Fatal(err)
	}
	md := recs[len(recs)-1].Metadata
	md.Chain = "" // the store's link in the hash chain, not the request's
	want := eventstore.Metadata{Actor: "user:ACME/jane", CorrelationID: "req-abc-123", CausationID: "req-abc-123", ClientIP: "127.0.0.1", UserAgent: "selfreset-test/1"}
	if md != want {
		t.Errorf("metadata %+v, want %+v", md, want)
	}
}

func TestCrossOriginProtection(t *testing.T) {
	e := newEnv(t, nil)
	login := map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: login, Header: map[string]string{"Sec-Fetch-Site": "cross-site"}}), http.StatusForbidden, CodeCrossOrigin)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/password-resets", Body: map[string]string{"login_name": "jane", "provider_code": "ACME", "email": "x@y.org"},
		Header: map[string]string{"Origin": "https://evil.example"}}), http.StatusForbidden, CodeCrossOrigin)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: login, Header: map[string]string{"Sec-Fetch-Site": "same-origin"}}), http.StatusCreated, "")
	// A bearer-token client sends neither header and passes.
	tok := e.login("ACME", "jane", janePW)
	expect(t, e.do(req{Method: "DELETE", Path: "/api/v1/sessions/current", Token: tok}), http.StatusNoContent, "")
	// Safe methods are never refused.
	expect(t, e.do(req{Method: "GET", Path: "/healthz", Header: map[string]string{"Sec-Fetch-Site": "cross-site"}}), http.StatusOK, "")
}

func TestCrossOriginTrustedOrigin(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TrustedOrigins = []string{"https://admin.example.org"} })
	login := map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: login,
		Header: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://admin.example.org"}}), http.StatusCreated, "")
}

// projectAdminUsers fills the admin_users read model by applying the projection to each
// stream's events. (Not through the global feed: on a shared server any long transaction
// of another test holds the Postgres feed back; see eventstore/postgres.)
func (e *env) projectAdminUsers(streams ...string) {
	e.t.Helper()
	if err := projections.Migrate(e.ctx, e.pg()); err != nil {
		e.t.Fatal(err)
	}
	codec := domain.NewCodec()
	tx, err := e.pg().Begin(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	if err := projections.UseSchema(e.ctx, tx); err != nil {
		e.t.Fatal(err)
	}
	for _, stream := range streams {
		recs, err := e.store.ReadStream(e.ctx, stream, 0)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, rec := range recs {
			v, err := codec.DecodeRecorded(rec)
			if err != nil {
				e.t.Fatal(err)
			}
			if err := (projections.AdminUsers{}).Apply(e.ctx, tx, projections.Envelope{Record: rec, Event: v}); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

func TestAdminUserList(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	sys := domain.SystemActor("test")
	if err := e.cmds.RegisterUser(e.ctx, commands.RegisterUser{Actor: sys, Provider: "ACME", Login: "pct", DisplayName: "100% Sure", Password: "Pct-pass-77120"}); err != nil {
		t.Fatal(err)
	}
	for range 5 { // lock joe by failed logins
		e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "joe", "password": "bad-password-1"}})
	}
	e.projectAdminUsers(domain.ProviderStream("ACME"), domain.ProviderStream("NOPE"),
		domain.UserStream("ACME", "boss"), domain.UserStream("ACME", "jane"), domain.UserStream("ACME", "joe"),
		domain.UserStream("ACME", "pct"), domain.UserStream("NOPE", "nadmin"), domain.UserStream("NOPE", "nuser"))

	boss := e.login("ACME", "boss", bossPW)
	// The handler's own type: the field names are pinned by docs/openapi.json, which every
	// exchange here is checked against.
	type page = userListResponse
	list := func(query string) page {
		t.Helper()
		r := e.do(req{Method: "GET", Path: "/api/v1/providers/acme/users" + query, Token: boss})
		expect(t, r, http.StatusOK, "")
		var p page
		r.decode(t, &p)
		return p
	}
	logins := func(p page) string {
		var s []string
		for _, u := range p.Users {
			s = append(s, u.LoginName)
		}
		return strings.Join(s, ",")
	}

	all := list("")
	if logins(all) != "boss,jane,joe,pct" || all.NextCursor != nil {
		t.Fatalf("list: %s next %v", logins(all), all.NextCursor)
	}
	bossRow, jane, joe := all.Users[0], all.Users[1], all.Users[2]
	masked := domain.MaskEmail("jane@example.org")
	if jane.DisplayName != "Jane Doe" || !jane.SelfResetEnabled || !jane.SelfResetConfigured || jane.RecoveryEmail == nil || *jane.RecoveryEmail != masked || jane.Status != "active" {
		t.Errorf("jane: %+v", jane)
	}
	if bossRow.RecoveryEmail != nil || !slices.Equal(bossRow.Roles, []string{domain.RoleUserAdmin}) {
		t.Errorf("boss: %+v", bossRow)
	}
	if joe.Status != "locked" || joe.Roles == nil || len(joe.Roles) != 0 || joe.SelfResetEnabled {
		t.Errorf("joe: %+v", joe)
	}
	if strings.Contains(string(e.do(req{Method: "GET", Path: "/api/v1/providers/ACME/users", Token: boss}).body), "jane@example.org") {
		t.Error("the list shows a clear email address")
	}

	p1 := list("?limit=2")
	if logins(p1) != "boss,jane" || p1.NextCursor == nil {
		t.Fatalf("page 1: %s next %v", logins(p1), p1.NextCursor)
	}
	p2 := list("?limit=2&cursor=" + *p1.NextCursor)
	if logins(p2) != "joe,pct" {
		t.Fatalf("page 2: %s", logins(p2))
	}
	if p2.NextCursor != nil {
		// Exactly two were left: the next page is empty and last.
		if p3 := list("?limit=2&cursor=" + *p2.NextCursor); len(p3.Users) != 0 || p3.NextCursor != nil {
			t.Fatalf("page 3: %s", logins(p3))
		}
	}
	if got := logins(list("?q=JO")); got != "joe" {
		t.Errorf("q=JO: %s", got)
	}
	if got := logins(list("?q=doe")); got != "jane" {
		t.Errorf("q=doe (display name): %s", got)
	}
	if got := logins(list("?q=%25")); got != "pct" {
		t.Errorf("q=%% must match literally: %s", got)
	}
	if got := logins(list("?q=_")); got != "" {
		t.Errorf("q=_ must match literally: %s", got)
	}

	expect(t, e.do(req{Method: "GET", Path: "/api/v1/providers/ACME/users?limit=0", Token: boss, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/providers/ACME/users?limit=abc", Token: boss, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/providers/ACME/users?cursor=***", Token: boss}), http.StatusBadRequest, CodeBadRequest)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/providers/ACME/users?q=" + strings.Repeat("x", 101), Token: boss, Invalid: true}), http.StatusBadRequest, CodeBadRequest)

	// Only a user-admin of that provider.
	jtok := e.login("ACME", "jane", janePW)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/providers/ACME/users", Token: jtok}), http.StatusForbidden, CodeForbidden)
	ntok := e.login("NOPE", "nadmin", nadmPW)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/providers/ACME/users", Token: ntok}), http.StatusForbidden, CodeForbidden)
	r := e.do(req{Method: "GET", Path: "/api/v1/providers/NOPE/users", Token: ntok})
	expect(t, r, http.StatusOK, "")
	if !strings.Contains(string(r.body), `"nuser"`) || strings.Contains(string(r.body), `"jane"`) {
		t.Errorf("NOPE's list: %s", r.body)
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/providers/ACME/users", Invalid: true}), http.StatusUnauthorized, CodeUnauthorized)
	// Decided on the caller's own aggregate: a revoked role takes effect at once, although
	// the read model still says otherwise. (Jane gets the role first: the provider's last
	// user administrator cannot lose it.)
	if err := e.cmds.GrantRole(e.ctx, commands.RoleCommand{UserCommand: commands.UserCommand{Actor: sys, Provider: "ACME", Login: "jane"}, Role: domain.RoleUserAdmin}); err != nil {
		t.Fatal(err)
	}
	if err := e.cmds.RevokeRole(e.ctx, commands.RoleCommand{UserCommand: commands.UserCommand{Actor: sys, Provider: "ACME", Login: "boss"}, Role: domain.RoleUserAdmin}); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/providers/ACME/users", Token: boss}), http.StatusForbidden, CodeForbidden)
}

func TestEnableDisableSelfReset(t *testing.T) {
	e := newEnv(t, nil)
	boss := e.login("ACME", "boss", bossPW)
	path := "/api/v1/providers/ACME/users/jane/self-reset"
	expect(t, e.do(req{Method: "PUT", Path: path, Token: boss}), http.StatusNoContent, "")
	if u := e.user("ACME", "jane"); !u.SelfResetEnabled {
		t.Fatal("not enabled")
	}
	expect(t, e.do(req{Method: "PUT", Path: path, Token: boss}), http.StatusNoContent, "") // idempotent
	expect(t, e.do(req{Method: "DELETE", Path: path, Token: boss}), http.StatusNoContent, "")
	if u := e.user("ACME", "jane"); u.SelfResetEnabled {
		t.Fatal("still enabled")
	}
	expect(t, e.do(req{Method: "PUT", Path: "/api/v1/providers/ACME/users/ghost/self-reset", Token: boss}), http.StatusNotFound, domain.ErrUserNotFound.Code)

	jtok := e.login("ACME", "jane", janePW)
	expect(t, e.do(req{Method: "PUT", Path: "/api/v1/providers/ACME/users/joe/self-reset", Token: jtok}), http.StatusForbidden, CodeForbidden)
	ntok := e.login("NOPE", "nadmin", nadmPW)
	expect(t, e.do(req{Method: "PUT", Path: path, Token: ntok}), http.StatusForbidden, CodeForbidden)
	// Non-admins learn nothing about who exists: the same 403 for a login that does not.
	expect(t, e.do(req{Method: "PUT", Path: "/api/v1/providers/ACME/users/ghost/self-reset", Token: ntok}), http.StatusForbidden, CodeForbidden)
	// A provider not allowed to use Self Password Reset.
	expect(t, e.do(req{Method: "PUT", Path: "/api/v1/providers/NOPE/users/nuser/self-reset", Token: ntok}), http.StatusConflict, domain.ErrProviderNotAllowed.Code)
	expect(t, e.do(req{Method: "PUT", Path: path, Invalid: true}), http.StatusUnauthorized, CodeUnauthorized)
}

func TestConfigureSelfReset(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.login("ACME", "jane", janePW)
	type status struct {
		Enabled       bool    `json:"enabled"`
		Configured    bool    `json:"configured"`
		RecoveryEmail *string `json:"recovery_email"`
	}
	me := func() status {
		t.Helper()
		r := e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: tok})
		expect(t, r, http.StatusOK, "")
		var s status
		r.decode(t, &s)
		return s
	}
	if s := me(); s.Enabled || s.Configured || s.RecoveryEmail != nil {
		t.Fatalf("before: %+v", s)
	}
	email := func(addr string) resp {
		return e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email", Token: tok, Body: map[string]string{"email": addr}})
	}
	verify := func(code string) resp {
		return e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email/verify", Token: tok, Body: map[string]string{"code": code}})
	}
	configure := func() resp { return e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/configure", Token: tok}) }

	// The three settings calls need the step-up first.
	expect(t, email("jane@example.org"), http.StatusForbidden, domain.ErrReauthRequired.Code)
	expect(t, verify("123456"), http.StatusForbidden, domain.ErrReauthRequired.Code)
	expect(t, configure(), http.StatusForbidden, domain.ErrReauthRequired.Code)
	r := e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/verify-password", Token: tok, Body: map[string]string{"password": "wrong-password"}})
	expect(t, r, http.StatusUnauthorized, domain.ErrInvalidCredentials.Code)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: tok}), http.StatusOK, "") // the session lives on
	r = e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/verify-password", Token: tok, Body: map[string]string{"password": janePW}})
	expect(t, r, http.StatusOK, "")
	var v struct {
		VerifiedUntil time.Time `json:"verified_until"`
	}
	r.decode(t, &v)
	if want := e.clock.Now().Add(10 * time.Minute); !v.VerifiedUntil.Equal(want) {
		t.Errorf("verified_until %v, want %v", v.VerifiedUntil, want)
	}
	// Not enabled yet.
	expect(t, email("jane@example.org"), http.StatusConflict, domain.ErrUserNotEnabled.Code)
	boss := e.login("ACME", "boss", bossPW)
	expect(t, e.do(req{Method: "PUT", Path: "/api/v1/providers/ACME/users/jane/self-reset", Token: boss}), http.StatusNoContent, "")
	if s := me(); !s.Enabled || s.Configured {
		t.Fatalf("after enable: %+v", s)
	}
	expect(t, email("not-an-address"), http.StatusBadRequest, domain.ErrInvalidInput.Code)
	expect(t, verify("123456"), http.StatusBadRequest, domain.ErrNoPendingCode.Code)
	expect(t, configure(), http.StatusConflict, domain.ErrEmailNotVerified.Code)

	// Code 1 expires.
	expect(t, email("jane@example.org"), http.StatusAccepted, "")
	code1 := e.emailCode("ACME", "jane")
	e.clock.Add(10 * time.Minute)
	// ...and so did the step-up.
	expect(t, verify(code1), http.StatusForbidden, domain.ErrReauthRequired.Code)
	e.stepUp(tok, janePW)
	expect(t, verify(code1), http.StatusBadRequest, domain.ErrCodeExpired.Code)

	// Code 2 dies after five wrong tries.
	expect(t, email("jane@example.org"), http.StatusAccepted, "")
	code2 := e.emailCode("ACME", "jane")
	wrong := "000000"
	if wrong == code2 {
		wrong = "111111"
	}
	for range 4 {
		expect(t, verify(wrong), http.StatusBadRequest, domain.ErrInvalidCode.Code)
	}
	expect(t, verify(wrong), http.StatusBadRequest, domain.ErrTooManyAttempts.Code)
	expect(t, verify(code2), http.StatusBadRequest, domain.ErrTooManyAttempts.Code)

	// Code 3 works.
	e.clock.Add(5 * time.Minute)
	e.stepUp(tok, janePW)
	expect(t, email("Jane@Example.org"), http.StatusAccepted, "")
	expect(t, verify(e.emailCode("ACME", "jane")), http.StatusOK, "")
	r = configure()
	expect(t, r, http.StatusOK, "")
	var s status
	r.decode(t, &s)
	if !s.Enabled || !s.Configured || s.RecoveryEmail == nil || *s.RecoveryEmail != domain.MaskEmail("jane@example.org") {
		t.Fatalf("after configure: %s", r.body)
	}
	if got := me(); got.Enabled != s.Enabled || got.Configured != s.Configured || got.RecoveryEmail == nil || *got.RecoveryEmail != *s.RecoveryEmail {
		t.Errorf("GET disagrees with configure: %+v", got)
	}
}

func TestStepUpExpires(t *testing.T) {
	e := newEnv(t, nil)
	boss := e.login("ACME", "boss", bossPW)
	expect(t, e.do(req{Method: "PUT", Path: "/api/v1/providers/ACME/users/jane/self-reset", Token: boss}), http.StatusNoContent, "")
	tok := e.login("ACME", "jane", janePW)
	other := e.login("ACME", "jane", janePW)
	e.stepUp(tok, janePW)
	// The step-up belongs to the session it was made on.
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email", Token: other, Body: map[string]string{"email": "jane@example.org"}}), http.StatusForbidden, domain.ErrReauthRequired.Code)
	e.clock.Add(10*time.Minute - time.Second)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email", Token: tok, Body: map[string]string{"email": "jane@example.org"}}), http.StatusAccepted, "")
	e.clock.Add(time.Second)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email", Token: tok, Body: map[string]string{"email": "jane@example.org"}}), http.StatusForbidden, domain.ErrReauthRequired.Code)
}

// blankResetID replaces the reset_id's value so bodies can be compared.
func blankResetID(t *testing.T, body []byte) []byte {
	t.Helper()
	var a accepted
	resp{body: body}.decode(t, &a)
	if a.ResetID == "" {
		t.Fatalf("no reset_id in %s", body)
	}
	return bytes.Replace(body, []byte(a.ResetID), []byte("<reset_id>"), 1)
}

func TestForgotPasswordAnswersAlike(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")

	_, matched := e.forgot("ACME", "jane", "jane@example.org")
	if e.user("ACME", "jane").Token == nil {
		t.Fatal("the matched request issued no token")
	}
	cases := map[string][3]string{
		"unknown login":        {"ACME", "ghost", "jane@example.org"},
		"unknown provider":     {"ZZZZ", "jane", "jane@example.org"},
		"malformed provider":   {"no such-provider!", "jane", "jane@example.org"},
		"wrong email":          {"ACME", "jane", "someone@else.org"},
		"not enabled":          {"ACME", "joe", "joe@example.org"},
		"provider not allowed": {"NOPE", "nuser", "nuser@example.org"},
	}
	want := blankResetID(t, matched.body)
	for name, c := range cases {
		_, r := e.forgot(c[0], c[1], c[2])
		if got := blankResetID(t, r.body); !bytes.Equal(got, want) {
			t.Errorf("%s: body %s, want %s", name, got, want)
		}
		if len(r.header) != len(matched.header) {
			t.Errorf("%s: headers %v, want %v", name, r.header, matched.header)
		}
		for k := range matched.header {
			if k == "X-Request-Id" || k == "Date" || k == "Content-Length" {
				continue
			}
			if r.header.Get(k) != matched.header.Get(k) {
				t.Errorf("%s: header %s = %q, want %q", name, k, r.header.Get(k), matched.header.Get(k))
			}
		}
	}
	var a accepted
	matched.decode(t, &a)
	if a.ExpiresInSeconds != 300 {
		t.Errorf("expires_in_seconds %d", a.ExpiresInSeconds)
	}
	// Every decision was recorded: unknown accounts on the unmatched streams.
	recs, err := teststore.ReadUnmatched(e.ctx, e.store)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 3 {
		t.Errorf("unmatched stream has %d events", len(recs))
	}
	if e.user("ACME", "joe").Token != nil || e.user("NOPE", "nuser").Token != nil {
		t.Error("a refused request issued a token")
	}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/password-resets", Body: map[string]string{"login_name": "jane", "provider_code": "ACME"}, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
}

// gatedCommands holds RequestResetToken (on the intake worker) until the gate opens.
type gatedCommands struct {
	reset.Commands
	entered chan struct{}
	gate    chan struct{}
}

func (g gatedCommands) RequestResetToken(ctx context.Context, c commands.RequestResetToken) (string, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.Commands.RequestResetToken(ctx, c)
}

func TestForgotPasswordDoesNotWaitForTheCommand(t *testing.T) {
	g := gatedCommands{entered: make(chan struct{}, 10), gate: make(chan struct{})}
	e := newEnvWorker(t, nil, func(c reset.Commands) reset.Commands { g.Commands = c; return g })
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	r := e.do(req{Method: "POST", Path: "/api/v1/password-resets", Body: map[string]string{"login_name": "jane", "provider_code": "ACME", "email": "jane@example.org"}})
	expect(t, r, http.StatusAccepted, "")
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the command never ran")
	}
	// The answer came while the command was still held.
	if e.user("ACME", "jane").Token != nil {
		t.Fatal("token issued before the gate opened")
	}
	close(g.gate)
	e.drain()
	if e.user("ACME", "jane").Token == nil {
		t.Fatal("no token after the gate opened")
	}
}

func TestPasswordResetEndsAllSessions(t *testing.T) {
	e := newPGEnv(t, nil)
	s1 := e.enableAndConfigure("jane", janePW, "jane@example.org")
	s2 := e.login("ACME", "jane", janePW)
	boss := e.login("ACME", "boss", bossPW)

	a, _ := e.forgot("ACME", "jane", "jane@example.org")
	token := e.resetToken("ACME", "jane")
	complete := func(tok, pw, confirm string) resp {
		return e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + a.ResetID + "/complete",
			Body: map[string]string{"token": tok, "new_password": pw, "confirm_password": confirm}})
	}
	const newPW = "Fresh-start-2030"
	expect(t, complete(token, newPW, newPW+"x"), http.StatusBadRequest, CodePasswordMatch)
	r := complete(token, "jane", "jane")
	expect(t, r, http.StatusBadRequest, domain.ErrPasswordRejected.Code)
	var rej struct {
		Error struct {
			Reasons []string `json:"reasons"`
		} `json:"error"`
	}
	r.decode(t, &rej)
	if len(rej.Error.Reasons) < 2 {
		t.Errorf("reasons: %s", r.body)
	}
	expect(t, complete(token, janePW, janePW), http.StatusBadRequest, domain.ErrPasswordRejected.Code) // the current one
	wrong := "0000000000"
	expect(t, complete(wrong, newPW, newPW), http.StatusBadRequest, domain.ErrInvalidToken.Code)
	// Lower case and dashes are how people type it.
	typed := strings.ToLower(token[:5]) + "-" + token[5:]
	expect(t, complete(typed, newPW, newPW), http.StatusNoContent, "")

	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: s1}), http.StatusUnauthorized, CodeUnauthorized)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: s2}), http.StatusUnauthorized, CodeUnauthorized)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: boss}), http.StatusOK, "") // only jane's end
	var live int
	if err := e.pg().QueryRow(e.ctx, `SELECT count(*) FROM http_sessions WHERE login = 'jane' AND revoked_at IS NULL`).Scan(&live); err != nil || live != 0 {
		t.Errorf("jane has %d live session rows (%v)", live, err)
	}
	r = complete(token, newPW+"2", newPW+"2")
	expect(t, r, http.StatusBadRequest, domain.ErrInvalidToken.Code)
	if r.errMessage() != domain.ErrTokenUsed.Message {
		t.Errorf("used token message: %q", r.errMessage())
	}
	e.login("ACME", "jane", newPW)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW}}),
		http.StatusUnauthorized, domain.ErrInvalidCredentials.Code)
}

func TestSessionEndsWhenAccountIsLocked(t *testing.T) {
	e := newEnv(t, nil)
	jane := e.login("ACME", "jane", janePW)
	joe := e.login("ACME", "joe", joePW)
	sys := domain.SystemActor("test")
	if err := e.cmds.AdminLock(e.ctx, commands.UserCommand{Actor: sys, Provider: "ACME", Login: "jane"}); err != nil {
		t.Fatal(err)
	}
	if err := e.cmds.Deactivate(e.ctx, commands.UserCommand{Actor: sys, Provider: "ACME", Login: "joe"}); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: jane}), http.StatusUnauthorized, CodeUnauthorized)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: joe}), http.StatusUnauthorized, CodeUnauthorized)
	// The rows were revoked, so unlocking does not bring the sessions back.
	if err := e.cmds.AdminUnlock(e.ctx, commands.UserCommand{Actor: sys, Provider: "ACME", Login: "jane"}); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: jane}), http.StatusUnauthorized, CodeUnauthorized)
}

func TestSessionExpires(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionTTL = time.Hour })
	tok := e.login("ACME", "jane", janePW)
	e.clock.Add(time.Hour - time.Second)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: tok}), http.StatusOK, "")
	e.clock.Add(time.Second)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: tok}), http.StatusUnauthorized, CodeUnauthorized)
}

func TestResendAndExpiry(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	a1, _ := e.forgot("ACME", "jane", "jane@example.org")
	tok1 := e.resetToken("ACME", "jane")
	resend := func(id string) resp {
		return e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + id + "/resend"})
	}
	complete := func(id, tok string) resp {
		return e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + id + "/complete",
			Body: map[string]string{"token": tok, "new_password": "Fresh-start-2030", "confirm_password": "Fresh-start-2030"}})
	}

	e.clock.Add(2 * time.Minute)
	r := resend(a1.ResetID)
	expect(t, r, http.StatusAccepted, "")
	var a2 accepted
	r.decode(t, &a2)
	if a2.ResetID == a1.ResetID || a2.ExpiresInSeconds != 300 {
		t.Fatalf("resend answer %s", r.body)
	}
	e.drain()
	tok2 := e.resetToken("ACME", "jane")
	if tok2 == tok1 {
		t.Fatal("resend issued no new token")
	}
	r = complete(a2.ResetID, tok1)
	expect(t, r, http.StatusBadRequest, domain.ErrInvalidToken.Code)
	if r.errMessage() != domain.ErrTokenSuperseded.Message {
		t.Errorf("superseded token message %q", r.errMessage())
	}

	// Five minutes after the resend the token is dead: resend is 410, complete token_expired.
	e.clock.Add(5 * time.Minute)
	r = resend(a2.ResetID)
	expect(t, r, http.StatusGone, domain.ErrTokenExpired.Code)
	e.drain()
	recs, err := e.store.ReadStream(e.ctx, domain.UserStream("ACME", "jane"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if last := recs[len(recs)-1]; last.Type != "ResetRequestRejected" || !strings.Contains(string(last.Data), domain.ErrResendAfterExpiry.Code) {
		t.Errorf("resend after expiry recorded as %s %s", last.Type, last.Data)
	}
	expect(t, complete(a2.ResetID, tok2), http.StatusBadRequest, domain.ErrTokenExpired.Code)
	expect(t, resend(a1.ResetID), http.StatusGone, domain.ErrTokenExpired.Code)

	// A request that matched nothing answers the same way at the same times.
	u1, _ := e.forgot("ACME", "ghost", "ghost@example.org")
	e.clock.Add(2 * time.Minute)
	r = resend(u1.ResetID)
	expect(t, r, http.StatusAccepted, "")
	var u2 accepted
	r.decode(t, &u2)
	expect(t, complete(u2.ResetID, "ABCDEFGHJK"), http.StatusBadRequest, domain.ErrInvalidToken.Code)
	e.clock.Add(5 * time.Minute)
	expect(t, resend(u2.ResetID), http.StatusGone, domain.ErrTokenExpired.Code)
	expect(t, complete(u2.ResetID, "ABCDEFGHJK"), http.StatusBadRequest, domain.ErrTokenExpired.Code)

	// Reset ids this server did not seal.
	expect(t, resend("garbage"), http.StatusNotFound, CodeNotFound)
	tampered := []byte(u2.ResetID)
	tampered[10] ^= 1
	if tampered[10] == '-' || tampered[10] == '_' {
		tampered[10] = 'A'
	}
	expect(t, resend(string(tampered)), http.StatusNotFound, CodeNotFound)
	expect(t, complete(string(tampered), "ABCDEFGHJK"), http.StatusNotFound, CodeNotFound)
}

func TestTooManyWrongTokens(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	a, _ := e.forgot("ACME", "jane", "jane@example.org")
	token := e.resetToken("ACME", "jane")
	complete := func(tok string) resp {
		return e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + a.ResetID + "/complete",
			Body: map[string]string{"token": tok, "new_password": "Fresh-start-2030", "confirm_password": "Fresh-start-2030"}})
	}
	wrong := "ZZZZZZZZZZ"
	// The fifth wrong token revokes it, but says only invalid_token, as for a request
	// that matched nothing: too_many_attempts would tell that this one matched.
	for range 5 {
		expect(t, complete(wrong), http.StatusBadRequest, domain.ErrInvalidToken.Code)
	}
	if u := e.user("ACME", "jane"); u.Token.State != domain.TokenRevoked {
		t.Errorf("after five wrong tokens the token is %s", u.Token.State)
	}
	// Whoever holds the right token learns why it no longer works (the issue's
	// too_many_attempts); that tells nothing to someone who does not have it.
	expect(t, complete(token), http.StatusBadRequest, domain.ErrTooManyAttempts.Code)
}

// A reset id minted for someone's login (anyone can get one) must not reach a token that
// was issued for an earlier request.
func TestResetIDBindsToItsRequest(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	e.forgot("ACME", "jane", "jane@example.org")
	token := e.resetToken("ACME", "jane")
	e.clock.Add(time.Second)
	forged, _ := e.forgot("ACME", "jane", "attacker@evil.example")
	r := e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + forged.ResetID + "/complete",
		Body: map[string]string{"token": token, "new_password": "Attacker-owns-it-1", "confirm_password": "Attacker-owns-it-1"}})
	expect(t, r, http.StatusBadRequest, domain.ErrInvalidToken.Code)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + forged.ResetID + "/resend"}), http.StatusAccepted, "")
	e.drain()
	if got := e.resetToken("ACME", "jane"); got != token {
		t.Error("a resend through another request's reset id replaced the token")
	}
	if u := e.user("ACME", "jane"); u.PasswordVersion != 0 || u.Token.Attempts != 0 {
		t.Errorf("the forged reset id touched the account: %+v", u.Token)
	}
}

func TestRateLimitPerIP(t *testing.T) {
	// 30 a minute: bursts of 3, then a token every 2 seconds.
	e := newPGEnv(t, func(c *Config) { c.RateLimitPerIP = 30; c.RateLimitPerAccount = 0 })
	login := func(name string) resp {
		return e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": name, "password": "wrong-password"}})
	}
	for i := range 3 {
		expect(t, login("user"+string(rune('a'+i))), http.StatusUnauthorized, domain.ErrInvalidCredentials.Code)
	}
	r := login("userd")
	expect(t, r, http.StatusTooManyRequests, CodeRateLimited)
	if r.header.Get("Retry-After") != "2" {
		t.Errorf("Retry-After %q, want 2", r.header.Get("Retry-After"))
	}
	// Other endpoints have their own budget.
	_, fr := e.forgot("ACME", "jane", "jane@example.org")
	expect(t, fr, http.StatusAccepted, "")
	// A token comes back every 2 seconds.
	e.clock.Add(2 * time.Second)
	expect(t, login("usere"), http.StatusUnauthorized, domain.ErrInvalidCredentials.Code)
	expect(t, login("userf"), http.StatusTooManyRequests, CodeRateLimited)
}

// 0 turns the account budget off, as SELFRESET_RATE_LIMIT_PER_ACCOUNT=0 does (it once
// meant "the per-IP figure" here and "off" in config).
func TestRateLimitPerAccountZeroIsOff(t *testing.T) {
	e := newPGEnv(t, func(c *Config) {
		c.RateLimitPerIP, c.RateLimitPerAccount = 1, 0
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	for i := range 4 {
		expect(t, e.do(req{Method: "POST", Path: "/api/v1/password-resets", Header: map[string]string{"X-Forwarded-For": "198.51.100." + strconv.Itoa(i+1)},
			Body: map[string]string{"login_name": "jane", "provider_code": "ACME", "email": "x@example.org"}}), http.StatusAccepted, "")
	}
	e.drain()
}

func TestRateLimitPerAccountAndForwardedFor(t *testing.T) {
	e := newPGEnv(t, func(c *Config) {
		c.RateLimitPerIP = 20      // bursts of 2
		c.RateLimitPerAccount = 30 // bursts of 3
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	forgot := func(ip, login string) resp {
		return e.do(req{Method: "POST", Path: "/api/v1/password-resets", Header: map[string]string{"X-Forwarded-For": "203.0.113.9, " + ip},
			Body: map[string]string{"login_name": login, "provider_code": "ACME", "email": "x@example.org"}})
	}
	// Per IP: the right-most untrusted X-Forwarded-For entry is the client.
	expect(t, forgot("198.51.100.1", "a1"), http.StatusAccepted, "")
	expect(t, forgot("198.51.100.1", "a2"), http.StatusAccepted, "")
	expect(t, forgot("198.51.100.1", "a3"), http.StatusTooManyRequests, CodeRateLimited)
	expect(t, forgot("198.51.100.2", "a3"), http.StatusAccepted, "")
	// Per account, whatever the IP.
	expect(t, forgot("198.51.100.3", "jane"), http.StatusAccepted, "")
	expect(t, forgot("198.51.100.4", "JANE"), http.StatusAccepted, "")
	expect(t, forgot("198.51.100.5", "jane"), http.StatusAccepted, "")
	r := forgot("198.51.100.6", "jane")
	expect(t, r, http.StatusTooManyRequests, CodeRateLimited)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	e.drain()
	recs, err := teststore.ReadUnmatched(e.ctx, e.store)
	if err != nil {
		t.Fatal(err)
	}
	if ip := recs[len(recs)-1].Metadata.ClientIP; !strings.HasPrefix(ip, "198.51.100.") {
		t.Errorf("event client IP %q", ip)
	}

	// Resend and complete are limited per reset id's account too.
	a, _ := e.forgot("ACME", "ghost", "x@example.org")
	for i := range 3 {
		r := e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + a.ResetID + "/complete", Header: map[string]string{"X-Forwarded-For": "192.0.2." + string(rune('1'+i))},
			Body: map[string]string{"token": "ABCDEFGHJK", "new_password": "Fresh-start-2030", "confirm_password": "Fresh-start-2030"}})
		expect(t, r, http.StatusBadRequest, domain.ErrInvalidToken.Code)
	}
	r = e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + a.ResetID + "/complete", Header: map[string]string{"X-Forwarded-For": "192.0.2.9"},
		Body: map[string]string{"token": "ABCDEFGHJK", "new_password": "Fresh-start-2030", "confirm_password": "Fresh-start-2030"}})
	expect(t, r, http.StatusTooManyRequests, CodeRateLimited)
}

func TestRateLimitOnCodeEntry(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RateLimitPerIP = 40 }) // bursts of 4
	boss := e.login("ACME", "boss", bossPW)
	expect(t, e.do(req{Method: "PUT", Path: "/api/v1/providers/ACME/users/jane/self-reset", Token: boss}), http.StatusNoContent, "")
	tok := e.login("ACME", "jane", janePW)
	e.stepUp(tok, janePW)
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email", Token: tok, Body: map[string]string{"email": "jane@example.org"}}), http.StatusAccepted, "")
	for range 4 {
		e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email/verify", Token: tok, Body: map[string]string{"code": "999999x"}})
	}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email/verify", Token: tok, Body: map[string]string{"code": "999999x"}}), http.StatusTooManyRequests, CodeRateLimited)
}

func TestAccessLogKeepsSecretsOut(t *testing.T) {
	e := newPGEnv(t, nil)
	session := e.enableAndConfigure("jane", janePW, "jane@example.org")
	a, _ := e.forgot("ACME", "jane", "jane@example.org")
	token := e.resetToken("ACME", "jane")
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + a.ResetID + "/complete",
		Body: map[string]string{"token": token, "new_password": "Fresh-start-2030", "confirm_password": "Fresh-start-2030"}}), http.StatusNoContent, "")
	e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + a.ResetID + "/nowhere"})
	logs := e.logs.String()
	for _, secret := range []string{janePW, "Fresh-start-2030", session, token, a.ResetID, "jane@example.org", "Bearer"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
	if !strings.Contains(logs, `"route":"/api/v1/password-resets/{reset_id}/complete"`) || !strings.Contains(logs, `"status":204`) {
		t.Errorf("the access log lacks the route or status:\n%s", logs)
	}
}

func TestCookieSessionLogout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InsecureCookies = true })
	tok := e.login("ACME", "jane", janePW)
	r := e.do(req{Method: "DELETE", Path: "/api/v1/sessions/current",
		Header: map[string]string{"Cookie": SessionCookieName + "=" + tok, "Sec-Fetch-Site": "same-origin"}})
	expect(t, r, http.StatusNoContent, "")
	if c := r.header.Get("Set-Cookie"); !strings.Contains(c, SessionCookieName+"=;") || !strings.Contains(c, "Max-Age=0") || !strings.Contains(c, "HttpOnly") {
		t.Errorf("cookie not cleared: %q", c)
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: tok}), http.StatusUnauthorized, CodeUnauthorized)
	// A cross-site form post carrying the cookie is refused before it reaches the handler.
	tok = e.login("ACME", "jane", janePW)
	expect(t, e.do(req{Method: "DELETE", Path: "/api/v1/sessions/current",
		Header: map[string]string{"Cookie": SessionCookieName + "=" + tok, "Sec-Fetch-Site": "cross-site"}}), http.StatusForbidden, CodeCrossOrigin)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: tok}), http.StatusOK, "")
}

// With the queue's database unreachable, Forgot Password and Resend answer 503 and
// nothing is acknowledged; what was answered 202 before is still decided.
func TestForgotPasswordUnavailableWithoutTheQueue(t *testing.T) {
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	body := map[string]string{"login_name": "jane", "provider_code": "ACME", "email": "jane@example.org"}
	before := e.do(req{Method: "POST", Path: "/api/v1/password-resets", Body: body})
	expect(t, before, http.StatusAccepted, "")
	var a accepted
	before.decode(t, &a)

	// A server whose intake publishes to a PostgreSQL that is not there (nothing
	// listens on port 1 of loopback).
	dead, err := pgxpool.New(e.ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dead.Close)
	bus, err := reset.NewBus(dead, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	down, err := reset.New(reset.Config{Commands: e.cmds, Keyring: e.keyring, Clock: e.clock, Intake: bus})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Config{Commands: e.cmds, Resets: down, Sessions: e.sessions, Clock: e.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv.MountPages()
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	post := func(path string, b any) resp {
		t.Helper()
		raw, _ := json.Marshal(b)
		q, err := http.NewRequest(http.MethodPost, ts.URL+path, bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		q.Header.Set("Content-Type", "application/json")
		res, err := ts.Client().Do(q)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		e.checkContract(q, raw, res.StatusCode, res.Header, out)
		return resp{status: res.StatusCode, header: res.Header, body: out}
	}
	for path, b := range map[string]any{"/api/v1/password-resets": body, "/api/v1/password-resets/" + a.ResetID + "/resend": struct{}{}} {
		r := post(path, b)
		expect(t, r, http.StatusServiceUnavailable, CodeUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", path)
		}
	}
	// The page says so too, and keeps what was typed.
	form := url.Values{"login_name": {"jane"}, "provider_code": {"ACME"}, "email": {"jane@example.org"}}
	res, err := ts.Client().PostForm(ts.URL+PathForgotPassword, form)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(page), "could not be stored") {
		t.Errorf("page: %d %s", res.StatusCode, page)
	}
	// The request answered 202 before reached its decision.
	e.drain()
	if e.user("ACME", "jane").Token == nil {
		t.Error("the request accepted before the outage was not decided")
	}
}

// With the event store unreachable, login and signed-in routes answer 503, not 500.
func TestStoreDownIsUnavailable(t *testing.T) {
	e := newPGEnv(t, nil)
	tok := e.login("ACME", "jane", janePW)
	e.pg().Close() // sever this test's own pool
	r := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW}})
	expect(t, r, http.StatusServiceUnavailable, CodeUnavailable)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: tok}), http.StatusServiceUnavailable, CodeUnavailable)
}
