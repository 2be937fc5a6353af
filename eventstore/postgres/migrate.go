package postgres

import (
	"context"
	"embed"
	"fmt"

	"selfreset/internal/pgmigrate"
)

// migrationFiles holds the schema, one file per version: NNNN_name.up.sql, applied in
// order by golang-migrate (see internal/pgmigrate). There are no down files: the event
// store is append-only and is never migrated down.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationsTable records the schema version of the store's tables.
const migrationsTable = "eventstore_migrations"

// Migrate creates or upgrades the store's tables. It is idempotent, and safe to run from
// several processes at once: golang-migrate takes an advisory lock for
// eventstore_migrations, and each file is applied in one transaction.
func (s *Store) Migrate(ctx context.Context) error {
	if err := pgmigrate.Up(ctx, s.pool, migrationFiles, "migrations", migrationsTable); err != nil {
		return fmt.Errorf("eventstore/postgres: migrate: %w", err)
	}
	return nil
}
