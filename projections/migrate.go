package projections

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/pgmigrate"
)

// migrationFiles holds the runner's tables and every built-in read model's tables and
// views, one file per version (NNNN_name.up.sql), applied in order by golang-migrate (see
// internal/pgmigrate). There are no down files: read models are rebuilt from the event
// store, never migrated down.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationsTable records the schema version of this package's tables.
const migrationsTable = "projections_migrations"

// Migrate creates or upgrades the runner's tables (checkpoints, parked events) and the
// built-in read models' tables and views in pool's database. The version applied is
// recorded in projections_migrations. It is idempotent and safe to run from several
// processes at once: golang-migrate takes an advisory lock for projections_migrations,
// and each file is applied in one transaction.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pgmigrate.Up(ctx, pool, migrationFiles, "migrations", migrationsTable); err != nil {
		return fmt.Errorf("projections: migrate: %w", err)
	}
	return nil
}
