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
	"selfreset/commands"
	"selfreset/config"
	"selfreset/eventstore"
	httpapi "selfreset/http"
	"selfreset/internal/pguuid"
	"selfreset/internal/pgvacuum"
	"selfreset/mailer"
	"selfreset/metrics"
	"selfreset/password"
	"selfreset/projections"
	"selfreset/ratelimit"
	"selfreset/reset"
	"selfreset/secret"
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
	if cfg.Mail.Driver == mailer.DriverConsole && !c.dev && *role != roleWeb {
		// The console driver prints every token and code: fine on a laptop, a secret in
		// the logs anywhere else.
		return usagef("%s is console, which prints tokens and codes to the output; set smtp or mailgun, or run with --dev", config.EnvMailDriver)
	}
	s := &server{cli: c, cfg: cfg, role: *role}
	defer s.close()
	if err := s.build(ctx, *migrate); err != nil {
		return err
	}
	return s.run(ctx)
}

// server is serve's Main, after WTF Dial's: build opens the stores and wires every part
// (a failure there starts nothing), run starts the parts and waits until ctx ends or one
// fails, and close releases what build opened, last first.
type server struct {
	cli  *cli
	cfg  config.Config
	role string

	app      *app
	pool     *pgxpool.Pool
	handler  *commands.Handler
	keys     *secret.Keyring
	metrics  *metrics.Metrics // nil: SELFRESET_METRICS_ADDR is not set
	observer httpapi.Observer
	// front counts this process's Forgot Password answers in progress, which its intake
	// worker gives way to (role all; alone, either role has nothing to give way to).
	front *reset.Front

	parts   []part   // what run starts
	closers []func() // what close releases, in reverse
}

// part is one thing run starts: it runs until ctx ends and fails only for real.
type part struct {
	name string
	run  func(ctx context.Context) error
}

func (s *server) start(name string, run func(context.Context) error) {
	s.parts = append(s.parts, part{name, run})
}

func (s *server) onClose(fn func()) { s.closers = append(s.closers, fn) }

func (s *server) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// build opens the stores, migrates, builds the command handler and then the parts of
// the role. The worker's parts come last: its intake pool is only released by its Run.
func (s *server) build(ctx context.Context, migrate bool) error {
	if err := s.open(ctx, migrate); err != nil {
		return err
	}
	if err := s.buildCommands(); err != nil {
		return err
	}
	if s.role == roleAll {
		s.front = reset.NewFront(nil)
	}
	if s.role != roleWorker {
		if err := s.buildWeb(ctx); err != nil {
			return err
		}
	}
	if s.role != roleWeb {
		return s.buildWorker(ctx)
	}
	return nil
}

// open connects the event store and the read-model pool and brings the schema up to date.
func (s *server) open(ctx context.Context, migrate bool) error {
	a, err := s.cli.openWith(ctx, s.cfg)
	if err != nil {
		return err
	}
	s.app = a
	s.onClose(a.Close)
	pool, closePool, err := a.readModelPool(ctx)
	if err != nil {
		return err
	}
	s.pool = pool
	s.onClose(closePool)
	if !migrate {
		return nil
	}
	for _, m := range migrations {
		if _, err := m.run(ctx, s.cli, s.cfg); err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
	}
	return nil
}

// buildCommands builds the command handler and the keyring, metrics first: the handler
// records into them from its first command.
func (s *server) buildCommands() error {
	ln, err := metricsListener(s.cfg)
	if err != nil {
		return err
	}
	if ln != nil {
		s.onClose(func() { ln.Close() })
		s.metrics = metrics.New()
		s.app.metrics, s.observer = s.metrics, s.metrics
	}
	if s.handler, err = s.app.commands(); err != nil {
		return err
	}
	if ln != nil {
		m, pool, h := s.metrics, s.pool, s.handler
		s.start("metrics", func(ctx context.Context) error { return serveMetrics(ctx, s.cli, s.app, m, pool, h, ln) })
	}
	if strings.TrimSpace(s.cli.getenv("GOMEMLIMIT")) == "" {
		// The hashing slots collect each argon2id block as soon as it is done with
		// (password.CollectAfterEach); the soft limit is the backstop that keeps the rest
		// of the garbage (requests, pools) from piling up on top. GOMEMLIMIT overrides.
		debug.SetMemoryLimit(serveMemoryLimit(s.app.hashSlots))
	}
	s.keys, err = s.cfg.Keyring()
	return err
}

// buildWorker wires the reset intake worker, the projections, the mail sender and the
// audit sealer.
func (s *server) buildWorker(ctx context.Context) error {
	c, h, keys := s.cli, s.handler, s.keys
	driver, err := mailer.NewDriver(s.cfg.Mail, c.stdout)
	if err != nil {
		return usagef("%v", err)
	}
	runner, err := projections.New(projections.Config{Store: s.app.store, Pool: s.pool, Logger: c.log,
		Projections: consumers()})
	if err != nil {
		return err
	}
	sc := mailer.SenderConfigFrom(s.cfg.Mail, s.pool, driver, keys)
	sc.Logger = c.log
	sc.Paths.ResetLink = func(provider, login, email string, issuedAt time.Time) string {
		return reset.LinkID(keys, provider, login, email, issuedAt)
	}
	sender, err := mailer.NewSender(sc)
	if err != nil {
		return err
	}
	worker, err := reset.NewWorker(ctx, reset.WorkerConfig{Pool: s.pool, Commands: h, Keyring: keys,
		Logger: c.log, Concurrency: s.cfg.ResetWorkers, NoTypedAddressNotice: !s.cfg.NotifyUnknownRecipients, Front: s.front,
		SharedLog: s.app.storeUses(s.pool)})
	if err != nil {
		return err
	}
	// The intake drains its running commands itself when ctx ends (Router.Close).
	s.start("reset intake", worker.Run)
	s.start("projections", runner.Run)
	s.start("mailer", func(ctx context.Context) error {
		defer func() { _ = mailer.CloseDriver(driver) }() // the smtp driver's open sessions
		return sender.Run(ctx)
	})
	// The queues' dead rows would slow every claim until autovacuum came (pgvacuum).
	churned := append(reset.QueueTables(), mailer.ChurnedTables()...)
	s.start("queue vacuum", every(pgvacuum.Every, func(ctx context.Context) {
		if _, err := pgvacuum.Tidy(ctx, s.pool, churned, pgvacuum.MinDead); err != nil && ctx.Err() == nil {
			c.log.Warn("vacuuming the queues failed", "err", err)
		}
	}))
	if sealer := newSealer(s.app, s.cfg, h, c.log); sealer != nil {
		s.start("audit sealer", sealer.Run)
	}
	c.log.Info("consumers started", "projections", len(consumers()), "mail driver", s.cfg.Mail.Driver)
	return nil
}

// buildWeb wires the HTTP pages and API and opens their listener.
func (s *server) buildWeb(ctx context.Context) error {
	c, h, pool := s.cli, s.handler, s.pool
	sessions := httpapi.NewPGSessions(pool)
	bus, err := reset.NewBus(pool, c.log)
	if err != nil {
		return err
	}
	s.onClose(func() { bus.Close() })
	resets, err := reset.New(reset.Config{Commands: h, Keyring: s.keys, Clock: h, Intake: bus, Logger: c.log, Front: s.front})
	if err != nil {
		return err
	}
	// Budgets live in PostgreSQL so that every web replica spends the same ones.
	limiter := ratelimit.New(pool, h)
	srv := httpapi.NewServer(httpapi.Config{
		Commands: h, Resets: resets, Users: httpapi.NewPGUserLister(pool), Sessions: sessions,
		Audit: &audit.Service{Store: s.app.store, Codec: s.app.codec, Clock: h},
		Clock: h, Logger: c.log, RateLimitPerIP: s.cfg.RateLimitPerIP, RateLimitPerAccount: s.cfg.RateLimitPerAccount,
		RateLimiter: limiter, RequestTimeout: requestTimeout, TrustedProxies: s.cfg.TrustedProxies,
		// Cookies lose Secure only for a plain-http address someone chose (or --dev):
		// behind a TLS proxy with no public URL set, they stay Secure.
		InsecureCookies: strings.HasPrefix(s.cfg.Mail.PublicURL, "http://") && (s.cfg.PublicURLSet || c.dev),
		Ready:           httpapi.PingAll(pool, eventStorePing{s.app.store}),
		Observer:        s.observer,
	})
	srv.MountPages()
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return &config.Error{Var: config.EnvAddr, Msg: err.Error()}
	}
	s.onClose(func() { ln.Close() })
	c.log.Info("listening", "addr", ln.Addr().String(), "public_url", s.cfg.Mail.PublicURL, "role", s.role)
	s.serveHTTP(srv, ln)
	s.start("session cleanup", every(time.Hour, func(ctx context.Context) {
		if _, err := sessions.DeleteExpired(ctx, time.Now()); err != nil && ctx.Err() == nil {
			c.log.Warn("deleting expired sessions failed", "err", err)
		}
	}))
	// Full buckets carry no information; every web replica deletes them (in bounded
	// batches; concurrent runs are harmless).
	s.start("rate-limit cleanup", every(time.Minute, func(ctx context.Context) {
		if _, err := limiter.Cleanup(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("deleting full rate-limit buckets failed", "err", err)
		}
	}))
	return nil
}

// serveHTTP adds the parts that serve srv on ln and shut it down when ctx ends.
func (s *server) serveHTTP(srv *httpapi.Server, ln net.Listener) {
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: writeTimeout, IdleTimeout: 2 * time.Minute}
	s.start("http", func(ctx context.Context) error {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	s.start("http shutdown", func(ctx context.Context) error {
		<-ctx.Done()
		// /readyz turns 503, then in-flight requests finish. Answered Forgot Password
		// work is already in the intake queue.
		sctx, done := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer done()
		_ = srv.Close(sctx)
		return hs.Shutdown(sctx)
	})
}

// run starts every part and waits until ctx ends (SIGINT/SIGTERM) or a part fails,
// which stops the others; it returns once all have returned.
func (s *server) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, p := range s.parts {
		wg.Go(func() {
			if err := p.run(ctx); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("%s: %w", p.name, err))
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	s.cli.log.Info("stopped cleanly")
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

// serveBaseMemory is what serve's runtime holds besides password hashing (live heap of
// pools, caches and requests, stacks, collector metadata), for the soft memory limit:
// about 7 MiB live at rest under the HTTP harness and more in a burst, plus room for
// garbage between collections. 14 MiB was too little room once hashing had one slot on
// 2 CPUs (a 21 MiB limit): the collector ran so often that a c=32 burst got 2,407
// answers a second instead of 3,715 with 28 MiB, and the reset flows half as many.
const serveBaseMemory = 21 << 20

// serveMemoryLimit is serve's default soft memory limit: the base plus, per hashing slot,
// the argon2id block in use (the one its last run left is collected when the run ends).
func serveMemoryLimit(hashSlots int) int64 {
	return serveBaseMemory + int64(hashSlots)*password.MemoryBytes(password.DefaultParams)
}

// eventStorePing makes the event store answer /readyz, whichever adapter it is: reading
// the head of the feed needs a live connection to it.
type eventStorePing struct{ store eventstore.Store }

func (p eventStorePing) Ping(ctx context.Context) error {
	_, err := p.store.Head(ctx)
	return err
}

// consumers are every read model plus the mailer, each fed from its own checkpoint.
func consumers() []projections.Projection {
	var out []projections.Projection
	for _, m := range projections.ReadModels() {
		out = append(out, m)
	}
	return append(out, mailer.NewProjection(nil))
}

// storeUses reports whether the event store writes through pool (and so to its
// database's WAL).
func (a *app) storeUses(pool *pgxpool.Pool) bool {
	p, ok := a.storePool()
	return ok && p == pool
}

// storePool is the event store's own pool, when it has one (PostgreSQL).
func (a *app) storePool() (*pgxpool.Pool, bool) {
	s, ok := a.store.(interface{ Pool() *pgxpool.Pool })
	if !ok {
		return nil, false
	}
	return s.Pool(), true
}

// readModelPool is the Postgres pool for read models, sessions and the mail log: the event
// store's own pool when events live in the same database, else a pool of its own.
func (a *app) readModelPool(ctx context.Context) (*pgxpool.Pool, func(), error) {
	if p, ok := a.storePool(); ok && a.cfg.EventStoreURL == a.cfg.DatabaseURL {
		return p, func() {}, nil
	}
	return openDatabasePool(ctx, withStatementCache(a.cfg.DatabaseURL))
}

// openDatabasePool connects a pool to url, SELFRESET_DATABASE_URL with settings added.
func openDatabasePool(ctx context.Context, url string) (*pgxpool.Pool, func(), error) {
	pool, err := pguuid.NewPool(ctx, url)
	if err != nil {
		return nil, nil, &config.Error{Var: config.EnvDatabaseURL, Msg: err.Error()}
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("cannot reach PostgreSQL: %w", err)
	}
	return pool, pool.Close, nil
}
