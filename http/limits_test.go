package http

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/ratelimit"
)

// TestReplicasShareOnePerIPBudget is issue 8's "3 replicas with a per-IP limit of 30/min
// let through 30 ± 3 requests a minute from one IP": three servers, each with its own
// pool, limiter and loopback listener, on one database, fed round-robin from 127.0.0.1
// twice a simulated second for five simulated minutes.
func TestReplicasShareOnePerIPBudget(t *testing.T) {
	e := newPGEnv(t, nil)
	const perMinute, minutes, perSecond = 30, 5, 2
	var replicas []*httptest.Server
	for range 3 {
		pool, err := pgxpool.New(e.ctx, e.pg().Config().ConnString())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		srv := NewServer(Config{Commands: e.cmds, Users: NewPGUserLister(pool), Sessions: NewPGSessions(pool),
			Resets: e.resets, Clock: e.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			RateLimiter: ratelimit.New(pool, e.clock), RateLimitPerIP: perMinute, RateLimitPerAccount: 0})
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(func() { ts.Close(); _ = srv.Close(context.Background()) })
		replicas = append(replicas, ts)
	}
	body := []byte(`{"provider_code":"ACME","login_name":"jane","password":"` + janePW + `"}`)

	allowed := make([]int, minutes)
	for i := range minutes * 60 * perSecond {
		ts := replicas[i%len(replicas)]
		q, err := http.NewRequest(http.MethodPost, ts.URL+"/api/v1/sessions", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		q.Header.Set("Content-Type", "application/json")
		res, err := ts.Client().Do(q)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(res.Body)
		res.Body.Close()
		e.checkContract(q, body, res.StatusCode, res.Header, out)
		switch res.StatusCode {
		case http.StatusCreated:
			allowed[i/(60*perSecond)]++
		case http.StatusTooManyRequests:
			// The wait is at most one token's interval (2 s), never 0.
			if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60/perMinute {
				t.Fatalf("request %d: Retry-After %q", i, res.Header.Get("Retry-After"))
			}
		default:
			t.Fatalf("request %d: status %d", i, res.StatusCode)
		}
		e.clock.Add(time.Second / perSecond)
	}
	t.Logf("let through per simulated minute across 3 replicas: %v (offered %d a minute)", allowed, 60*perSecond)
	// The first minute also spends the burst a new client starts with (a tenth of the
	// rate: 3 at once, then one every 2 s), which stays within the tolerance; from then
	// on the rate holds. Per-process buckets would let through three times as much.
	for m, n := range allowed {
		if n < perMinute-3 || n > perMinute+3 {
			t.Errorf("minute %d: %d let through, want %d ± 3", m+1, n, perMinute)
		}
	}
}

// TestUnreachableBudgetsAnswer503: when the budgets cannot be read, a limited route can
// neither let the request through uncounted nor call it over budget: it answers 503
// unavailable, on the API and the pages alike. Routes with the limits off do not care.
func TestUnreachableBudgetsAnswer503(t *testing.T) {
	// Port 1 on loopback: nothing listens there, so every attempt fails at once.
	dead, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dead.Close)
	login := req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW}}

	e := pageEnv(t, func(c *Config) { c.RateLimiter, c.RateLimitPerIP = ratelimit.New(dead, c.Clock), 30 })
	r := e.do(login)
	expect(t, r, http.StatusServiceUnavailable, CodeUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if !strings.Contains(e.logs.String(), "rate limit unavailable") {
		t.Error("the failure was not logged")
	}
	isPage(t, e.browser().post("/login", "login_name", "jane", "provider_code", "ACME", "password", janePW),
		http.StatusServiceUnavailable, "temporarily unavailable")

	off := newEnv(t, func(c *Config) {
		c.RateLimiter, c.RateLimitPerIP, c.RateLimitPerAccount = ratelimit.New(dead, c.Clock), 0, 0
	})
	expect(t, off.do(login), http.StatusCreated, "")
}

func TestContextErrorsAreUnavailable(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("password: waiting for a hashing slot: %w", context.Canceled),
		fmt.Errorf("wrapped: %w", context.DeadlineExceeded),
	} {
		if e := ErrorFor(err); e.Status != http.StatusServiceUnavailable || e.Code != CodeUnavailable {
			t.Errorf("%v: %d %s", err, e.Status, e.Code)
		}
	}
	if e := ErrorFor(errors.New("boom")); e.Status != http.StatusInternalServerError {
		t.Errorf("other errors: %d", e.Status)
	}
}

// TestRequestTimeoutAnswers503: work that outlives the request's deadline (here: a
// deadline already past when the handler starts) ends in 503 unavailable, not 500.
func TestRequestTimeoutAnswers503(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequestTimeout = time.Nanosecond })
	r := e.do(req{Method: "POST", Path: "/api/v1/sessions", Body: map[string]string{"provider_code": "ACME", "login_name": "jane", "password": janePW}})
	expect(t, r, http.StatusServiceUnavailable, CodeUnavailable)
}
