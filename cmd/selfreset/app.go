package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	esdbc "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/commands"
	"selfreset/config"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/esdb"
	"selfreset/eventstore/postgres"
	"selfreset/metrics"
	"selfreset/password"
)

// operator is the actor of every command run from this binary.
var operator = domain.SystemActor("cli")

// app is the wiring a command needs: configuration, the event store and, on demand, the
// command handler. Commands get it from cli.open and Close it when done.
type app struct {
	cfg   config.Config
	cli   *cli
	store eventstore.Store
	codec *domain.Codec

	handler   *commands.Handler
	hashSlots int // how many argon2id computations the handler runs at once
	// metrics, when set before commands() is first called (serve with
	// SELFRESET_METRICS_ADDR), records every command and password-hash wait.
	metrics *metrics.Metrics
}

// config reads the configuration from the environment, honouring --dev.
func (c *cli) config(opts ...config.Option) (config.Config, error) {
	if c.dev {
		opts = append(opts, config.Dev())
	}
	cfg, err := config.FromEnv(c.getenv, opts...)
	if err != nil {
		return config.Config{}, err
	}
	if cfg.DevSecret {
		c.log.Warn("DEVELOPMENT MODE: tokens and codes are derived from the public development key; " +
			"anyone can forge them. Never run --dev with real users; set SELFRESET_SECRET instead.")
	}
	return cfg, nil
}

// open reads the configuration and connects to the event store it names.
func (c *cli) open(ctx context.Context, opts ...config.Option) (*app, error) {
	cfg, err := c.config(opts...)
	if err != nil {
		return nil, err
	}
	return c.openWith(ctx, cfg)
}

// openWith connects to the event store cfg names.
func (c *cli) openWith(ctx context.Context, cfg config.Config) (*app, error) {
	store, err := c.openEventStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &app{cfg: cfg, cli: c, store: store, codec: domain.NewCodec()}, nil
}

// openEventStore connects the adapter the configuration names.
func (c *cli) openEventStore(ctx context.Context, cfg config.Config) (eventstore.Store, error) {
	switch cfg.EventStore {
	case config.EventStoreESDB:
		s, err := esdb.Open(ctx, cfg.EventStoreURL,
			esdb.WithStreamPrefixes(domain.StreamPrefixes...),
			esdb.WithLogger(func(level esdbc.LogLevel, format string, args ...any) {
				c.log.Debug("eventstoredb client: "+fmt.Sprintf(format, args...), "level", level)
			}))
		if err != nil {
			return nil, fmt.Errorf("cannot reach EventStoreDB (%s): %w", config.EnvEventStoreURL, err)
		}
		return s, nil
	default:
		return c.openPostgres(ctx, cfg, withPoolSize(cfg.EventStoreURL, storePoolConns(cfg.ResetWorkers)))
	}
}

// openPostgres connects the Postgres event store at url (cfg's EventStoreURL, perhaps with
// pool settings added). A URL pgx cannot parse (a pool or statement-cache setting that is
// not a number, say) is a configuration error naming its variable, not an unreachable server.
func (c *cli) openPostgres(ctx context.Context, cfg config.Config, url string) (*postgres.Store, error) {
	s, err := postgres.Open(ctx, url)
	var bad *pgconn.ParseConfigError
	switch {
	case errors.As(err, &bad):
		v := config.EnvEventStoreURL
		if cfg.EventStoreURL == cfg.DatabaseURL {
			v = config.EnvDatabaseURL
		}
		return nil, &config.Error{Var: v, Msg: bad.Error()}
	case err != nil:
		return nil, fmt.Errorf("cannot reach PostgreSQL: %w", err)
	}
	return s, nil
}

// storePoolConns is the event store pool's size unless the URL sets pool_max_conns: a
// connection for each intake command deciding at once (resetWorkers), and 4 for the rest
// (HTTP commands, the consumers, the mailer). pgx's own default, 4 on 2 CPUs, left the
// intake's commands waiting for a connection: the HTTP harness decided 25–35 forgot-password
// requests a second with it and 55–64 with 12 (docs/benchmarks.md).
func storePoolConns(resetWorkers int) int { return 4 + resetWorkers }

// statementCacheSize is each PostgreSQL connection's prepared-statement cache unless the
// URL sets statement_cache_capacity. pgx's default, 512, sizes a map for 512 statements on
// every connection; serve holds about 50 (its pools, each consumer's lock, the listener)
// and runs far fewer distinct statements on any of them, so the default came to about a
// third of serve's live heap (4.7 MB of 14 MB after a forgot-password burst), against
// issue 11's peak RSS budget.
const statementCacheSize = 128

// withPoolSize sets pool_max_conns to conns in a PostgreSQL URL or keyword/value string,
// and the statement cache to statementCacheSize, where it does not set them already.
func withPoolSize(dsn string, conns int) string {
	return withStatementCache(withDefault(dsn, "pool_max_conns", strconv.Itoa(conns)))
}

// withStatementCache sets the statement cache to statementCacheSize in dsn unless it sets
// it, and turns pgx's description cache off unless dsn chooses an exec mode: only
// default_query_exec_mode=cache_describe uses that cache, yet pgx sizes a map for 512
// entries on every connection (with the statement caches, 3.1 MB of a 7.5 MB live heap
// at the end of a bench --http run).
func withStatementCache(dsn string) string {
	dsn = withDefault(dsn, "statement_cache_capacity", strconv.Itoa(statementCacheSize))
	if strings.Contains(dsn, "default_query_exec_mode") {
		return dsn
	}
	// A URL that turns the statement cache off (statement_cache_capacity=0, as for a
	// pooler that cannot keep prepared statements) left pgx's default mode, which needs
	// that cache, failing every query: each statement is described instead.
	if cfg, err := pgxpool.ParseConfig(dsn); err == nil && cfg.ConnConfig.StatementCacheCapacity == 0 {
		dsn = withDefault(dsn, "default_query_exec_mode", "describe_exec")
	}
	return withDefault(dsn, "description_cache_capacity", "0")
}

// withDefault sets key to value in dsn (a PostgreSQL URL or keyword/value string) unless
// dsn sets it already.
func withDefault(dsn, key, value string) string {
	if dsn == "" || strings.Contains(dsn, key) {
		return dsn
	}
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + key + "=" + value
}

// Close releases the store.
func (a *app) Close() { a.store.Close() }

// commands builds the command handler: argon2id hashing with the documented parameters
// (at most SELFRESET_HASH_CONCURRENCY at once), the common-password list, the keyring
// from the configured secret and the configured policy.
func (a *app) commands() (*commands.Handler, error) {
	if a.handler != nil {
		return a.handler, nil
	}
	hasher, err := password.NewHasher(password.DefaultParams)
	if err != nil {
		return nil, err
	}
	keys, err := a.cfg.Keyring()
	if err != nil {
		return nil, &config.Error{Var: config.EnvSecret, Msg: err.Error()}
	}
	var (
		observer commands.Observer
		// Each argon2id block collected as soon as its computation ends: serve's peak
		// memory is then the live heap plus one block per slot (issue 11: < 60 MB).
		bounded = []password.BoundedOption{password.CollectAfterEach()}
	)
	if a.metrics != nil {
		observer = a.metrics
		bounded = append(bounded, password.ObserveWait(a.metrics.ObserveHashWait))
	}
	limiter := password.NewBounded(hasher, a.cfg.HashConcurrency, bounded...)
	a.hashSlots = limiter.Slots()
	a.handler = commands.New(commands.Config{
		Store:    a.store,
		Clock:    domain.SystemClock{},
		Hasher:   limiter,
		Secrets:  keys,
		Common:   password.NewCommonList(),
		Policy:   a.cfg.Policy(),
		Logger:   a.cli.log,
		Observer: observer,
	})
	return a.handler, nil
}

// describe is the one-line text for err, with a hint where the fix is known.
func describe(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return err.Error() + "; the database has no schema yet: run 'selfreset migrate' first"
	}
	return err.Error()
}

// withApp opens the app with opts, runs fn with it and closes the app.
func (c *cli) withApp(ctx context.Context, opts []config.Option, fn func(a *app) error) error {
	a, err := c.open(ctx, opts...)
	if err != nil {
		return err
	}
	defer a.Close()
	return fn(a)
}

// withHistory is withApp for commands that only read the history (auditors, read models):
// they run without the server key, as nothing they do derives a token.
func (c *cli) withHistory(ctx context.Context, fn func(a *app) error) error {
	return c.withApp(ctx, []config.Option{config.SecretOptional()}, fn)
}

// withCommands opens the app, runs fn with its command handler and closes the app.
func (c *cli) withCommands(ctx context.Context, fn func(h *commands.Handler) error) error {
	return c.withApp(ctx, nil, func(a *app) error {
		h, err := a.commands()
		if err != nil {
			return err
		}
		return fn(h)
	})
}
