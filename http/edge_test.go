package http

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"selfreset/domain"
	"selfreset/internal/testkit"
)

// badTexts are what the edge must refuse in every field of every route: a NUL byte (which
// PostgreSQL text and jsonb refuse) and invalid UTF-8 (which PostgreSQL text refuses).
var badTexts = []struct {
	name, value string
	nul         bool // ValidText fails even after a JSON decoder's U+FFFD repair
}{
	{"nul", "ja\x00ne", true},
	{"bad-utf8", "ja\xff\xc3ne", false},
}

// edgeRoute says what one route reads from a client. Good values fill every other field.
type edgeRoute struct {
	page  bool              // an HTML page (form body, 400 page) rather than the API (JSON)
	auth  bool              // needs boss's session, stepped up
	body  map[string]string // JSON or form fields, with good values
	query map[string]string // query parameters the handler reads, with good values
	vars  map[string]string // path variables, with good values
}

// TestBadTextInEveryFieldIs4xx sends a NUL byte and invalid UTF-8 in every JSON field,
// form field, query parameter and path variable of every route on the router, and wants
// a 4xx each time (400 for a NUL outside password fields): never a 500 from the store.
// A route missing from the table fails the test, so new routes join it.
func TestBadTextInEveryFieldIs4xx(t *testing.T) {
	e := pgPageEnv(t, nil)
	accepted, err := e.resets.RequestReset(e.ctx, "ACME", "jane", "jane@example.org")
	if err != nil {
		t.Fatal(err)
	}
	refID := accepted.ResetID
	jane := map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW}
	routes := map[string]edgeRoute{
		"GET /healthz":                    {},
		"GET /readyz":                     {},
		"POST /api/v1/sessions":           {body: jane},
		"DELETE /api/v1/sessions/current": {auth: true},
		"GET /api/v1/providers/{code}/users": {auth: true, vars: map[string]string{"code": "ACME"},
			query: map[string]string{"q": "ja", "cursor": encodeCursor("a"), "limit": "5"}},
		"PUT /api/v1/providers/{code}/users/{login}/self-reset":    {auth: true, vars: map[string]string{"code": "ACME", "login": "jane"}},
		"DELETE /api/v1/providers/{code}/users/{login}/self-reset": {auth: true, vars: map[string]string{"code": "ACME", "login": "jane"}},
		"GET /api/v1/me/self-reset":                                {auth: true},
		"POST /api/v1/me/self-reset/verify-password":               {auth: true, body: map[string]string{"password": bossPW}},
		"POST /api/v1/me/self-reset/email":                         {auth: true, body: map[string]string{"email": "boss@example.org"}},
		"POST /api/v1/me/self-reset/email/verify":                  {auth: true, body: map[string]string{"code": "123456"}},
		"POST /api/v1/me/self-reset/configure":                     {auth: true},
		"POST /api/v1/password-resets":                             {body: map[string]string{"provider_code": "ACME", "login_name": "jane", "email": "jane@example.org"}},
		"POST /api/v1/password-resets/{reset_id}/resend":           {vars: map[string]string{"reset_id": refID}},
		"POST /api/v1/password-resets/{reset_id}/complete": {vars: map[string]string{"reset_id": refID},
			body: map[string]string{"token": "12345678", "new_password": "Brand-new-pass-1", "confirm_password": "Brand-new-pass-1"}},

		"GET /":                {page: true},
		"GET /static/{name}":   {page: true, vars: map[string]string{"name": "style.css"}, query: map[string]string{"v": "1"}},
		"GET /login":           {page: true, query: map[string]string{"logged_out": "1"}},
		"POST /login":          {page: true, body: jane},
		"POST /logout":         {page: true, auth: true},
		"GET /forgot-password": {page: true},
		"POST /forgot-password": {page: true,
			body: map[string]string{"provider_code": "ACME", "login_name": "jane", "email": "jane@example.org"}},
		"GET /change-password": {page: true, query: map[string]string{"provider": "ACME", "login": "jane"}},
		"GET /change-password/{reset_id}": {page: true, vars: map[string]string{"reset_id": refID},
			query: map[string]string{"sent": "1", "resent": "1"}},
		"POST /change-password/{reset_id}": {page: true, vars: map[string]string{"reset_id": refID},
			body: map[string]string{"token": "12345678", "new_password": "Brand-new-pass-1", "confirm_password": "Brand-new-pass-1"}},
		"POST /change-password/{reset_id}/resend": {page: true, vars: map[string]string{"reset_id": refID}},
		"GET /settings": {page: true, auth: true, query: map[string]string{"configured": "1"}},
		"GET /settings/self-reset": {page: true, auth: true,
			query: map[string]string{"reauth": "1", "sent": "1", "verified": "1"}},
		"POST /settings/self-reset/verify-password": {page: true, auth: true, body: map[string]string{"password": bossPW}},
		"POST /settings/self-reset/email":           {page: true, auth: true, body: map[string]string{"email": "boss@example.org"}},
		"POST /settings/self-reset/email/verify":    {page: true, auth: true, body: map[string]string{"code": "123456"}},
		"POST /settings/self-reset/configure":       {page: true, auth: true},
		"GET /admin":                                {page: true, auth: true},
		"GET /admin/users": {page: true, auth: true,
			query: map[string]string{"q": "ja", "cursor": encodeCursor("a"), "limit": "5", "changed": "jane"}},
		"POST /admin/users/{login}/self-reset/enable": {page: true, auth: true, vars: map[string]string{"login": "jane"},
			body: map[string]string{"q": "ja", "cursor": encodeCursor("a"), "limit": "5"}},
		"POST /admin/users/{login}/self-reset/disable": {page: true, auth: true, vars: map[string]string{"login": "jane"},
			body: map[string]string{"q": "ja", "cursor": encodeCursor("a"), "limit": "5"}},

		// The administrator's tools and Change Password while signed in.
		"POST /api/v1/providers/{code}/users": {auth: true, vars: map[string]string{"code": "ACME"},
			body: map[string]string{"login_name": "kim", "display_name": "Kim Lee"}},
		"DELETE /api/v1/providers/{code}/users/{login}": {auth: true, vars: map[string]string{"code": "ACME", "login": "jane"},
			body: map[string]string{"confirm_login": "jane"}},
		"PUT /api/v1/providers/{code}/users/{login}/roles/{role}":    {auth: true, vars: map[string]string{"code": "ACME", "login": "jane", "role": "user-admin"}},
		"DELETE /api/v1/providers/{code}/users/{login}/roles/{role}": {auth: true, vars: map[string]string{"code": "ACME", "login": "jane", "role": "user-admin"}},
		"POST /api/v1/providers/{code}/users/{login}/lock":           {auth: true, vars: map[string]string{"code": "ACME", "login": "jane"}},
		"POST /api/v1/providers/{code}/users/{login}/unlock":         {auth: true, vars: map[string]string{"code": "ACME", "login": "jane"}},
		"POST /api/v1/providers/{code}/users/{login}/deactivate":     {auth: true, vars: map[string]string{"code": "ACME", "login": "jane"}},
		"POST /api/v1/providers/{code}/users/{login}/reactivate":     {auth: true, vars: map[string]string{"code": "ACME", "login": "jane"}},
		"POST /api/v1/providers/{code}/users/{login}/password-reset": {auth: true, vars: map[string]string{"code": "ACME", "login": "jane"}},
		"POST /api/v1/me/password": {auth: true,
			body: map[string]string{"current_password": bossPW, "new_password": "Brand-new-pass-1", "confirm_password": "Brand-new-pass-1"}},
		"GET /admin/new-user":  {page: true, auth: true},
		"POST /admin/new-user": {page: true, auth: true, body: map[string]string{"login_name": "kim", "display_name": "Kim Lee", "user_admin": "1"}},
		"GET /admin/users/{login}": {page: true, auth: true, vars: map[string]string{"login": "jane"},
			query: map[string]string{"done": "locked"}},
		"POST /admin/users/{login}/{action}": {page: true, auth: true, vars: map[string]string{"login": "jane", "action": "lock"},
			body: map[string]string{"confirm_login": "jane"}},
		"POST /admin/users/{login}/role/{change}": {page: true, auth: true, vars: map[string]string{"login": "jane", "change": "grant"}},
		"GET /settings/password":                  {page: true, auth: true},
		"POST /settings/password": {page: true, auth: true,
			body: map[string]string{"current_password": bossPW, "new_password": "Brand-new-pass-1", "confirm_password": "Brand-new-pass-1"}},

		// The audit API (boss is no auditor: the answers are 403 unless the text is refused first).
		"GET /api/v1/audit/events": {auth: true, query: map[string]string{"provider": "ACME", "login": "jane", "type": "LoginFailed",
			"actor": "anonymous", "client_ip": "127.0.0.1", "since": "2030-01-01T00:00:00Z", "until": "2030-01-03T00:00:00Z", "limit": "5"}},
		"GET /api/v1/audit/state": {auth: true, query: map[string]string{"provider": "ACME", "login": "jane", "as_of": "2030-01-02T00:00:00Z"}},

		"GET /api/v1/openapi.json": {},
	}

	// Every route on the router is in the table, and nothing else.
	seen := map[string]bool{}
	if err := e.srv.Router().Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, _ := route.GetMethods()
		for _, m := range methods {
			seen[m+" "+path] = true
			if _, ok := routes[m+" "+path]; !ok {
				t.Errorf("route %s %s is not in this test's table", m, path)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for k := range routes {
		if !seen[k] {
			t.Errorf("the table lists %s, which the router does not have", k)
		}
	}

	token := e.login("ACME", "boss", bossPW)
	e.stepUp(token, bossPW)
	// Boss may configure Self Password Reset, so the configure steps reach their fields.
	expect(t, e.do(req{Method: "PUT", Path: "/api/v1/providers/ACME/users/boss/self-reset", Token: token}), http.StatusNoContent, "")
	b := e.browser()
	b.login("ACME", "boss", bossPW)
	seeOther(t, b.post(PathSelfReset+"/verify-password", "password", bossPW), "")

	type probe struct {
		key, where, field string
		route             edgeRoute
	}
	var probes []probe
	for key, rt := range routes {
		for f := range rt.vars {
			probes = append(probes, probe{key, "path", f, rt})
		}
		for f := range rt.query {
			probes = append(probes, probe{key, "query", f, rt})
		}
		// A parameter no handler reads is refused as well: the check is the router's.
		probes = append(probes, probe{key, "query", "x", rt})
		for f := range rt.body {
			probes = append(probes, probe{key, "body", f, rt})
		}
	}
	// Wrong passwords count as failed logins: send them last, and few enough (2 a route,
	// 2 routes an account) that nobody locks before the other probes have run.
	sort.Slice(probes, func(i, j int) bool {
		si, sj := secretField(probes[i].field), secretField(probes[j].field)
		if si != sj {
			return sj
		}
		return probes[i].key+probes[i].where+probes[i].field < probes[j].key+probes[j].where+probes[j].field
	})

	n := 0
	for _, p := range probes {
		method, tmpl, _ := strings.Cut(p.key, " ")
		for _, bad := range badTexts {
			value := func(where, f, good string) string {
				if where == p.where && f == p.field {
					return bad.value
				}
				return good
			}
			path := tmpl
			for v, good := range p.route.vars {
				path = strings.Replace(path, "{"+v+"}", url.PathEscape(value("path", v, good)), 1)
			}
			q := url.Values{}
			for f, good := range p.route.query {
				q.Set(f, value("query", f, good))
			}
			if p.where == "query" && p.field == "x" {
				q.Set("x", bad.value)
			}
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var r resp
			if p.route.page {
				form := url.Values{}
				for f, good := range p.route.body {
					form.Set(f, value("body", f, good))
				}
				bb := b
				if !p.route.auth {
					bb = e.browser()
				}
				if method == http.MethodGet {
					form = nil
				}
				r = bb.do(method, path, form, nil)
			} else {
				// Bad text in a parameter the document types breaks the document too.
				rq := req{Method: method, Path: path, Invalid: p.where == "query" && e.contract.typedQuery(method, tmpl, p.field)}
				if p.route.auth {
					rq.Token = token
				}
				if len(p.route.body) > 0 {
					var sb strings.Builder
					sb.WriteByte('{')
					i := 0
					for f, good := range p.route.body {
						if i > 0 {
							sb.WriteByte(',')
						}
						i++
						// Written by hand: json.Marshal would repair the invalid UTF-8.
						v := strings.ReplaceAll(value("body", f, good), "\x00", `\u0000`)
						sb.WriteString(`"` + f + `":"` + v + `"`)
					}
					sb.WriteByte('}')
					rq.Body = sb.String()
				}
				r = e.do(rq)
			}
			n++
			want := "4xx"
			ok := r.status >= 400 && r.status < 500
			if bad.nul && !secretField(p.field) {
				want, ok = "400", r.status == http.StatusBadRequest
			}
			if !ok {
				t.Errorf("%s with %s in %s %s: got %d, want %s\n%.300s", p.key, bad.name, p.where, p.field, r.status, want, r.body)
			}
			if !p.route.page && r.status == http.StatusBadRequest && r.errCode() == "" {
				t.Errorf("%s with %s in %s %s: 400 without the error envelope: %.200s", p.key, bad.name, p.where, p.field, r.body)
			}
		}
		e.drain()
	}
	if n < 150 {
		t.Fatalf("only %d probes", n)
	}
	t.Logf("%d probes over %d routes", n, len(routes))
	// The probes changed nothing a good request would then notice: boss's sessions live.
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: token}), http.StatusOK, "")
	if r := b.get(PathSettings); r.status != http.StatusOK {
		t.Fatalf("boss's page session ended: %d", r.status)
	}
}

// An address the mailer could not send to is refused when it is entered, and a code that
// is missing, empty or null is a malformed request rather than a wrong try: neither
// appends an event.
func TestEmailAndCodeRefusedBeforeAnyEvent(t *testing.T) {
	e := newEnv(t, nil)
	boss := e.login("ACME", "boss", bossPW)
	expect(t, e.do(req{Method: "PUT", Path: "/api/v1/providers/ACME/users/jane/self-reset", Token: boss}), http.StatusNoContent, "")
	tok := e.login("ACME", "jane", janePW)
	e.stepUp(tok, janePW)
	revision := func() uint64 { return testkit.StreamRevision(t, e.store, domain.UserStream("ACME", "jane")) }

	before := revision()
	for _, email := range []string{"<a>@b.c", "Jane <jane@example.org>", "jane@example.org (home)"} {
		r := e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email", Token: tok, Body: map[string]string{"email": email}})
		expect(t, r, http.StatusBadRequest, "invalid_input")
	}
	if got := revision(); got != before {
		t.Fatalf("refused addresses appended events: revision %d → %d", before, got)
	}

	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email", Token: tok, Body: map[string]string{"email": "jane@example.org"}}), http.StatusAccepted, "")
	before = revision()
	for _, body := range []string{`{}`, `{"code":""}`, `{"code":null}`} {
		r := e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email/verify", Token: tok, Body: body, Invalid: true})
		expect(t, r, http.StatusBadRequest, CodeBadRequest)
	}
	if got := revision(); got != before {
		t.Fatalf("missing codes were counted as tries: revision %d → %d", before, got)
	}
	// A wrong code is still a wrong try, recorded as one.
	wrong := "000000"
	if e.emailCode("ACME", "jane") == wrong {
		wrong = "111111"
	}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email/verify", Token: tok, Body: map[string]string{"code": wrong}}), http.StatusBadRequest, "invalid_code")
	if got := revision(); got != before+1 {
		t.Fatalf("a wrong code: revision %d → %d, want one event", before, got)
	}
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email/verify", Token: tok, Body: map[string]string{"code": e.emailCode("ACME", "jane")}}), http.StatusOK, "")
}
