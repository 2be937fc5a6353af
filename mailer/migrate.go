package mailer

import (
	"context"
	"embed"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate brings the mailer's table (mail_deliveries) and the analysts' view of it
// (mail_outcomes_daily, in projections.Schema) up to date, recording their version in
// mailer_migrations (internal/pgmigrate says how, and why it is safe at every start).
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgmigrate.Up(ctx, pool, migrationFiles, "migrations", "mailer_migrations")
}
