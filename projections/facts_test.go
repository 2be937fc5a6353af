package projections

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"selfreset/domain"
	"selfreset/eventstore"
)

// countedTx counts the statements sent through it.
type countedTx struct {
	pgx.Tx
	execs int
}

func (c *countedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.execs++
	return c.Tx.Exec(ctx, sql, args...)
}

// An event's facts go in one statement (a refused request yields two: the request and
// the refusal), and applying the event again adds nothing.
func TestAnEventsFactsAreOneStatement(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	env := Envelope{Record: eventstore.RecordedEvent{ID: uuid.New(), Stream: domain.UserStream(e.acme, "jane"), OccurredAt: at},
		Event: domain.ResetRequestRejected{Reason: domain.ReasonIdentifiersMismatch}}
	rows := activityRows(env)
	if len(rows) != 2 {
		t.Fatalf("a refused request yields %d facts, want 2 (the test relies on it)", len(rows))
	}
	for range 2 {
		counted := &countedTx{}
		err := pgx.BeginTxFunc(e.ctx, e.pool, pgx.TxOptions{BeginQuery: sqlBeginInSchema}, func(tx pgx.Tx) error {
			counted.Tx = tx
			return activityFacts().insert(e.ctx, counted, rows...)
		})
		if err != nil {
			t.Fatal(err)
		}
		if counted.execs != 1 {
			t.Fatalf("%d statements for one event's facts, want 1", counted.execs)
		}
	}
	var n int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM `+Schema+`.reset_activity_facts WHERE event_id = $1`, env.Record.ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d facts stored after applying the event twice, want 2", n)
	}
}
