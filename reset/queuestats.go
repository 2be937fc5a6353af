package reset

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// QueueStat is one intake queue as it stands: how many commands wait in it and when the
// oldest of them was queued (zero when it is empty).
type QueueStat struct {
	Queue  string // the command's topic: reset_request_token, reset_resend_token
	Depth  int
	Oldest time.Time
}

// QueueTables are the intake queues' tables: a row is deleted once its command is
// decided, so they are all churn (pgvacuum).
func QueueTables() []string { return []string{tables[topicRequest], tables[topicResend]} }

// QueueStats reads both intake queues (for metrics, at scrape time). Rows being decided
// right now are still counted: they leave the table when their command is decided.
func QueueStats(ctx context.Context, pool *pgxpool.Pool) ([]QueueStat, error) {
	out := make([]QueueStat, 0, len(tables))
	for _, topic := range []string{topicRequest, topicResend} {
		s := QueueStat{Queue: topic}
		var oldest *time.Time
		if err := pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM `+tables[topic]).Scan(&s.Depth, &oldest); err != nil {
			return nil, fmt.Errorf("reset: queue %s: %w", topic, err)
		}
		if oldest != nil {
			s.Oldest = *oldest
		}
		out = append(out, s)
	}
	return out, nil
}

// Drained reports whether both intake queues are empty. It looks for a first row by the
// primary key, so it costs the same however many deleted rows await vacuum, where
// QueueStats' count reads them all (the bench harness asks this every 20 ms).
func Drained(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var queued bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+tables[topicRequest]+` ORDER BY "offset" LIMIT 1)
		OR EXISTS (SELECT 1 FROM `+tables[topicResend]+` ORDER BY "offset" LIMIT 1)`).Scan(&queued)
	if err != nil {
		return false, fmt.Errorf("reset: intake queues: %w", err)
	}
	return !queued, nil
}
