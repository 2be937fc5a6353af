// Package pgvacuum vacuums tables whose rows come and go all the time (the intake queues,
// the mail delivery log) once enough dead rows have piled up in them, without waiting
// for autovacuum.
//
// A queue's claim walks its primary key from the oldest row. Every row deleted (and every
// row a non-HOT update replaced) leaves an index entry that only VACUUM removes, and the
// claim steps over each of them: measured on the intake queue, a claim took 0.07 ms after
// a VACUUM and 1.6 ms with the 14,600 dead rows one c = 32 burst left (docs/benchmarks.md),
// and it grows with every request until the next VACUUM. Autovacuum comes at most once a
// naptime (a minute by default), when a burst deletes thousands of rows a second, and is
// turned off on some servers altogether.
package pgvacuum

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Every is how often a process looks at its tables' dead rows: one statement reading the
// statistics when there is nothing to do.
const Every = time.Second

// MinDead is how many dead rows make a table worth vacuuming: a vacuum of a small table
// costs about what a few hundred claims lose to its dead rows.
const MinDead = 1000

// Tidy vacuums those of tables (in the current schema) whose statistics count at least
// minDead dead rows, and returns their names. The counts come from the cumulative
// statistics, which backends report about once a second. A table another VACUUM holds
// is skipped (SKIP_LOCKED), and so is one this role may not vacuum (it stays with
// autovacuum).
func Tidy(ctx context.Context, pool *pgxpool.Pool, tables []string, minDead int) ([]string, error) {
	// Only tables this role may vacuum (a member of their owner, which a superuser always
	// is): PostgreSQL would skip the others with a warning in its log, once a second.
	rows, err := pool.Query(ctx, `SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
		WHERE s.schemaname = current_schema() AND s.relname = ANY($1) AND s.n_dead_tup >= $2
		  AND pg_has_role(c.relowner, 'MEMBER')
		ORDER BY s.relname`, tables, minDead)
	if err != nil {
		return nil, fmt.Errorf("pgvacuum: dead rows: %w", err)
	}
	due, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgvacuum: dead rows: %w", err)
	}
	for i, t := range due {
		if _, err := pool.Exec(ctx, `VACUUM (SKIP_LOCKED) `+pgx.Identifier{t}.Sanitize()); err != nil {
			return due[:i], fmt.Errorf("pgvacuum: vacuum %s: %w", t, err)
		}
	}
	return due, nil
}
