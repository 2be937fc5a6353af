package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/audit"
	"selfreset/config"
	"selfreset/eventstore"
	httpapi "selfreset/http"
	"selfreset/mailer"
	"selfreset/metrics"
	"selfreset/password"
	"selfreset/projections"
	"selfreset/ratelimit"
	"selfreset/reset"
)

var serveGroup = group{
	name:    "serve",
	summary: "run the service: HTTP pages and API, the reset intake worker, read-model projections and the mailer",
	run:     runServe,
}

// Roles split one binary across machines (DESIGN §6): stateless web replicas, which
// publish Forgot Password and Resend to the durable intake queue, and workers, which
// decide them (any number share the queue) and run the consumers, which hold a Postgres
// advisory lock each so exactly one replica feeds each.
const (
	roleAll    = "all"
	roleWeb    = "web"
	roleWorker = "worker"
)

// shutdownGrace bounds how long in-flight requests may take once SIGTERM arrives.
const shutdownGrace = 20 * time.Second

// writeTimeout is how long a request may take before net/http gives up on answering it;
// requestTimeout, a little shorter, is the deadline of its work, so that a request still
// waiting (e.g. in line for password hashing under a burst) answers 503 rather than
// carrying on after its answer can no longer be written.
const (
	writeTimeout   = 30 * time.Second
	requestTimeout = 25 * time.Second
)

func runServe(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("serve", "selfreset serve [--role all|web|worker] [--migrate=true]")
	role := fs.String("role", roleAll, "what this process runs: all, web (HTTP only) or worker (reset intake, projections and mailer only)")
	migrate := fs.Bool("migrate", true, "bring the schema up to date before serving (idempotent, safe with several replicas)")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	switch *role {
	case roleAll, roleWeb, roleWorker:
	default:
		return usagef("serve: --role %q must be all, web or worker", *role)
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	mcfg, err := mailer.ConfigFromEnv(c.getenv)
	if err != nil {
		return usagef("%v", err)
	}
	if mcfg.Driver == mailer.DriverConsole && !c.dev && *role != roleWeb {
		// The console driver prints every token and code: fine on a laptop, a secret in
		// the logs anywhere else.
		return usagef("%s is console, which prints tokens and codes to the output; set smtp or mailgun, or run with --dev", mailer.EnvDriver)
	}
	explicitURL := strings.TrimSpace(c.getenv(mailer.EnvPublicURL)) != ""
	if !explicitURL {
		// Links in emails point at this process unless a public address is configured.
		mcfg.PublicURL = "http://" + cfg.Addr
	}

	a, err := c.openWith(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	pool, closePool, err := a.readModelPool(ctx)
	if err != nil {
		return err
	}
	defer closePool()
	if *migrate {
		for _, m := range migrations {
			if _, err := m.run(ctx, c, cfg); err != nil {
				return fmt.Errorf("migrate %s: %w", m.name, err)
			}
		}
	}
	// Metrics first: the command handler records into them from its first command.
	metricsLn, err := metricsListener(cfg)
	if err != nil {
		return err
	}
	var (
		m        *metrics.Metrics
		observer httpapi.Observer
	)
	if metricsLn != nil {
		defer metricsLn.Close()
		m = metrics.New()
		a.metrics, observer = m, m
	}
	h, err := a.commands()
	if err != nil {
		return err
	}
	if strings.TrimSpace(c.getenv("GOMEMLIMIT")) == "" {
		// Each argon2id run leaves a 19 MiB block behind; with the collector's default
		// pacing a burst's worth lingers before it runs. A soft limit sized to what the
		// hashing slots can hold keeps peak memory near what is live. GOMEMLIMIT overrides.
		debug.SetMemoryLimit(serveMemoryLimit(a.hashSlots))
	}
	keys, err := cfg.Keyring()
	if err != nil {
		return err
	}

	// Everything below runs until ctx ends (SIGINT/SIGTERM); the first part to fail
	// stops the others.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	start := func(name string, fn func(context.Context) error) {
		wg.Go(func() {
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		})
	}

	if m != nil {
		start("metrics", func(ctx context.Context) error { return serveMetrics(ctx, c, a, m, pool, h, metricsLn) })
	}

	if *role != roleWeb {
		driver, err := mailer.NewDriver(mcfg, c.stdout)
		if err != nil {
			return usagef("%v", err)
		}
		runner, err := projections.New(projections.Config{Store: a.store, Pool: pool, Logger: c.log,
			Projections: consumers()})
		if err != nil {
			return err
		}
		sc := mailer.SenderConfigFrom(mcfg, pool, driver, keys)
		sc.Logger = c.log
		sc.Paths.ResetLink = func(provider, login, email string, issuedAt time.Time) string {
			return reset.LinkID(keys, provider, login, email, issuedAt)
		}
		sender, err := mailer.NewSender(sc)
		if err != nil {
			return err
		}
		worker, err := reset.NewWorker(ctx, reset.WorkerConfig{Pool: pool, Commands: h, Keyring: keys,
			Logger: c.log, Concurrency: cfg.ResetWorkers, NoTypedAddressNotice: !cfg.NotifyUnknownRecipients})
		if err != nil {
			return err
		}
		// The intake drains its running commands itself when ctx ends (Router.Close).
		start("reset intake", worker.Run)
		start("projections", runner.Run)
		start("mailer", sender.Run)
		if sealer := newSealer(a, cfg, h, c.log); sealer != nil {
			start("audit sealer", sealer.Run)
		}
		c.log.Info("consumers started", "projections", len(consumers()), "mail driver", mcfg.Driver)
	}

	if *role != roleWorker {
		sessions := httpapi.NewPGSessions(pool)
		bus, err := reset.NewBus(pool, c.log)
		if err != nil {
			return err
		}
		defer bus.Close()
		resets, err := reset.New(reset.Config{Commands: h, Keyring: keys, Clock: h, Intake: bus, Logger: c.log})
		if err != nil {
			return err
		}
		// Budgets live in PostgreSQL so that every web replica spends the same ones.
		limiter := ratelimit.New(pool, h)
		srv := httpapi.NewServer(httpapi.Config{
			Commands: h, Resets: resets, Users: httpapi.NewPGUserLister(pool), Sessions: sessions,
			Audit: &audit.Service{Store: a.store, Codec: a.codec, Clock: h},
			Clock: h, Logger: c.log, RateLimitPerIP: cfg.RateLimitPerIP, RateLimitPerAccount: accountLimit(cfg),
			RateLimiter: limiter, RequestTimeout: requestTimeout, TrustedProxies: cfg.TrustedProxies,
			// Cookies lose Secure only for a plain-http address someone chose (or --dev):
			// behind a TLS proxy with no public URL set, they stay Secure.
			InsecureCookies: strings.HasPrefix(mcfg.PublicURL, "http://") && (explicitURL || c.dev),
			Ready:           httpapi.PingAll(pool, eventStorePing{a.store}),
			Observer:        observer,
		})
		srv.MountPages()
		ln, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			return &config.Error{Var: config.EnvAddr, Msg: err.Error()}
		}
		hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: writeTimeout, IdleTimeout: 2 * time.Minute}
		c.log.Info("listening", "addr", ln.Addr().String(), "public_url", mcfg.PublicURL, "role", *role)
		start("http", func(ctx context.Context) error {
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		start("http shutdown", func(ctx context.Context) error {
			<-ctx.Done()
			// /readyz turns 503, then in-flight requests finish. Answered Forgot Password
			// work is already in the intake queue.
			sctx, done := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
			defer done()
			_ = srv.Close(sctx)
			return hs.Shutdown(sctx)
		})
		start("session cleanup", every(time.Hour, func(ctx context.Context) {
			if _, err := sessions.DeleteExpired(ctx, time.Now()); err != nil && ctx.Err() == nil {
				c.log.Warn("deleting expired sessions failed", "err", err)
			}
		}))
		// Full buckets carry no information; every web replica deletes them (in bounded
		// batches; concurrent runs are harmless).
		start("rate-limit cleanup", every(time.Minute, func(ctx context.Context) {
			if _, err := limiter.Cleanup(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("deleting full rate-limit buckets failed", "err", err)
			}
		}))

	}

	<-ctx.Done()
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	c.log.Info("stopped cleanly")
	return nil
}

// every runs fn each period until ctx ends: housekeeping that may fail now and then.
func every(period time.Duration, fn func(ctx context.Context)) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				fn(ctx)
			}
		}
	}
}

// serveBaseMemory is what serve holds besides password hashing (pools, caches, request
// buffers), for the soft memory limit.
const serveBaseMemory = 24 << 20

// serveMemoryLimit is serve's default soft memory limit: the base plus, per hashing slot,
// two argon2id blocks (the one in use and the one its last run left for the collector).
func serveMemoryLimit(hashSlots int) int64 {
	return serveBaseMemory + int64(hashSlots)*2*password.MemoryBytes(password.DefaultParams)
}

// eventStorePing makes the event store answer /readyz, whichever adapter it is: reading
// the head of the feed needs a live connection to it.
type eventStorePing struct{ store eventstore.Store }

func (p eventStorePing) Ping(ctx context.Context) error {
	_, err := p.store.Head(ctx)
	return err
}

// accountLimit maps the configured per-account budget to the http package's convention
// (0 there means "same as per IP", negative means off).
func accountLimit(cfg config.Config) int {
	if cfg.RateLimitPerAccount == 0 {
		return -1
	}
	return cfg.RateLimitPerAccount
}

// consumers are every read model plus the mailer, each fed from its own checkpoint.
func consumers() []projections.Projection {
	var out []projections.Projection
	for _, m := range projections.ReadModels() {
		out = append(out, m)
	}
	return append(out, mailer.NewProjection(nil))
}

// readModelPool is the Postgres pool for read models, sessions and the mail log: the event
// store's own pool when events live in the same database, else a pool of its own.
func (a *app) readModelPool(ctx context.Context) (*pgxpool.Pool, func(), error) {
	if s, ok := a.store.(interface{ Pool() *pgxpool.Pool }); ok && a.cfg.EventStoreURL == a.cfg.DatabaseURL {
		return s.Pool(), func() {}, nil
	}
	pool, err := pgxpool.New(ctx, a.cfg.DatabaseURL)
	if err != nil {
		return nil, nil, &config.Error{Var: config.EnvDatabaseURL, Msg: err.Error()}
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("cannot reach PostgreSQL: %w", err)
	}
	return pool, pool.Close, nil
}
