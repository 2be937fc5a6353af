package mailer

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ChurnedTables are the mailer's tables whose rows are replaced all the time: every
// delivery's claim, lease and outcome is an update that leaves a dead row (pgvacuum).
func ChurnedTables() []string { return []string{"mail_deliveries"} }

// DeliveryCount is how many rows of the delivery log have one kind and state.
type DeliveryCount struct {
	Kind, State string
	Count       int
}

// DeliveryStats counts the delivery log by kind and state, and says when the oldest
// pending delivery was queued (zero when none is pending). For metrics, at scrape time.
func DeliveryStats(ctx context.Context, pool *pgxpool.Pool) (counts []DeliveryCount, oldestPending time.Time, err error) {
	rows, err := pool.Query(ctx, `SELECT kind, state, count(*) FROM mail_deliveries GROUP BY kind, state ORDER BY kind, state`)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("mailer: delivery stats: %w", err)
	}
	counts, err = pgx.CollectRows(rows, pgx.RowToStructByPos[DeliveryCount])
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("mailer: delivery stats: %w", err)
	}
	var oldest *time.Time
	// The sender's partial index on pending rows keeps this cheap however long the log is.
	if err := pool.QueryRow(ctx, `SELECT min(created_at) FROM mail_deliveries WHERE state = $1`, StatePending).Scan(&oldest); err != nil {
		return nil, time.Time{}, fmt.Errorf("mailer: delivery stats: %w", err)
	}
	if oldest != nil {
		oldestPending = *oldest
	}
	return counts, oldestPending, nil
}
