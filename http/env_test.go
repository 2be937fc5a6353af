package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/memory"
	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/internal/teststore"
	"selfreset/ratelimit"
	"selfreset/reset"
	"selfreset/secret"
)

type env struct {
	t        *testing.T
	ctx      context.Context
	clock    *testkit.Clock
	store    eventstore.Store
	pool     *pgxpool.Pool // the test's PostgreSQL database; nil on the memory tier (use pg)
	sessions Sessions
	cmds     *commands.Handler
	keyring  *secret.Keyring
	resets   *reset.Service
	srv      *Server
	ts       *httptest.Server
	logs     *testkit.Buffer
	// contract validates every request and answer of do against docs/openapi.json.
	contract *contract
}

// Accounts the tests use. ACME allows Self Password Reset; NOPE does not.
const (
	bossPW  = "Boss-pass-4417"
	janePW  = "Jane-pass-8812"
	joePW   = "Joe-pass-99173"
	nadmPW  = "Nadm-pass-3321"
	nuserPW = "Nuser-pass-5510"
)

// memoryTier reports whether newEnv builds its server without PostgreSQL: under -short
// (the tier without a database) or when the tests are asked to run on the memory event
// store (internal/teststore). Everything else runs on PostgreSQL as in production.
func memoryTier() bool {
	return testing.Short() || os.Getenv(teststore.EnvKind) == teststore.KindMemory
}

// newEnv starts a server on loopback with two providers and a few users. On the memory
// tier (memoryTier) the events are in memory, the sessions in memSessions and the budgets
// in testkit.RateLimiter, and the parts that live only in PostgreSQL (the reset intake
// and its worker, the admin user list) are guards that fail the test if used: a test
// that needs them builds its env with newPGEnv. Otherwise everything is in a fresh PostgreSQL
// database, with a worker of the reset intake. mod may change the server's Config (and
// replace Commands or Resets) before it is built.
func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	if memoryTier() {
		return newMemoryEnv(t, mod)
	}
	return newEnvWorker(t, mod, nil)
}

// newPGEnv is newEnv on PostgreSQL whatever the tier, for tests that need the reset
// intake, read models or tables; under -short it skips.
func newPGEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	return newEnvWorker(t, mod, nil)
}

// newMemoryEnv is newEnv on the memory tier.
func newMemoryEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	store := memory.New()
	t.Cleanup(store.Close)
	e, logger := newEnvBase(t, store)
	var err error
	e.resets, err = reset.New(reset.Config{Commands: e.cmds, Keyring: e.keyring, Clock: e.clock, Intake: needsPG{t, "the reset intake"}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	e.sessions = newMemSessions()
	e.start(Config{Commands: e.cmds, Resets: e.resets, Users: needsPG{t, "the admin user list read model"}, Sessions: e.sessions,
		Clock: e.clock, Logger: logger, RateLimiter: testkit.NewRateLimiter(e.clock)}, mod)
	return e
}

// needsPG stands where newMemoryEnv has no PostgreSQL behind a port: any use fails the
// test, naming what it needs.
type needsPG struct {
	t    *testing.T
	what string
}

func (n needsPG) fail() error {
	n.t.Errorf("this test uses %s, which is in PostgreSQL: build its env with newPGEnv", n.what)
	return fmt.Errorf("%s needs PostgreSQL", n.what)
}

func (n needsPG) Send(context.Context, any) error { return n.fail() }

func (n needsPG) ListUsers(context.Context, UserQuery) ([]UserSummary, error) { return nil, n.fail() }

// newEnvBase makes the parts every env shares (clock, keys, logs, commands over store)
// and seeds the accounts.
func newEnvBase(t *testing.T, store eventstore.Store) (*env, *slog.Logger) {
	t.Helper()
	clock := testkit.NewClock(time.Date(2030, 1, 2, 9, 0, 0, 0, time.UTC))
	keyring := testkit.Keyring(t, "k1")
	logs := &testkit.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cmds := testkit.Handler(t, store, clock, keyring, func(c *commands.Config) { c.Logger = logger })
	e := &env{t: t, ctx: context.Background(), clock: clock, store: store, cmds: cmds, keyring: keyring, logs: logs, contract: loadContract(t)}
	e.seed()
	return e, logger
}

// start lets mod change cfg, builds the server and serves it on loopback until t ends.
func (e *env) start(cfg Config, mod func(*Config)) {
	e.t.Helper()
	if mod != nil {
		mod(&cfg)
	}
	e.srv = NewServer(cfg)
	e.ts = httptest.NewServer(e.srv.Handler())
	e.t.Cleanup(func() {
		e.ts.Close()
		if err := e.srv.Close(context.Background()); err != nil {
			e.t.Error(err)
		}
	})
}

// pg is the test's PostgreSQL database; on the memory tier it fails the test.
func (e *env) pg() *pgxpool.Pool {
	e.t.Helper()
	if e.pool == nil {
		e.t.Fatal("this test reads PostgreSQL tables: build its env with newPGEnv")
	}
	return e.pool
}

// newEnvWorker is newPGEnv whose intake worker runs the commands wrap returns.
func newEnvWorker(t *testing.T, mod func(*Config), wrap func(reset.Commands) reset.Commands) *env {
	t.Helper()
	ctx := context.Background()
	store, err := postgres.Open(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pool := store.Pool()
	for _, migrate := range []func(context.Context, *pgxpool.Pool) error{Migrate, ratelimit.Migrate, reset.Migrate} {
		if err := migrate(ctx, pool); err != nil {
			t.Fatal(err)
		}
	}
	e, logger := newEnvBase(t, store)
	e.pool, e.sessions = pool, NewPGSessions(pool)

	bus, err := reset.NewBus(pool, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	e.resets, err = reset.New(reset.Config{Commands: e.cmds, Keyring: e.keyring, Clock: e.clock, Intake: bus, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	var workerCmds reset.Commands = e.cmds
	if wrap != nil {
		workerCmds = wrap(e.cmds)
	}
	e.startWorker(workerCmds, logger)

	e.start(Config{Commands: e.cmds, Resets: e.resets, Users: NewPGUserLister(pool), Sessions: e.sessions,
		Clock: e.clock, Logger: logger, Ready: PingAll(pool),
		RateLimiter: ratelimit.New(pool, e.clock)}, mod)
	return e
}

// startWorker runs an intake worker until the test ends.
func (e *env) startWorker(cmds reset.Commands, logger *slog.Logger) {
	e.t.Helper()
	w, err := reset.NewWorker(e.ctx, reset.WorkerConfig{Pool: e.pg(), Commands: cmds, Keyring: e.keyring,
		Logger: logger, Concurrency: 4, PollInterval: 5 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	e.t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			e.t.Error(err)
		}
	})
	select {
	case <-w.Running():
	case <-time.After(10 * time.Second):
		e.t.Fatal("the intake worker did not start")
	}
}

// drain waits until every queued Forgot Password and Resend command was decided.
func (e *env) drain() {
	e.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := reset.Pending(e.ctx, e.pg())
		if err != nil {
			e.t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d intake commands still pending", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) seed() {
	e.t.Helper()
	sys := domain.SystemActor("test")
	must := func(err error) {
		e.t.Helper()
		if err != nil {
			e.t.Fatal(err)
		}
	}
	must(e.cmds.RegisterProvider(e.ctx, commands.RegisterProvider{Actor: sys, Code: "ACME", Name: "Acme Care", AllowSelfReset: true}))
	must(e.cmds.RegisterProvider(e.ctx, commands.RegisterProvider{Actor: sys, Code: "NOPE", Name: "Nope Homes"}))
	for _, u := range []commands.RegisterUser{
		{Provider: "ACME", Login: "boss", DisplayName: "Bo Boss", Password: bossPW, Roles: []string{domain.RoleUserAdmin}},
		{Provider: "ACME", Login: "jane", DisplayName: "Jane Doe", Password: janePW},
		{Provider: "ACME", Login: "joe", DisplayName: "Joe Bloggs", Password: joePW},
		{Provider: "NOPE", Login: "nadmin", DisplayName: "Nora Admin", Password: nadmPW, Roles: []string{domain.RoleUserAdmin}},
		{Provider: "NOPE", Login: "nuser", DisplayName: "Ned User", Password: nuserPW},
	} {
		u.Actor = sys
		must(e.cmds.RegisterUser(e.ctx, u))
	}
}

// resp is an answer as the client saw it.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r resp) errCode() string {
	var b struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.body, &b)
	return b.Error.Code
}

func (r resp) errMessage() string {
	var b struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.body, &b)
	return b.Error.Message
}

// req is one request: Body is sent as is when a string or []byte, else as JSON.
type req struct {
	Method, Path string
	Token        string
	Body         any
	Header       map[string]string
	// Invalid marks a request that breaks docs/openapi.json on purpose (malformed or
	// incomplete body, bad parameter, no credentials); it must fail validation, and its
	// answer must still conform.
	Invalid bool
}

func (e *env) do(q req) resp {
	e.t.Helper()
	var raw []byte // kept for the contract check
	switch b := q.Body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	case io.Reader:
		var err error
		if raw, err = io.ReadAll(b); err != nil {
			e.t.Fatal(err)
		}
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			e.t.Fatal(err)
		}
	}
	var body io.Reader
	switch q.Body.(type) {
	case nil:
	case io.Reader:
		body = io.MultiReader(bytes.NewReader(raw)) // length unknown, as the test's reader had it
	default:
		body = bytes.NewReader(raw)
	}
	r, err := http.NewRequest(q.Method, e.ts.URL+q.Path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if q.Token != "" {
		r.Header.Set("Authorization", "Bearer "+q.Token)
	}
	for k, v := range q.Header {
		r.Header.Set(k, v)
	}
	res, err := e.ts.Client().Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	x := exchange{method: q.Method, url: r.URL.String(), reqHeader: r.Header, reqBody: raw,
		status: res.StatusCode, header: res.Header, body: got, invalid: q.Invalid}
	for _, p := range e.contract.check(e.ctx, x) {
		e.t.Errorf("docs/openapi.json: %s %s: %s", q.Method, q.Path, p)
	}
	return resp{status: res.StatusCode, header: res.Header, body: got}
}

// checkContract validates against docs/openapi.json an exchange a test made without do
// (its own client or handler), so that every API answer a test sees is checked.
func (e *env) checkContract(r *http.Request, reqBody []byte, status int, header http.Header, body []byte) {
	e.t.Helper()
	url := r.URL.String()
	if r.URL.Host == "" {
		url = "http://" + r.Host + url // a request made for a handler, without a server
	}
	x := exchange{method: r.Method, url: url, reqHeader: r.Header, reqBody: reqBody, status: status, header: header, body: body}
	for _, p := range e.contract.check(e.ctx, x) {
		e.t.Errorf("docs/openapi.json: %s %s: %s", r.Method, r.URL.Path, p)
	}
}

// expect fails unless the answer has status and (when code != "") error code.
func expect(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && r.errCode() != code) {
		t.Fatalf("got %d %s; want %d %s", r.status, r.body, status, code)
	}
}

func (e *env) login(code, login, pw string) string {
	e.t.Helper()
	r := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": code, "login_name": login, "password": pw}})
	expect(e.t, r, http.StatusCreated, "")
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	r.decode(e.t, &out)
	if out.Token == "" {
		e.t.Fatalf("no token in %s", r.body)
	}
	return out.Token
}

func (e *env) user(code, login string) domain.User {
	e.t.Helper()
	u, err := e.cmds.LoadUser(e.ctx, code, login)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// emailCode is the code the user would find in their mailbox.
func (e *env) emailCode(code, login string) string {
	e.t.Helper()
	u := e.user(code, login)
	if u.Code == nil {
		e.t.Fatalf("%s/%s has no pending code", code, login)
	}
	v, err := e.keyring.Value(secret.KindEmailCode, u.Code.KeyID, u.Code.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// resetToken is the password token the user would find in their mailbox.
func (e *env) resetToken(code, login string) string {
	e.t.Helper()
	u := e.user(code, login)
	if u.Token == nil {
		e.t.Fatalf("%s/%s has no token", code, login)
	}
	v, err := e.keyring.Value(secret.KindResetToken, u.Token.KeyID, u.Token.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) stepUp(token, pw string) {
	e.t.Helper()
	expect(e.t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/verify-password", Token: token, Body: map[string]string{"password": pw}}), http.StatusOK, "")
}

// enableAndConfigure has boss enable login at ACME and the user configure email; it
// returns the user's session token.
func (e *env) enableAndConfigure(login, pw, email string) string {
	e.t.Helper()
	boss := e.login("ACME", "boss", bossPW)
	expect(e.t, e.do(req{Method: "PUT", Path: "/api/v1/providers/ACME/users/" + login + "/self-reset", Token: boss}), http.StatusNoContent, "")
	tok := e.login("ACME", login, pw)
	e.stepUp(tok, pw)
	expect(e.t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email", Token: tok, Body: map[string]string{"email": email}}), http.StatusAccepted, "")
	expect(e.t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/email/verify", Token: tok, Body: map[string]string{"code": e.emailCode("ACME", login)}}), http.StatusOK, "")
	expect(e.t, e.do(req{Method: "POST", Path: "/api/v1/me/self-reset/configure", Token: tok}), http.StatusOK, "")
	return tok
}

type accepted struct {
	ResetID          string `json:"reset_id"`
	ExpiresInSeconds int    `json:"expires_in_seconds"`
}

// forgot submits the Reset Password page and waits for the background work.
func (e *env) forgot(code, login, email string) (accepted, resp) {
	e.t.Helper()
	r := e.do(req{Method: "POST", Path: "/api/v1/password-resets", Body: map[string]string{"login_name": login, "provider_code": code, "email": email}})
	expect(e.t, r, http.StatusAccepted, "")
	var a accepted
	r.decode(e.t, &a)
	e.drain()
	return a, r
}
