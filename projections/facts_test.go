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

// A pass's facts go in one statement, whatever the number of events (a refused request
// yields two, a granted one two, a Resend one), with their NULLs kept; applying the pass
// again adds nothing.
func TestAPassesFactsAreOneStatement(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	env := func(ev domain.Event) Envelope {
		return Envelope{Record: eventstore.RecordedEvent{ID: uuid.New(), Stream: domain.UserStream(e.acme, "jane"), OccurredAt: at}, Event: ev}
	}
	pass := []Envelope{
		env(domain.ResetRequestRejected{Reason: domain.ReasonIdentifiersMismatch}),
		env(domain.ResetTokenIssued{TokenID: "t1"}),
		env(domain.ResetTokenIssued{TokenID: "t2", Resend: true}),
	}
	if n := len(activityPage(pass)); n != 5 {
		t.Fatalf("the pass yields %d facts, want 5 (the test relies on it)", n)
	}
	for range 2 {
		counted := &countedTx{}
		err := pgx.BeginTxFunc(e.ctx, e.pool, pgx.TxOptions{BeginQuery: sqlBeginInSchema}, func(tx pgx.Tx) error {
			counted.Tx = tx
			return ResetActivity{}.ApplyBatch(e.ctx, counted, pass)
		})
		if err != nil {
			t.Fatal(err)
		}
		if counted.execs != 1 {
			t.Fatalf("%d statements for a pass's facts, want 1", counted.execs)
		}
	}
	rows, err := e.pool.Query(e.ctx, `SELECT kind, coalesce(reason, '-'), resend, coalesce(token_id, '-'), login, day
		FROM `+Schema+`.reset_activity_facts WHERE event_id = ANY($1) ORDER BY token_id NULLS FIRST, kind`,
		[]uuid.UUID{pass[0].Record.ID, pass[1].Record.ID, pass[2].Record.ID})
	if err != nil {
		t.Fatal(err)
	}
	type fact struct {
		kind, reason string
		resend       bool
		token, login string
		day          time.Time
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (f fact, err error) {
		return f, r.Scan(&f.kind, &f.reason, &f.resend, &f.token, &f.login, &f.day)
	})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	mismatch := string(domain.ReasonIdentifiersMismatch)
	want := []fact{
		{FactRejected, mismatch, false, "-", "jane", day},
		{FactRequest, mismatch, false, "-", "jane", day},
		{FactRequest, "-", false, "t1", "jane", day},
		{FactTokenIssued, "-", false, "t1", "jane", day},
		{FactTokenIssued, "-", true, "t2", "jane", day},
	}
	if len(got) != len(want) {
		t.Fatalf("%d facts stored after applying the pass twice, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("fact %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
