package http

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what this package needs of a Postgres connection; *pgxpool.Pool (from
// (*postgres.Store).Pool()) satisfies it.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate creates or upgrades the tables of this package (http_sessions), recording each
// applied file in http_migrations. It is idempotent and safe to run from several
// processes at once (they take turns on an advisory lock).
func Migrate(ctx context.Context, db DB) error {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("http: migrate: %w", err)
	}
	slices.Sort(names)
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("http: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('selfreset.http.migrate', 0))`); err != nil {
		return fmt.Errorf("http: migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS http_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("http: migrate: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT version FROM http_migrations`)
	if err != nil {
		return fmt.Errorf("http: migrate: %w", err)
	}
	applied := map[int]bool{}
	var v int
	if _, err := pgx.ForEachRow(rows, []any{&v}, func() error { applied[v] = true; return nil }); err != nil {
		return fmt.Errorf("http: migrate: %w", err)
	}
	for _, name := range names {
		base := path.Base(name)
		prefix, _, _ := strings.Cut(base, "_")
		version, err := strconv.Atoi(prefix)
		if err != nil {
			return fmt.Errorf("http: migration %s: name must start with a version number", base)
		}
		if applied[version] {
			continue
		}
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return fmt.Errorf("http: migrate: %w", err)
		}
		if _, err := tx.Exec(ctx, string(body)); err != nil {
			return fmt.Errorf("http: migrate %s: %w", base, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO http_migrations (version, name) VALUES ($1, $2)`, version, base); err != nil {
			return fmt.Errorf("http: migrate %s: %w", base, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("http: migrate: %w", err)
	}
	return nil
}
