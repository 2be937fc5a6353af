package ratelimit

import (
	"context"
	"embed"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate brings the rate_limits table up to date, recording its version in
// ratelimit_migrations (internal/pgmigrate says how, and why it is safe at every start).
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgmigrate.Up(ctx, pool, migrationFiles, "migrations", "ratelimit_migrations")
}
