package http

import (
	"context"
	"embed"
	"fmt"

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

// migrationFiles holds this package's tables, one file per version (NNNN_name.up.sql),
// applied in order by golang-migrate (see internal/pgmigrate). There are no down files:
// the schema is only ever migrated up.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationsTable records the schema version of this package's tables.
const migrationsTable = "http_migrations"

// Migrate creates or upgrades the tables of this package (http_sessions), recording the
// version applied in http_migrations. It is idempotent and safe to run from several
// processes at once (golang-migrate takes an advisory lock for http_migrations). It takes
// a pool rather than a DB: golang-migrate runs on database/sql, opened with the pool's
// connection settings.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pgmigrate.Up(ctx, pool, migrationFiles, "migrations", migrationsTable); err != nil {
		return fmt.Errorf("http: migrate: %w", err)
	}
	return nil
}
