// Package metrics is the service's Prometheus instrumentation: the metric families
// (one registry per process, made by New and passed to the parts that record), the
// scrape-time collector that reads shared state from the databases, and the handler
// `serve` exposes on SELFRESET_METRICS_ADDR. docs/operations.md lists every family.
//
// The parts that record know nothing of Prometheus: commands, http and password take
// small observer interfaces or functions, which *Metrics satisfies.
package metrics

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"selfreset/commands"
	"selfreset/domain"
)

// Namespace prefixes every family of this service.
const Namespace = "selfreset"

// Command outcomes (the outcome label of the command families).
const (
	OutcomeOK        = "ok"        // the command was decided and accepted
	OutcomeRefused   = "refused"   // the domain refused it; the code label says why
	OutcomeDuplicate = "duplicate" // a redelivered intake command already decided: nothing appended
	OutcomeError     = "error"     // it could not be decided (store unreachable, deadline, contention)
)

// UnmatchedRoute is the route label of requests no route matched: their paths are
// attacker-chosen, so they must not each become a series.
const UnmatchedRoute = "unmatched"

// Metrics holds the registry and the families the service records into.
type Metrics struct {
	reg *prometheus.Registry

	commands        *prometheus.CounterVec
	commandDuration *prometheus.HistogramVec
	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	rateLimited     *prometheus.CounterVec
	hashWait        prometheus.Histogram
}

// New makes a registry of its own (the default global one is left alone) with the Go
// runtime and process collectors and this service's families.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		commands: counterVec("commands_total",
			"Commands handled, by command, outcome (ok, refused, duplicate, error) and domain refusal code (empty unless refused).",
			"command", "outcome", "code"),
		// Commands that hash a password take tens to hundreds of milliseconds.
		commandDuration: latencyVec("command_duration_seconds",
			"Time to handle a command (load, decide, append, retries included), by command and outcome.",
			"command", "outcome"),
		httpRequests: counterVec("http_requests_total",
			"HTTP requests answered, by method, route template (\"unmatched\" when no route matched) and status code.",
			"method", "route", "status"),
		httpDuration: latencyVec("http_request_duration_seconds",
			"Time to answer an HTTP request, by method and route template.",
			"method", "route"),
		rateLimited: counterVec("rate_limit_refusals_total",
			"Requests refused 429 because a rate-limit budget was spent, by class (login, forgot, resend, reauth, code, token) and scope (ip, account).",
			"class", "scope"),
		hashWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "password_hash_wait_seconds",
			Help:    "Time a password hash or verification waited for a free argon2id slot (SELFRESET_HASH_CONCURRENCY), including waits that ended with the request's deadline.",
			Buckets: []float64{.0001, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25},
		}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.commands, m.commandDuration, m.httpRequests, m.httpDuration, m.rateLimited, m.hashWait,
	)
	return m
}

// counterVec is a counter family of this service's namespace.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
}

// latencyVec is a histogram family of this service's namespace for how long something
// took, in buckets from 1 ms to 25 s.
func latencyVec(name, help string, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help,
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25}}, labels)
}

// Registry is where further collectors (NewScrapeCollector) are registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats. A collector that
// fails is logged and left out; the rest of the scrape is still answered.
func (m *Metrics) Handler(log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// ObserveCommand records one command (commands.Observer).
func (m *Metrics) ObserveCommand(name string, took time.Duration, err error) {
	outcome, code := Outcome(err)
	m.commands.WithLabelValues(name, outcome, code).Inc()
	m.commandDuration.WithLabelValues(name, outcome).Observe(took.Seconds())
}

var _ commands.Observer = (*Metrics)(nil)

// Outcome classifies a command's result: the outcome label and, for a refusal, the
// domain code.
func Outcome(err error) (outcome, code string) {
	switch {
	case err == nil:
		return OutcomeOK, ""
	case errors.Is(err, commands.ErrAlreadyDecided):
		return OutcomeDuplicate, ""
	}
	if c := domain.Code(err); c != "" {
		return OutcomeRefused, c
	}
	return OutcomeError, ""
}

// ObserveRequest records one answered HTTP request (the http package's Observer).
// route is the matched template, or "" when none matched.
func (m *Metrics) ObserveRequest(method, route string, status int, took time.Duration) {
	if route == "" {
		route = UnmatchedRoute
	}
	method = knownMethod(method)
	m.httpRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(method, route).Observe(took.Seconds())
}

// knownMethod keeps the method label to the standard methods: any other is a client's
// invention and would otherwise become a series of its own.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// RateLimited records a request refused because scope's budget of class was spent.
func (m *Metrics) RateLimited(class, scope string) {
	m.rateLimited.WithLabelValues(class, scope).Inc()
}

// ObserveHashWait records how long a password computation waited for its slot
// (password.ObserveWait).
func (m *Metrics) ObserveHashWait(d time.Duration) { m.hashWait.Observe(d.Seconds()) }

// LagCap is how many events behind a consumer the lag gauge counts at most: past it the
// consumer is plainly far behind, and counting further would make every scrape read
// that much of the feed.
const LagCap = 10000
