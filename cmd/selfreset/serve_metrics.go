package main

import (
	"context"
	"errors"
	"net"
	"net/http"
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
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
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
