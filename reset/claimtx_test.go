package reset

import (
	stdsql "database/sql"
	"testing"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/testkit"
)

// TestAClaimIsTwoRoundTrips: a claim through pipelinedBeginner sends BEGIN with its
// SELECT and the DELETE with its COMMIT, and ends as watermill-sql's would: the decided
// rows deleted on commit, every row kept on rollback or when the DELETE fails, and the
// connection clean for the next claim either way.
func TestAClaimIsTwoRoundTrips(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := f.ctx
	trips := &testkit.Trips{}
	// Every claim on the same connection: a dirty one would show.
	pool := testkit.TracedPool(t, f.store.Pool(), trips, func(c *pgxpool.Config) { c.MaxConns = 1 })
	table := tables[topicRequest]
	if _, err := pool.Exec(ctx, `INSERT INTO `+table+` (uuid, payload) SELECT gen_random_uuid()::text, '{}' FROM generate_series(1, 3)`); err != nil {
		t.Fatal(err)
	}
	queued := func() int {
		t.Helper()
		var n int
		if err := f.store.Pool().QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	sel, err := newQueueSchema().SelectQuery(wsql.SelectQueryParams{Topic: topicRequest})
	if err != nil {
		t.Fatal(err)
	}
	b := pipelinedBeginner{pool: pool}
	// claim claims a batch, "decides" its first row, and ends with end.
	claim := func(ack string, end func(wsql.Tx) error) error {
		t.Helper()
		trips.Take()
		tx, err := b.BeginTx(ctx, &stdsql.TxOptions{Isolation: stdsql.LevelReadCommitted})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := tx.QueryContext(ctx, sel.Query, sel.Args...)
		if err != nil {
			t.Fatal(err)
		}
		var first int64
		n := 0
		for rows.Next() {
			var offset int64
			var id string
			var payload, metadata []byte
			if err := rows.Scan(&offset, &id, &payload, &metadata); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				first = offset
			}
			n++
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("the claim found no rows")
		}
		if _, err := tx.ExecContext(ctx, ack, []int64{first}); err != nil {
			t.Fatal(err)
		}
		return end(tx)
	}
	deleteDecided := `DELETE FROM ` + table + ` WHERE "offset" = ANY($1)`

	if err := claim(deleteDecided, wsql.Tx.Rollback); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if n := queued(); n != 3 {
		t.Fatalf("after a rolled-back claim %d rows are queued, want 3", n)
	}
	if err := claim(`DELETE FROM `+table+` WHERE "offset" = ANY($1) AND no_such_column`, wsql.Tx.Commit); err == nil {
		t.Fatal("a claim whose DELETE fails committed")
	}
	if n := queued(); n != 3 {
		t.Fatalf("after a failed DELETE %d rows are queued, want 3", n)
	}
	if err := claim(deleteDecided, wsql.Tx.Commit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if statements, batches := trips.Take(); statements != 0 || batches != 2 {
		t.Errorf("the claim sent %d statements and %d batches, want 0 and 2", statements, batches)
	}
	if n := queued(); n != 2 {
		t.Fatalf("after a committed claim %d rows are queued, want 2", n)
	}
	if s := pool.Stat(); s.NewConnsCount() != 1 || s.AcquiredConns() != 0 {
		t.Fatalf("pool after the claims: %d connections opened, %d acquired; want its first one back", s.NewConnsCount(), s.AcquiredConns())
	}
}
