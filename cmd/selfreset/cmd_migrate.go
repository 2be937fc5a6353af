package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/config"
	httpapi "selfreset/http"
	"selfreset/mailer"
	"selfreset/projections"
	"selfreset/ratelimit"
	"selfreset/reset"
)

var migrateGroup = group{
	name:    "migrate",
	summary: "create or upgrade the database schema (idempotent; safe to run concurrently)",
	run:     runMigrate,
}

// migration is one schema owner that `selfreset migrate` brings up to date, in order.
// Later packages with tables of their own (read models, mailer log) append theirs.
type migration struct {
	name string
	// run brings the schema up to date and says what it did, in a few words.
	run func(ctx context.Context, c *cli, cfg config.Config) (outcome string, err error)
}

var migrations = []migration{
	{name: "event store", run: migrateEventStore},
	{name: "read models", run: migrateReadSide("read models", projections.Migrate)},
	{name: "mail log", run: migrateReadSide("mail log", mailer.Migrate)},
	{name: "http sessions", run: migrateReadSide("http sessions", func(ctx context.Context, p *pgxpool.Pool) error { return httpapi.Migrate(ctx, p) })},
	{name: "rate limits", run: migrateReadSide("rate limits", ratelimit.Migrate)},
	{name: "reset intake", run: migrateReadSide("reset intake", reset.Migrate)},
}

// migrateReadSide migrates tables that live in SELFRESET_DATABASE_URL.
func migrateReadSide(what string, migrate func(context.Context, *pgxpool.Pool) error) func(context.Context, *cli, config.Config) (string, error) {
	return func(ctx context.Context, c *cli, cfg config.Config) (string, error) {
		pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
		if err != nil {
			return "", &config.Error{Var: config.EnvDatabaseURL, Msg: err.Error()}
		}
		defer pool.Close()
		if err := migrate(ctx, pool); err != nil {
			return "", err
		}
		return "PostgreSQL schema up to date", nil
	}
}

func runMigrate(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("migrate", "selfreset migrate")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	for _, m := range migrations {
		outcome, err := m.run(ctx, c, cfg)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
		c.printf("%s: %s\n", m.name, outcome)
	}
	return nil
}

// migrateEventStore creates the Postgres event store's tables. EventStoreDB needs none.
func migrateEventStore(ctx context.Context, c *cli, cfg config.Config) (string, error) {
	if cfg.EventStore != config.EventStorePostgres {
		return "EventStoreDB, no schema to migrate", nil
	}
	s, err := c.openPostgres(ctx, cfg, cfg.EventStoreURL)
	if err != nil {
		return "", err
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		return "", err
	}
	return "PostgreSQL schema up to date", nil
}
