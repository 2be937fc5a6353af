package http

import (
	"bufio"
	"bytes"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/reset"
)

// pageEnv is newEnv with the HTML pages mounted. Cookies are not Secure (the test server
// speaks plain HTTP) unless mod says otherwise.
func pageEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	return pageEnvOn(t, newEnv, mod)
}

// pgPageEnv is pageEnv on PostgreSQL whatever the tier (newPGEnv).
func pgPageEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	return pageEnvOn(t, newPGEnv, mod)
}

func pageEnvOn(t *testing.T, build func(*testing.T, func(*Config)) *env, mod func(*Config)) *env {
	t.Helper()
	e := build(t, func(c *Config) {
		c.InsecureCookies = true
		if mod != nil {
			mod(c)
		}
	})
	e.srv.MountPages()
	return e
}

// browser is a client that behaves like one: a cookie jar, no automatic redirects (the
// tests look at each 303), and the headers a browser sends with a same-origin form.
type browser struct {
	e      *env
	client *http.Client
	header map[string]string // sent with every request
}

func (e *env) browser() *browser {
	e.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return &browser{e: e, header: map[string]string{}, client: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values, hdr map[string]string) resp {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r, err := http.NewRequest(method, b.e.ts.URL+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		r.Header.Set("Origin", b.e.ts.URL)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range b.header {
		r.Header.Set(k, v)
	}
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	res, err := b.client.Do(r)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: raw}
}

func (b *browser) get(path string) resp { b.e.t.Helper(); return b.do(http.MethodGet, path, nil, nil) }

func (b *browser) post(path string, kv ...string) resp {
	b.e.t.Helper()
	form := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		form.Set(kv[i], kv[i+1])
	}
	return b.do(http.MethodPost, path, form, nil)
}

// follow GETs the Location of a 303.
func (b *browser) follow(r resp) resp {
	b.e.t.Helper()
	seeOther(b.e.t, r, "")
	return b.get(r.header.Get("Location"))
}

// login signs in through the login page.
func (b *browser) login(code, login, pw string) {
	b.e.t.Helper()
	seeOther(b.e.t, b.post("/login", "login_name", login, "provider_code", code, "password", pw), "/settings")
}

// seeOther fails unless r is a 303 (to location, when not "").
func seeOther(t *testing.T, r resp, location string) {
	t.Helper()
	if r.status != http.StatusSeeOther || (location != "" && r.header.Get("Location") != location) {
		t.Fatalf("got %d Location %q; want 303 %q\n%s", r.status, r.header.Get("Location"), location, r.body)
	}
}

// isPage fails unless r is an HTML page with status that shows each of texts (as the
// page's HTML has them, after escaping) and has the pages' security properties.
func isPage(t *testing.T, r resp, status int, texts ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("got %d; want %d\n%s", r.status, status, r.body)
	}
	body := string(r.body)
	for _, s := range texts {
		if !strings.Contains(body, html.EscapeString(s)) && !strings.Contains(body, s) {
			t.Errorf("page (%d) lacks %q:\n%s", status, s, body)
		}
	}
	checkPageHeaders(t, r)
}

func checkPageHeaders(t *testing.T, r resp) {
	t.Helper()
	body := string(r.body)
	if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	csp := r.header.Get("Content-Security-Policy")
	if csp != ContentSecurityPolicy || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP %q", csp)
	}
	for k, want := range map[string]string{"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
		"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	lower := strings.ToLower(body)
	for _, bad := range []string{"<script", " style=", "javascript:", " onclick=", " onsubmit="} {
		if strings.Contains(lower, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if !strings.Contains(body, `<meta name="viewport" content="width=device-width, initial-scale=1">`) {
		t.Error("page has no viewport meta")
	}
	if !strings.Contains(body, `<link rel="stylesheet" href="`+stylesheetURL+`">`) {
		t.Error("page does not link the stylesheet")
	}
}

// hasNot fails if the page shows s.
func hasNot(t *testing.T, r resp, s string) {
	t.Helper()
	if strings.Contains(string(r.body), s) {
		t.Errorf("page shows %q:\n%s", s, r.body)
	}
}

var changePath = regexp.MustCompile(`^/change-password/([A-Za-z0-9_-]+)\?(sent|resent)=1$`)

// resetIDOf is the reset id in a redirect to a Change Password page.
func resetIDOf(t *testing.T, r resp) string {
	t.Helper()
	m := changePath.FindStringSubmatch(r.header.Get("Location"))
	if r.status != http.StatusSeeOther || m == nil {
		t.Fatalf("got %d Location %q; want 303 to a Change Password page", r.status, r.header.Get("Location"))
	}
	return m[1]
}

func TestPagesRender(t *testing.T) {
	e := pgPageEnv(t, nil)
	e.projectAdminUsers(domain.UserStream("ACME", "boss"), domain.UserStream("ACME", "jane"), domain.UserStream("ACME", "joe"))
	b := e.browser()

	isPage(t, b.get("/login"), http.StatusOK, "<title>Login", "Login Name", "Provider Code", "Password",
		`<button type="submit">Login</button>`, `<a href="/forgot-password">Forgot Password?</a>`,
		`autocomplete="current-password"`)
	isPage(t, b.get("/forgot-password"), http.StatusOK, "<h1>Reset Password</h1>", "Login Name", "Provider Code",
		`<label for="email">Email</label>`, `<button type="submit">Submit</button>`, "valid for 5 minutes")
	id := resetIDOf(t, b.post("/forgot-password", "login_name", "jane", "provider_code", "ACME", "email", "jane@example.org"))
	isPage(t, b.get("/change-password/"+id), http.StatusOK, "<h1>Change Password</h1>", "Password Token",
		"New Password", "Confirm New Password", `<button type="submit">Submit</button>`,
		`action="/change-password/`+id+`/resend"`, ">Resend</button>")
	isPage(t, e.browser().get("/change-password"), http.StatusOK, "<h1>Change Password</h1>", "Forgot Password?")
	seeOther(t, b.get("/"), "/login")

	if err := e.cmds.EnableSelfReset(e.ctx, commands.UserCommand{Actor: domain.SystemActor("test"), Provider: "ACME", Login: "boss"}); err != nil {
		t.Fatal(err)
	}
	b.login("ACME", "boss", bossPW)
	seeOther(t, b.get("/"), "/settings")
	isPage(t, b.get("/settings"), http.StatusOK, "<h1>Settings</h1>", "Self Password Reset", "Bo Boss",
		`href="/admin"`, `action="/logout"`, ">Logout</button>")
	isPage(t, b.get("/settings/self-reset"), http.StatusOK, "<h1>Self Password Reset</h1>", "login Password",
		`<button type="submit">Verify</button>`)
	isPage(t, b.get("/admin"), http.StatusOK, "<h1>Admin</h1>", "User", `<a href="/admin/users">Self Password Reset</a>`)
	isPage(t, b.get("/admin/users"), http.StatusOK, "<h1>User List</h1>", "Enable/Disable Self Pass Reset",
		"Jane Doe", `action="/admin/users/jane/self-reset/enable"`, ">Enable</button>", "Search")

	// The stylesheet: served with its type, cacheable under its version.
	r := b.get(stylesheetURL)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "text/css; charset=utf-8" ||
		!strings.Contains(r.header.Get("Cache-Control"), "immutable") || !bytes.Contains(r.body, []byte("@media")) {
		t.Errorf("stylesheet: %d %v", r.status, r.header)
	}
	if r := b.get("/static/nothing.css"); r.status != http.StatusNotFound {
		t.Errorf("unknown static file: %d", r.status)
	}
}

func TestLoginPage(t *testing.T) {
	e := pageEnv(t, nil)
	b := e.browser()
	seeOther(t, b.get("/settings"), "/login")

	r := b.post("/login", "login_name", "jane", "provider_code", "ACME")
	isPage(t, r, http.StatusBadRequest, "Enter your Login Name, Provider Code and Password.")

	wrong := b.post("/login", "login_name", "jane", "provider_code", "ACME", "password", "not-her-password")
	isPage(t, wrong, http.StatusUnauthorized, sentence(domain.ErrInvalidCredentials.Message), "Forgot Password?", `value="jane"`)
	hasNot(t, wrong, "not-her-password")
	if c := wrong.header.Get("Set-Cookie"); c != "" {
		t.Errorf("a failed login set a cookie: %q", c)
	}
	// Unknown accounts get the same page as a wrong password.
	unknown := b.post("/login", "login_name", "jane", "provider_code", "ZZZ9", "password", "not-her-password")
	if unknown.status != wrong.status || !bytes.Equal(bytes.ReplaceAll(unknown.body, []byte("ZZZ9"), []byte("ACME")), wrong.body) {
		t.Errorf("unknown provider answers differently:\n%s", unknown.body)
	}

	r = b.post("/login", "login_name", " Jane ", "provider_code", "acme", "password", janePW)
	seeOther(t, r, "/settings")
	c := r.header.Get("Set-Cookie")
	if !strings.HasPrefix(c, SessionCookieName+"=") || !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Lax") {
		t.Errorf("session cookie %q", c)
	}
	isPage(t, b.get("/settings"), http.StatusOK, "Jane Doe", "Login Name jane", "Provider Code ACME")
	hasNot(t, b.get("/settings"), `href="/admin"`) // jane is no user-admin
	seeOther(t, b.get("/login"), "/settings")

	r = b.post("/logout")
	seeOther(t, r, "/login?logged_out=1")
	if c := r.header.Get("Set-Cookie"); !strings.Contains(c, "Max-Age=0") {
		t.Errorf("logout did not clear the cookie: %q", c)
	}
	isPage(t, b.get("/login?logged_out=1"), http.StatusOK, "You have logged out.")
	seeOther(t, b.get("/settings"), "/login")

	// Over TLS (InsecureCookies off) the cookie is Secure.
	secure := newEnv(t, nil)
	secure.srv.MountPages()
	r = secure.browser().post("/login", "login_name", "jane", "provider_code", "ACME", "password", janePW)
	seeOther(t, r, "/settings")
	if c := r.header.Get("Set-Cookie"); !strings.Contains(c, "; Secure") || !strings.Contains(c, "HttpOnly") {
		t.Errorf("cookie without Secure: %q", c)
	}
}

// A logout or a stolen cookie: a session that ended sends the browser to the login page.
func TestPageSessionEnds(t *testing.T) {
	e := pageEnv(t, nil)
	b := e.browser()
	b.login("ACME", "jane", janePW)
	if err := e.cmds.AdminLock(e.ctx, commands.UserCommand{Actor: domain.SystemActor("test"), Provider: "ACME", Login: "jane"}); err != nil {
		t.Fatal(err)
	}
	r := b.get("/settings")
	seeOther(t, r, "/login")
	if c := r.header.Get("Set-Cookie"); !strings.Contains(c, SessionCookieName+"=;") {
		t.Errorf("dead cookie kept: %q", c)
	}
}

func TestForgotPasswordPageAnswersAlike(t *testing.T) {
	e := pgPageEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	if err := e.cmds.RegisterUser(e.ctx, commands.RegisterUser{Actor: domain.SystemActor("test"), Provider: "ACME",
		Login: "jack", DisplayName: "Jack", Password: "Jack-pass-55120"}); err != nil {
		t.Fatal(err)
	}
	hdr := map[string]string{"X-Request-Id": "same-request-id"}
	submit := func(login, code, email string) (resp, resp, string) {
		t.Helper()
		e.clock.Add(time.Second) // so that every reset id differs
		b := e.browser()
		r := b.do(http.MethodPost, "/forgot-password", url.Values{"login_name": {login}, "provider_code": {code}, "email": {email}}, hdr)
		id := resetIDOf(t, r)
		next := b.do(http.MethodGet, r.header.Get("Location"), nil, hdr)
		isPage(t, next, http.StatusOK, append([]string{"If the details match a configured account, a Password token was sent to the email; it is valid for 5 minutes.",
			domain.ResetErrorNote}, domain.ResetErrorReasons...)...)
		return r, next, id
	}
	// The same login name throughout, so that only the reset id differs.
	matched, matchedPage, matchedID := submit("jane", "ACME", "jane@example.org")
	e.drain()
	if e.resetToken("ACME", "jane") == "" {
		t.Fatal("the matched request issued no token")
	}
	blank := func(b []byte, id string) []byte { return bytes.ReplaceAll(b, []byte(id), []byte("RESET-ID")) }
	headers := func(r resp, id string) map[string]string {
		m := map[string]string{}
		for k, v := range r.header {
			// Content-Length follows the reset id's length; the bodies are compared.
			if k != "Date" && k != "Content-Length" {
				m[k] = string(blank([]byte(strings.Join(v, "\n")), id))
			}
		}
		return m
	}
	same := func(name string, a resp, aID string, b resp, bID string) {
		t.Helper()
		if a.status != b.status || !bytes.Equal(blank(a.body, aID), blank(b.body, bID)) {
			t.Errorf("%s: %d vs %d\n%s\n----\n%s", name, a.status, b.status, a.body, b.body)
		}
		ha, hb := headers(a, aID), headers(b, bID)
		for k := range ha {
			if ha[k] != hb[k] {
				t.Errorf("%s: header %s %q vs %q", name, k, ha[k], hb[k])
			}
		}
		if len(ha) != len(hb) {
			t.Errorf("%s: headers %v vs %v", name, ha, hb)
		}
	}
	for name, in := range map[string][3]string{
		"wrong email":          {"jane", "ACME", "someone@example.org"},
		"no such provider":     {"jane", "ZZZ", "jane@example.org"},
		"no such user":         {"jane", "NOPE", "jane@example.org"},
		"provider not allowed": {"jane", "NOPE", "nuser@example.org"},
	} {
		r, next, id := submit(in[0], in[1], in[2])
		if id == matchedID {
			t.Fatalf("%s: the same reset id twice", name)
		}
		same(name+" (answer)", matched, matchedID, r, id)
		same(name+" (Change Password page)", matchedPage, matchedID, next, id)
	}
	// A user who is not enabled, with another login name of the same length.
	m2, m2Page, m2ID := submit("jack", "ACME", "jack@example.org")
	same("user not enabled (answer)", matched, matchedID, m2, m2ID)
	same("user not enabled (Change Password page)", matchedPage, matchedID, m2Page, m2ID)
	e.drain()

	isPage(t, e.browser().post("/forgot-password", "login_name", "jane", "provider_code", "ACME"),
		http.StatusBadRequest, "Enter your Login Name, Provider Code and Email.", `value="jane"`)
}

func TestChangePasswordPage(t *testing.T) {
	e := pgPageEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	other := e.browser() // jane, signed in elsewhere
	other.login("ACME", "jane", janePW)

	b := e.browser()
	r := b.post("/forgot-password", "login_name", "jane", "provider_code", "ACME", "email", "jane@example.org")
	id := resetIDOf(t, r)
	if c := r.header.Get("Set-Cookie"); !strings.Contains(c, resetCookieName+"="+id) || !strings.Contains(c, "Path=/change-password") || !strings.Contains(c, "HttpOnly") {
		t.Errorf("reset cookie %q", c)
	}
	b.follow(r)
	e.drain()
	token := e.resetToken("ACME", "jane")
	path := "/change-password/" + id
	submit := func(tok, pw, confirm string) resp {
		t.Helper()
		return b.post(path, "token", tok, "new_password", pw, "confirm_password", confirm)
	}

	isPage(t, submit(token, "Fresh-start-2030", "Fresh-start-2031"), http.StatusBadRequest,
		"The new password and its confirmation do not match.")
	r = submit(token, "short", "short")
	isPage(t, r, http.StatusBadRequest, "The new password does not meet the password policy.", "<li>must be at least 8 characters</li>")
	hasNot(t, r, token)
	isPage(t, submit("ZZZZZZZZZZ", "Fresh-start-2030", "Fresh-start-2030"), http.StatusBadRequest, "The Password Token is not valid.")
	isPage(t, submit("", "Fresh-start-2030", "Fresh-start-2030"), http.StatusBadRequest,
		"Enter the Password Token, the New Password and Confirm New Password.")

	r = submit(token, "Fresh-start-2030", "Fresh-start-2030")
	isPage(t, r, http.StatusOK, "Your password has been reset successfully", `<a class="button" href="/login">Login Again</a>`)
	if c := r.header.Get("Set-Cookie"); !strings.Contains(c, resetCookieName+"=;") {
		t.Errorf("reset cookie not cleared: %q", c)
	}
	isPage(t, submit(token, "Fresh-start-2031", "Fresh-start-2031"), http.StatusBadRequest, "The Password Token has already been used.")

	// Every session of jane ended; the new password works.
	seeOther(t, other.get("/settings"), "/login")
	isPage(t, b.post("/login", "login_name", "jane", "provider_code", "ACME", "password", janePW), http.StatusUnauthorized)
	b.login("ACME", "jane", "Fresh-start-2030")

	// Reset ids this server did not seal.
	isPage(t, b.get("/change-password/garbage"), http.StatusNotFound, "This Change Password page is not valid.")
	isPage(t, b.post("/change-password/garbage", "token", "x", "new_password", "y", "confirm_password", "y"), http.StatusNotFound)
	isPage(t, b.post("/change-password/garbage/resend"), http.StatusNotFound)

	logs := e.logs.String()
	for _, secret := range []string{id, token, janePW, "Fresh-start-2030", "jane@example.org"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

func TestChangePasswordResendAndExpiry(t *testing.T) {
	e := pgPageEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	b := e.browser()
	id1 := resetIDOf(t, b.post("/forgot-password", "login_name", "jane", "provider_code", "ACME", "email", "jane@example.org"))
	e.drain()
	tok1 := e.resetToken("ACME", "jane")

	e.clock.Add(2 * time.Minute)
	r := b.post("/change-password/" + id1 + "/resend")
	id2 := resetIDOf(t, r)
	if id2 == id1 || !strings.HasSuffix(r.header.Get("Location"), "?resent=1") {
		t.Fatalf("resend went to %q", r.header.Get("Location"))
	}
	isPage(t, b.follow(r), http.StatusOK, "a new Password token was sent (use the latest one) to the email; it is valid for 5 minutes.")
	e.drain()
	tok2 := e.resetToken("ACME", "jane")
	if tok2 == tok1 {
		t.Fatal("resend issued no new token")
	}
	isPage(t, b.post("/change-password/"+id2, "token", tok1, "new_password", "Fresh-start-2030", "confirm_password", "Fresh-start-2030"),
		http.StatusBadRequest, sentence(domain.ErrTokenSuperseded.Message))

	// Five minutes after the resend, the page and the Resend button say so, in the seed's words.
	e.clock.Add(5 * time.Minute)
	expired := "The Password token has expired; go back to the login page and click Forgot Password? again."
	isPage(t, b.get("/change-password/"+id2), http.StatusOK, expired, `<a class="button" href="/forgot-password">Forgot Password?</a>`)
	isPage(t, b.post("/change-password/"+id2+"/resend"), http.StatusGone, expired)
	isPage(t, b.post("/change-password/"+id2, "token", tok2, "new_password", "Fresh-start-2030", "confirm_password", "Fresh-start-2030"),
		http.StatusBadRequest, expired)

	// A request that matched nothing answers the same way.
	u1 := resetIDOf(t, b.post("/forgot-password", "login_name", "ghost", "provider_code", "ACME", "email", "ghost@example.org"))
	seeOther(t, b.post("/change-password/"+u1+"/resend"), "")
	e.clock.Add(6 * time.Minute)
	isPage(t, b.post("/change-password/"+u1+"/resend"), http.StatusGone, expired)
	e.drain()
}

// The Change Password page answers wrong tokens alike whether or not the request matched:
// the fifth wrong token (which revokes a live one) and a wrong token after the reset id's
// lifetime give the same page as for a request made with a wrong email.
func TestChangePasswordPageAnswersWrongTokensAlike(t *testing.T) {
	e := pgPageEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	hdr := map[string]string{"X-Request-Id": "same-request-id"}
	type answer struct {
		status int
		body   string
		header map[string]string
	}
	tries := func(email string) []answer {
		t.Helper()
		e.clock.Add(6 * time.Minute) // past the earlier token and the throttling
		b := e.browser()
		id := resetIDOf(t, b.post("/forgot-password", "login_name", "jane", "provider_code", "ACME", "email", email))
		e.drain()
		var got []answer
		submit := func() {
			r := b.do(http.MethodPost, "/change-password/"+id, url.Values{"token": {"ZZZZZZZZZZ"},
				"new_password": {"Fresh-start-2030"}, "confirm_password": {"Fresh-start-2030"}}, hdr)
			a := answer{status: r.status, body: strings.ReplaceAll(string(r.body), id, "RESET-ID"), header: map[string]string{}}
			for k, v := range r.header {
				if k != "Date" {
					a.header[k] = strings.ReplaceAll(strings.Join(v, "\n"), id, "RESET-ID")
				}
			}
			got = append(got, a)
		}
		for range 5 {
			submit()
		}
		e.clock.Add(5 * time.Minute)
		submit()
		return got
	}
	wrong := tries("someone@example.org")
	right := tries("jane@example.org")
	if u := e.user("ACME", "jane"); u.Token == nil || u.Token.State != domain.TokenRevoked {
		t.Fatal("the matched request's token was not revoked by five wrong tokens")
	}
	for i := range wrong {
		if !reflect.DeepEqual(wrong[i], right[i]) {
			t.Errorf("try %d: wrong email %d %v\n%s\n----\nright email %d %v\n%s", i+1,
				wrong[i].status, wrong[i].header, wrong[i].body, right[i].status, right[i].header, right[i].body)
		}
	}
	if right[4].status != http.StatusBadRequest || !strings.Contains(right[4].body, html.EscapeString(sentence(domain.ErrInvalidToken.Message))) {
		t.Errorf("fifth wrong token: %d\n%s", right[4].status, right[4].body)
	}
	if !strings.Contains(right[5].body, html.EscapeString(sentence(domain.ErrResendAfterExpiry.Message))) {
		t.Errorf("after the lifetime:\n%s", right[5].body)
	}
}

func TestChangePasswordEmailLink(t *testing.T) {
	e := pgPageEnv(t, nil)
	b := e.browser()
	id := resetIDOf(t, b.post("/forgot-password", "login_name", "Jane", "provider_code", "acme", "email", "jane@example.org"))
	seeOther(t, b.get("/change-password?provider=ACME&login=jane"), "/change-password/"+id)
	seeOther(t, b.get("/change-password"), "/change-password/"+id)
	isPage(t, b.get("/change-password?provider=ACME&login=joe"), http.StatusOK, "in the browser where you submitted the Reset Password page")
	isPage(t, e.browser().get("/change-password?provider=ACME&login=jane"), http.StatusOK, "Forgot Password?")
	e.drain()
}

func TestConfigurePages(t *testing.T) {
	e := pageEnv(t, nil)
	boss := e.browser()
	boss.login("ACME", "boss", bossPW)
	seeOther(t, boss.post("/admin/users/jane/self-reset/enable"), "")

	b := e.browser()
	b.login("ACME", "jane", janePW)
	isPage(t, b.get("/settings"), http.StatusOK, "Enabled, not configured yet", `<a href="/settings/self-reset">Configure</a>`)
	isPage(t, b.get("/settings/self-reset"), http.StatusOK, `<label for="password">Password</label>`, ">Verify</button>")

	// Steps 2–4 need step 1 first.
	seeOther(t, b.post("/settings/self-reset/email", "email", "jane@example.org"), "/settings/self-reset?reauth=1")
	isPage(t, b.get("/settings/self-reset?reauth=1"), http.StatusOK, sentence(domain.ErrReauthRequired.Message))
	seeOther(t, b.post("/settings/self-reset/configure"), "/settings/self-reset?reauth=1")

	isPage(t, b.post("/settings/self-reset/verify-password", "password", "wrong-password"), http.StatusUnauthorized, "The password is not correct.")
	isPage(t, b.post("/settings/self-reset/verify-password"), http.StatusBadRequest, "Enter your login Password.")
	seeOther(t, b.post("/settings/self-reset/verify-password", "password", janePW), "/settings/self-reset")
	r := b.get("/settings/self-reset")
	isPage(t, r, http.StatusOK, "Self Password Reset Configuration", `<label for="email">Email</label>`, ">Verify</button>")
	hasNot(t, r, `name="password"`)

	isPage(t, b.post("/settings/self-reset/email", "email", "not-an-email"), http.StatusBadRequest, "Enter a valid email address.", `value="not-an-email"`)
	seeOther(t, b.post("/settings/self-reset/email", "email", "jane@example.org"), "/settings/self-reset?sent=1")
	isPage(t, b.get("/settings/self-reset?sent=1"), http.StatusOK, "A 6 digit code was sent", "Enter the 6 digit code that has been sent to",
		"jane@example.org", `inputmode="numeric"`, ">Submit</button>", "valid for the next 10 minutes")

	code := e.emailCode("ACME", "jane")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	isPage(t, b.post("/settings/self-reset/email/verify", "code", wrong), http.StatusBadRequest, "The code is not correct.")
	isPage(t, b.post("/settings/self-reset/configure"), http.StatusConflict, sentence(domain.ErrEmailNotVerified.Message))
	seeOther(t, b.post("/settings/self-reset/email/verify", "code", code), "/settings/self-reset?verified=1")
	isPage(t, b.get("/settings/self-reset?verified=1"), http.StatusOK, "Click Update to complete the configuration.", ">Update</button>")

	seeOther(t, b.post("/settings/self-reset/configure"), "/settings?configured=1")
	masked := domain.MaskEmail("jane@example.org")
	isPage(t, b.get("/settings?configured=1"), http.StatusOK, "Self Password Reset is configured.", "Configured with "+masked)
	r = b.get("/settings/self-reset")
	isPage(t, r, http.StatusOK, "Currently configured with <strong>"+masked+"</strong>")
	if u := e.user("ACME", "jane"); !u.Configured || u.RecoveryEmail != "jane@example.org" {
		t.Errorf("not configured: %+v", u)
	}

	// The step-up lasts 10 minutes.
	e.clock.Add(10*time.Minute + time.Second)
	seeOther(t, b.post("/settings/self-reset/email", "email", "jane2@example.org"), "/settings/self-reset?reauth=1")

	// Not enabled for the user; not allowed for the provider.
	j := e.browser()
	j.login("ACME", "joe", joePW)
	r = j.get("/settings")
	isPage(t, r, http.StatusOK, "Not enabled", sentence(domain.ErrUserNotEnabled.Message))
	hasNot(t, r, `href="/settings/self-reset"`)
	isPage(t, j.get("/settings/self-reset"), http.StatusConflict, sentence(domain.ErrUserNotEnabled.Message))
	n := e.browser()
	n.login("NOPE", "nuser", nuserPW)
	isPage(t, n.get("/settings"), http.StatusOK, sentence(domain.ErrProviderNotAllowed.Message))
	isPage(t, n.get("/settings/self-reset"), http.StatusConflict, sentence(domain.ErrProviderNotAllowed.Message))
}

func TestAdminPages(t *testing.T) {
	e := pgPageEnv(t, nil)
	e.projectAdminUsers(domain.ProviderStream("ACME"), domain.ProviderStream("NOPE"),
		domain.UserStream("ACME", "boss"), domain.UserStream("ACME", "jane"), domain.UserStream("ACME", "joe"),
		domain.UserStream("NOPE", "nadmin"), domain.UserStream("NOPE", "nuser"))
	b := e.browser()
	b.login("ACME", "boss", bossPW)

	r := b.get("/admin/users")
	isPage(t, r, http.StatusOK, "Bo Boss", "Jane Doe", "Joe Bloggs", `action="/admin/users/joe/self-reset/enable"`)
	hasNot(t, r, "Ned User") // another provider's users
	hasNot(t, r, "Self Password Reset is not enabled for the provider")

	r = b.post("/admin/users/jane/self-reset/enable", "q", "", "cursor", "")
	seeOther(t, r, "/admin/users?changed=jane#user-jane")
	if !e.user("ACME", "jane").SelfResetEnabled {
		t.Fatal("jane was not enabled")
	}
	// The read model has not seen the change; the page shows jane from her stream.
	isPage(t, b.get("/admin/users?changed=jane"), http.StatusOK, "Self Password Reset is now enabled for jane.",
		`action="/admin/users/jane/self-reset/disable"`, ">Disable</button>")
	seeOther(t, b.post("/admin/users/jane/self-reset/disable", "q", "ja"), "/admin/users?q=ja&changed=jane#user-jane")
	if e.user("ACME", "jane").SelfResetEnabled {
		t.Fatal("jane was not disabled")
	}
	isPage(t, b.post("/admin/users/ghost/self-reset/enable"), http.StatusNotFound, "No such user.", "Jane Doe")

	// Search and paging.
	r = b.get("/admin/users?q=JO")
	isPage(t, r, http.StatusOK, "Joe Bloggs", `value="JO"`)
	hasNot(t, r, "Jane Doe")
	r = b.get("/admin/users?limit=2")
	isPage(t, r, http.StatusOK, "Bo Boss", "Jane Doe", "Next page")
	hasNot(t, r, "Joe Bloggs")
	next := regexp.MustCompile(`href="(/admin/users\?[^"]+)">Next page`).FindSubmatch(r.body)
	if next == nil {
		t.Fatalf("no next page link:\n%s", r.body)
	}
	r = b.get(html.UnescapeString(string(next[1])))
	isPage(t, r, http.StatusOK, "Joe Bloggs", "First page")
	hasNot(t, r, "Jane Doe")
	isPage(t, b.get("/admin/users?limit=0"), http.StatusBadRequest)
	isPage(t, b.get("/admin/users?cursor=!!"), http.StatusBadRequest)

	// Cross-origin form posts are refused before they do anything.
	for _, hdr := range []map[string]string{{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "", "Origin": "https://evil.example"}} {
		r = b.do(http.MethodPost, "/admin/users/joe/self-reset/enable", url.Values{}, hdr)
		expect(t, r, http.StatusForbidden, CodeCrossOrigin)
	}
	if e.user("ACME", "joe").SelfResetEnabled {
		t.Fatal("a cross-origin post enabled joe")
	}

	// Not a user-admin.
	j := e.browser()
	j.login("ACME", "jane", janePW)
	isPage(t, j.get("/admin"), http.StatusForbidden, "User Administrative role")
	isPage(t, j.get("/admin/users"), http.StatusForbidden)
	isPage(t, j.post("/admin/users/joe/self-reset/enable"), http.StatusForbidden)
	if e.user("ACME", "joe").SelfResetEnabled {
		t.Fatal("a non-admin enabled joe")
	}

	// A provider that does not allow Self Password Reset.
	n := e.browser()
	n.login("NOPE", "nadmin", nadmPW)
	isPage(t, n.get("/admin/users"), http.StatusOK, "Self Password Reset is not enabled for the provider NOPE", "Ned User", "disabled>Enable</button>")
	isPage(t, n.post("/admin/users/nuser/self-reset/enable"), http.StatusConflict, sentence(domain.ErrProviderNotAllowed.Message))
}

func TestPagesCrossOrigin(t *testing.T) {
	e := pageEnv(t, nil)
	b := e.browser()
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{"/login", url.Values{"login_name": {"jane"}, "provider_code": {"ACME"}, "password": {janePW}}},
		{"/forgot-password", url.Values{"login_name": {"jane"}, "provider_code": {"ACME"}, "email": {"jane@example.org"}}},
		{"/logout", url.Values{}},
	} {
		r := b.do(http.MethodPost, c.path, c.form, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
		expect(t, r, http.StatusForbidden, CodeCrossOrigin)
		if r.header.Get("Set-Cookie") != "" {
			t.Errorf("%s: a refused request set a cookie", c.path)
		}
	}
	// Same-site but cross-origin (another port on this host) is refused too.
	r := b.do(http.MethodPost, "/login", url.Values{"login_name": {"jane"}, "provider_code": {"ACME"}, "password": {janePW}},
		map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"})
	expect(t, r, http.StatusForbidden, CodeCrossOrigin)
	b.login("ACME", "jane", janePW)
	r = b.do(http.MethodPost, "/logout", url.Values{}, map[string]string{"Sec-Fetch-Site": "cross-site"})
	expect(t, r, http.StatusForbidden, CodeCrossOrigin)
	isPage(t, b.get("/settings"), http.StatusOK, "Jane Doe") // still signed in
}

func TestPagesRateLimits(t *testing.T) {
	e := pgPageEnv(t, func(c *Config) { c.RateLimitPerIP = 20 }) // bursts of 2, a token every 3 s
	b := e.browser()
	for range 2 {
		isPage(t, b.post("/login", "login_name", "jane", "provider_code", "ACME", "password", "wrong-password"), http.StatusUnauthorized)
	}
	r := b.post("/login", "login_name", "jane", "provider_code", "ACME", "password", janePW)
	isPage(t, r, http.StatusTooManyRequests, "Too many attempts; wait 3 seconds and try again.")
	if r.header.Get("Retry-After") != "3" {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// The API's login shares the budget.
	expect(t, e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW}}),
		http.StatusTooManyRequests, CodeRateLimited)
	// Forgot Password has its own.
	for range 2 {
		resetIDOf(t, b.post("/forgot-password", "login_name", "jane", "provider_code", "ACME", "email", "x@example.org"))
	}
	isPage(t, b.post("/forgot-password", "login_name", "jane", "provider_code", "ACME", "email", "x@example.org"),
		http.StatusTooManyRequests, "Too many attempts")
	e.drain()
}

func TestPageFormLimits(t *testing.T) {
	e := pageEnv(t, nil)
	b := e.browser()
	huge := strings.Repeat("x", MaxBodyBytes)
	r := b.post("/login", "login_name", "jane", "provider_code", "ACME", "password", huge)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("huge form: %d", r.status)
	}
	long := strings.Repeat("a", 300)
	isPage(t, b.post("/login", "login_name", long, "provider_code", "ACME", "password", "x"), http.StatusUnauthorized)
	isPage(t, b.post("/forgot-password", "login_name", long, "provider_code", "ACME", "email", "x@example.org"), http.StatusBadRequest, "at most 254 characters")
}

var pageRow = regexp.MustCompile("^\\|[^|]+\\|\\s*(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)\\s*\\|\\s*`([^`]+)`\\s*\\|")

// TestPageRoutesAreDocumented checks the routes MountPages adds against docs/api.md's
// "HTML pages" table, both ways (TestRoutesAreDocumented checks the API's).
func TestPageRoutesAreDocumented(t *testing.T) {
	srv := NewServer(Config{Commands: &commands.Handler{}, Resets: &reset.Service{}, Sessions: NewPGSessions(nil)})
	defer srv.Close(t.Context())
	walk := func() map[string]bool {
		routes := map[string]bool{}
		if err := srv.Router().Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
			path, err := route.GetPathTemplate()
			if err != nil {
				return nil
			}
			methods, err := route.GetMethods()
			if err != nil {
				t.Errorf("route %s has no methods", path)
				return nil
			}
			for _, m := range methods {
				routes[m+" "+path] = true
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return routes
	}
	api := walk()
	srv.MountPages()
	pages := map[string]bool{}
	for r := range walk() {
		if !api[r] {
			pages[r] = true
		}
	}
	if len(pages) < 20 {
		t.Fatalf("MountPages added only %d routes", len(pages))
	}

	f, err := os.Open(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	documented := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := pageRow.FindStringSubmatch(sc.Text()); m != nil {
			key := m[1] + " " + m[2]
			if documented[key] {
				t.Errorf("docs/api.md lists page %s twice", key)
			}
			documented[key] = true
		}
	}
	for r := range pages {
		if !documented[r] {
			t.Errorf("page route %s is not in docs/api.md's HTML pages table", r)
		}
	}
	for r := range documented {
		if !pages[r] {
			t.Errorf("docs/api.md's HTML pages table lists %s, which MountPages does not add", r)
		}
	}
}

// The templates parse and the helpers say things the way the pages need.
func TestPageTemplatesParse(t *testing.T) {
	for _, name := range pageNames {
		if pageTemplates[name].Lookup("content") == nil {
			t.Errorf("template %s defines no content", name)
		}
	}
	if staticAssets["style.css"].version == "" {
		t.Error("no stylesheet")
	}
	for _, c := range []struct{ in, want string }{{"the code is not correct", "The code is not correct."},
		{"Forgot Password?", "Forgot Password?"}, {"", ""}} {
		if got := sentence(c.in); got != c.want {
			t.Errorf("sentence(%q) = %q", c.in, got)
		}
	}
	for d, want := range map[time.Duration]string{5 * time.Minute: "5 minutes", time.Minute: "1 minute", 90 * time.Second: "2 minutes",
		time.Hour: "1 hour", 30 * time.Second: "30 seconds"} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
