package mailer

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/pgmigrate"
)

// migrationFiles holds the mailer's tables, one file per version (NNNN_name.up.sql),
// applied in order by golang-migrate (see internal/pgmigrate). There are no down files:
// the schema is only ever migrated up.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationsTable records the schema version of the mailer's tables.
const migrationsTable = "mailer_migrations"

// Migrate creates or upgrades the mailer's tables (mail_deliveries) in the database of
// pool, and the analysts' view of them (mail_outcomes_daily, in projections.Schema). It records the version applied in its own table, mailer_migrations; golang-migrate
// takes an advisory lock for it so that replicas starting together do not race, and it is
// safe to run at every start.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pgmigrate.Up(ctx, pool, migrationFiles, "migrations", migrationsTable); err != nil {
		return fmt.Errorf("mailer: migrate: %w", err)
	}
	return nil
}
