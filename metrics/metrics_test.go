package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/metrics"
)

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		name          string
		err           error
		outcome, code string
	}{
		{"accepted", nil, metrics.OutcomeOK, ""},
		{"refused", domain.ErrAdminLocked, metrics.OutcomeRefused, domain.ErrAdminLocked.Code},
		{"refused, wrapped", fmt.Errorf("reset: %w", domain.ErrThrottled), metrics.OutcomeRefused, domain.ErrThrottled.Code},
		{"password rejected", &domain.PasswordRejectedError{Reasons: []string{"too short"}}, metrics.OutcomeRefused, domain.ErrPasswordRejected.Code},
		{"redelivered", commands.ErrAlreadyDecided, metrics.OutcomeDuplicate, ""},
		{"contention", commands.ErrTooMuchContention, metrics.OutcomeError, ""},
		{"deadline", fmt.Errorf("password: waiting for a hashing slot: %w", context.DeadlineExceeded), metrics.OutcomeError, ""},
		{"store down", errors.New("read user-ACME-bob: connection refused"), metrics.OutcomeError, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if o, c := metrics.Outcome(tc.err); o != tc.outcome || c != tc.code {
				t.Errorf("Outcome(%v) = %q, %q; want %q, %q", tc.err, o, c, tc.outcome, tc.code)
			}
		})
	}
}

// The recording methods land in the families the handler serves, with the labels the
// docs promise; attacker-chosen paths and methods do not become series of their own.
func TestRecordedFamiliesAreServed(t *testing.T) {
	m := metrics.New()
	m.ObserveCommand("login", 30*time.Millisecond, domain.ErrInvalidCredentials)
	m.ObserveCommand("login", 40*time.Millisecond, nil)
	m.ObserveRequest(http.MethodPost, "/api/v1/sessions", 401, time.Millisecond)
	m.ObserveRequest(http.MethodGet, "", 404, time.Millisecond)
	m.ObserveRequest("BREW", "", 404, time.Millisecond)
	m.RateLimited("login", "ip")
	m.ObserveHashWait(2 * time.Millisecond)

	want := `
# HELP selfreset_commands_total Commands handled, by command, outcome (ok, refused, duplicate, error) and domain refusal code (empty unless refused).
# TYPE selfreset_commands_total counter
selfreset_commands_total{code="",command="login",outcome="ok"} 1
selfreset_commands_total{code="invalid_credentials",command="login",outcome="refused"} 1
# HELP selfreset_http_requests_total HTTP requests answered, by method, route template ("unmatched" when no route matched) and status code.
# TYPE selfreset_http_requests_total counter
selfreset_http_requests_total{method="GET",route="unmatched",status="404"} 1
selfreset_http_requests_total{method="OTHER",route="unmatched",status="404"} 1
selfreset_http_requests_total{method="POST",route="/api/v1/sessions",status="401"} 1
# HELP selfreset_rate_limit_refusals_total Requests refused 429 because a rate-limit budget was spent, by class (login, forgot, resend, reauth, code, token) and scope (ip, account).
# TYPE selfreset_rate_limit_refusals_total counter
selfreset_rate_limit_refusals_total{class="login",scope="ip"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"selfreset_commands_total", "selfreset_http_requests_total", "selfreset_rate_limit_refusals_total"); err != nil {
		t.Error(err)
	}
	for name, n := range map[string]int{
		"selfreset_command_duration_seconds":      2, // login ok, login refused
		"selfreset_http_request_duration_seconds": 3,
		"selfreset_password_hash_wait_seconds":    1,
	} {
		if got, err := testutil.GatherAndCount(m.Registry(), name); err != nil || got != n {
			t.Errorf("%s: %d series (%v), want %d", name, got, err, n)
		}
	}

	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, s := range []string{"selfreset_commands_total{", "selfreset_password_hash_wait_seconds_bucket{", "go_goroutines ", "process_"} {
		if !strings.Contains(body, s) {
			t.Errorf("the handler's answer lacks %q", s)
		}
	}
}

// Two registries side by side (two servers in one test process) do not collide: nothing
// is registered globally.
func TestRegistriesAreIndependent(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.RateLimited("forgot", "account")
	if n := testutil.CollectAndCount(b.Registry(), "selfreset_rate_limit_refusals_total"); n != 0 {
		t.Errorf("b saw %d series recorded into a", n)
	}
}
