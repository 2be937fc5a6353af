package postgres

import (
	"context"
	"embed"

	"selfreset/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate brings the store's tables up to date, recording their version in
// eventstore_migrations (internal/pgmigrate says how, and why it is safe at every start).
// The event store is append-only: it has no down migrations by nature.
func (s *Store) Migrate(ctx context.Context) error {
	return pgmigrate.Up(ctx, s.pool, migrationFiles, "migrations", "eventstore_migrations")
}
