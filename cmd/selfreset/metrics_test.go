package main

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"selfreset/config"
	"selfreset/internal/testkit"
)

// startServe runs serve in process until the test ends; stop ends it early and checks
// that it stopped cleanly.
func startServe(t *testing.T, e cliEnv, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	out := &testkit.Buffer{}
	go func() {
		done <- run(ctx, append([]string{"--dev", "serve"}, args...), strings.NewReader(""), out, out, e.getenv)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != exitOK {
					t.Errorf("serve %v exited %d:\n%s", args, code, out.String())
				}
			case <-time.After(60 * time.Second):
				t.Errorf("serve %v did not stop within 60s:\n%s", args, out.String())
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// scrape reads /metrics in the text format.
func scrape(client *http.Client, addr string) (map[string]*dto.MetricFamily, error) {
	res, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(res.Body)
}

// series are the samples of one family whose labels include want: counter and gauge
// values, or a histogram's count.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) []float64 {
	var out []float64
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			out = append(out, m.GetCounter().GetValue())
		case m.Gauge != nil:
			out = append(out, m.GetGauge().GetValue())
		case m.Histogram != nil:
			out = append(out, float64(m.GetHistogram().GetSampleCount()))
		}
	}
	return out
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

// TestServeMetrics scrapes a web replica's /metrics while it takes requests, with no
// worker running: the events it and the CLI append pile up, so the projection lag rises
// and the Forgot Password commands wait in the intake. Then a worker starts; the same
// gauges, scraped from the web replica, return to 0.
func TestServeMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e[config.EnvRateLimitPerIP] = "1000"
	e[config.EnvRateLimitPerAccount] = "1" // one at once and one a minute: the budget refuses the rest, however slow the machine
	e.ok(t, "", "migrate")
	e.ok(t, "", "provider", "add", "--code", "ACME", "--name", "Acme Agency", "--allow-self-reset")
	e.ok(t, "B0b-has-a-long-passphrase\n", "user", "add", "--provider", "ACME", "--login", "bob", "--name", "Bob", "--password-stdin")

	web := maps.Clone(e)
	web[config.EnvAddr], web[config.EnvMetricsAddr] = freeAddr(t), freeAddr(t)
	startServe(t, web, "--role", "web")
	client := &http.Client{Timeout: 10 * time.Second}
	var (
		fams map[string]*dto.MetricFamily
		err  error
	)
	consumers := repConsumers()
	// The CLI's events are behind every consumer, none of which runs yet. The PostgreSQL
	// feed may hold a read back for a moment while another database's transaction starts
	// (eventstore/postgres, the watermark), so scrape until every lag shows.
	lagging := func() (map[string]float64, error) {
		out := map[string]float64{}
		for _, c := range consumers {
			lag := series(fams, "selfreset_projection_lag_events", map[string]string{"consumer": c})
			if len(lag) != 1 || lag[0] <= 0 {
				return nil, fmt.Errorf("consumer %s: lag %v before any consumer ran, want > 0 (the CLI appended events)", c, lag)
			}
			out[c] = lag[0]
		}
		return out, nil
	}
	var before map[string]float64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if fams, err = scrape(client, web[config.EnvMetricsAddr]); err == nil {
			if before, err = lagging(); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 60s: %v", err)
		}
	}

	// The load: wrong passwords for bob (the account budget of 1 refuses the rest),
	// a request no route matches, and Forgot Password for accounts that do not exist,
	// which only the worker will decide.
	statuses := map[string]int{} // "route status" → answers seen
	post := func(route, body string) {
		t.Helper()
		res, err := client.Post("http://"+web[config.EnvAddr]+route, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		statuses[fmt.Sprintf("%s %d", route, res.StatusCode)]++
	}
	for range 5 {
		post("/api/v1/sessions", `{"provider_code":"ACME","login_name":"bob","password":"not-bobs-password"}`)
	}
	const forgot = 6
	for i := range forgot {
		post("/api/v1/password-resets", fmt.Sprintf(`{"provider_code":"ACME","login_name":"ghost%d","email":"ghost%d@example.org"}`, i, i))
	}
	post("/api/v1/no-such-route", `{}`)
	if statuses["/api/v1/sessions 429"] != 4 || statuses[fmt.Sprintf("/api/v1/password-resets %d", http.StatusAccepted)] != forgot {
		t.Fatalf("answers %v: want 1 sign-in then 4 refused 429, and %d Forgot Password accepted", statuses, forgot)
	}

	if fams, err = scrape(client, web[config.EnvMetricsAddr]); err != nil {
		t.Fatal(err)
	}
	for key, n := range statuses {
		route, status, _ := strings.Cut(key, " ")
		if route == "/api/v1/no-such-route" {
			route = "unmatched" // paths no route matched are not series
		}
		got := series(fams, "selfreset_http_requests_total", map[string]string{"method": "POST", "route": route, "status": status})
		if sum(got) != float64(n) {
			t.Errorf("http_requests_total{route=%q,status=%s} = %v, want %d", route, status, got, n)
		}
	}
	if got := sum(series(fams, "selfreset_http_request_duration_seconds", map[string]string{"route": "/api/v1/password-resets"})); got != forgot {
		t.Errorf("request duration count %v, want %d", got, forgot)
	}
	if got := series(fams, "selfreset_rate_limit_refusals_total", map[string]string{"class": "login", "scope": "account"}); sum(got) != 4 {
		t.Errorf("rate-limit refusals %v, want 4", got)
	}
	if got := series(fams, "selfreset_commands_total", map[string]string{"command": "login", "outcome": "refused", "code": "invalid_credentials"}); sum(got) != 1 {
		t.Errorf("login refusals %v, want 1: the wrong password that got past the budget", got)
	}
	if got := sum(series(fams, "selfreset_command_duration_seconds", map[string]string{"command": "login"})); got != 1 {
		t.Errorf("login durations %v, want 1 (the 429s never reached the command)", got)
	}
	if got := sum(series(fams, "selfreset_password_hash_wait_seconds", nil)); got < 1 {
		t.Errorf("hash waits %v, want at least one per sign-in", got)
	}
	if got := series(fams, "selfreset_intake_queue_depth", map[string]string{"queue": "reset_request_token"}); sum(got) != forgot {
		t.Errorf("intake depth %v with no worker, want %d", got, forgot)
	}
	if got := series(fams, "selfreset_intake_oldest_message_age_seconds", map[string]string{"queue": "reset_request_token"}); len(got) != 1 || got[0] <= 0 {
		t.Errorf("oldest queued command age %v, want > 0", got)
	}
	for _, c := range consumers {
		lag := series(fams, "selfreset_projection_lag_events", map[string]string{"consumer": c})
		secs := series(fams, "selfreset_projection_lag_seconds", map[string]string{"consumer": c})
		if len(lag) != 1 || lag[0] <= before[c] || len(secs) != 1 || secs[0] <= 0 {
			t.Errorf("consumer %s under load: lag %v events (before %v), %v s; want it risen and > 0 s", c, lag, before[c], secs)
		}
		t.Logf("consumer %s: lag %v events before the load, %v after, %v s", c, before[c], lag, secs)
	}
	for _, src := range []string{"intake", "projections", "mail"} {
		if got := series(fams, "selfreset_scrape_source_up", map[string]string{"source": src}); len(got) != 1 || got[0] != 1 {
			t.Errorf("source %s up = %v", src, got)
		}
	}
	if got := series(fams, "selfreset_mail_oldest_pending_age_seconds", nil); len(got) != 1 || got[0] != 0 {
		t.Errorf("oldest pending mail age %v with nothing to mail, want 0", got)
	}

	// A worker decides the queued commands and feeds the consumers: everything the web
	// replica reports returns to 0.
	worker := maps.Clone(e)
	worker[config.EnvAddr] = freeAddr(t)
	started := time.Now()
	startServe(t, worker, "--role", "worker")
	var pending []string
	for deadline := started.Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if fams, err = scrape(client, web[config.EnvMetricsAddr]); err != nil {
			t.Fatal(err)
		}
		pending = pending[:0]
		for _, c := range consumers {
			for _, name := range []string{"selfreset_projection_lag_events", "selfreset_projection_lag_seconds"} {
				if got := series(fams, name, map[string]string{"consumer": c}); len(got) != 1 || got[0] != 0 {
					pending = append(pending, fmt.Sprintf("%s{%s}=%v", name, c, got))
				}
			}
		}
		for _, name := range []string{"selfreset_intake_queue_depth", "selfreset_intake_oldest_message_age_seconds"} {
			if got := series(fams, name, nil); len(got) != 2 || sum(got) != 0 {
				pending = append(pending, fmt.Sprintf("%s=%v", name, got))
			}
		}
		if len(pending) == 0 {
			t.Logf("every lag and the intake back to 0 %v after the worker started", time.Since(started).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back to 0 within 90s of starting a worker: %v", pending)
		}
	}
}

// A bad or taken metrics address stops serve with one line naming the variable, exit 2.
func TestServeBadMetricsAddr(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct{ name, addr string }{
		{"not host:port", "9464"},
		{"port in use", taken.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e[config.EnvAddr], e[config.EnvMetricsAddr] = freeAddr(t), tc.addr
			r := e.fails(t, exitUsage, "", "--dev", "serve")
			if !strings.Contains(r.stderr, config.EnvMetricsAddr) {
				t.Errorf("stderr does not name %s: %s", config.EnvMetricsAddr, r.stderr)
			}
		})
	}
}
