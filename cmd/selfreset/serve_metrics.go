package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/config"
	"selfreset/domain"
	"selfreset/metrics"
	"selfreset/projections"
)

// metricsListener opens SELFRESET_METRICS_ADDR before anything starts, so that a port
// already taken is a configuration error (exit 2) rather than a failure mid-run. It
// returns nil when metrics are off.
func metricsListener(cfg config.Config) (net.Listener, error) {
	if cfg.MetricsAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return nil, &config.Error{Var: config.EnvMetricsAddr, Msg: err.Error()}
	}
	return ln, nil
}

// serveMetrics registers the scrape-time figures (intake queues, projection lag, mail
// deliveries: shared state, the same from every role) and serves GET /metrics on ln
// until ctx ends. Every role reports them, so they stay visible while, say, every
// worker is down.
func serveMetrics(ctx context.Context, c *cli, a *app, m *metrics.Metrics, pool *pgxpool.Pool, clock domain.Clock, ln net.Listener) error {
	lag, err := projections.New(projections.Config{Store: a.store, Pool: pool, Logger: c.log,
		Projections: consumers(), LagCap: metrics.LagCap})
	if err != nil {
		return err
	}
	m.Registry().MustRegister(metrics.NewScrapeCollector(metrics.ScrapeConfig{
		Pool: pool, Consumers: lag, Feed: a.store, Clock: clock, Logger: c.log,
	}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler(c.log))
	if a.cfg.Pprof {
		mountPprof(mux)
		c.log.Info("serving profiles on the metrics listener", "path", "/debug/pprof/")
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: metricsWriteTimeout(a.cfg)}
	c.log.Info("serving metrics", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer done()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// pprofMaxSeconds bounds ?seconds= of a CPU profile or trace: the listener's write
// timeout is raised to let one that long finish.
const pprofMaxSeconds = 120

// metricsWriteTimeout is 30 s for scrapes, longer with profiling on so that
// /debug/pprof/profile?seconds=N (N ≤ pprofMaxSeconds) can answer.
func metricsWriteTimeout(cfg config.Config) time.Duration {
	if cfg.Pprof {
		return (pprofMaxSeconds + 10) * time.Second
	}
	return 30 * time.Second
}

// mountPprof adds net/http/pprof's handlers. They are registered on this mux, never on
// http.DefaultServeMux, so they are reachable only on the metrics listener.
func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
