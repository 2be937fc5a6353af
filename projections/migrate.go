package projections

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
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationFiles holds the runner's tables and every built-in read model's tables and
// views, one file per version (NNNN_name.sql), applied in order.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := make([]migration, 0, len(names))
	for _, name := range names {
		base := path.Base(name)
		prefix, _, _ := strings.Cut(base, "_")
		version, err := strconv.Atoi(prefix)
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a version number: %w", base, err)
		}
		body, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: version, name: base, sql: string(body)})
	}
	return out, nil
}

// Migrate creates or upgrades the runner's tables (checkpoints, parked events) and the
// built-in read models' tables and views in pool's database. Versions applied are recorded
// in projections_migrations. It is idempotent and safe to run from several processes at
// once: they take turns on an advisory lock, and each version is applied and recorded in
// the same transaction.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	all, err := migrations()
	if err != nil {
		return fmt.Errorf("projections: migrate: %w", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("projections: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('selfreset.projections.migrate', 0))`); err != nil {
		return fmt.Errorf("projections: migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS projections_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("projections: migrate: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT version FROM projections_migrations`)
	if err != nil {
		return fmt.Errorf("projections: migrate: %w", err)
	}
	done := map[int]bool{}
	var v int
	if _, err := pgx.ForEachRow(rows, []any{&v}, func() error { done[v] = true; return nil }); err != nil {
		return fmt.Errorf("projections: migrate: %w", err)
	}
	for _, m := range all {
		if done[m.version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("projections: migrate %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO projections_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return fmt.Errorf("projections: migrate %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("projections: migrate: %w", err)
	}
	return nil
}
