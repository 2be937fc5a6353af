package http

import (
	"context"
	"embed"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/pgmigrate"
)

// DB is what the session store and the user lister need of a Postgres connection;
// *pgxpool.Pool (from (*postgres.Store).Pool()) satisfies it.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate brings this package's table (http_sessions) up to date, recording its version
// in http_migrations (internal/pgmigrate says how, and why it is safe at every start). It
// takes a pool rather than a DB: golang-migrate runs on database/sql, opened with the
// pool's connection settings.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgmigrate.Up(ctx, pool, migrationFiles, "migrations", "http_migrations")
}
