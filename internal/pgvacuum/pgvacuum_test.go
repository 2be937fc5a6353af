package pgvacuum

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/testdb"
)

func TestTidyVacuumsOnlyTablesWithEnoughDeadRows(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// Rows deleted: the queue's way. "Odd name" checks the quoting.
	churn := map[string]int{"busy": 3000, "quiet": 50, "Odd name": 2000}
	for table, n := range churn {
		ident := pgx.Identifier{table}.Sanitize()
		if _, err := pool.Exec(ctx, `CREATE TABLE `+ident+` (id bigint PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO `+ident+` SELECT generate_series(1, $1::int)`, n); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `DELETE FROM `+ident); err != nil {
			t.Fatal(err)
		}
	}
	// The deletes' counts reach the statistics when their backends report; make them do so now.
	conns := make([]*pgxpool.Conn, 0, pool.Stat().TotalConns())
	for range pool.Stat().TotalConns() {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, `SELECT 1`); err != nil { // the flush comes at this transaction's end
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		c.Release()
	}
	tables := []string{"busy", "quiet", "Odd name", "missing"}
	got, err := Tidy(ctx, pool, tables, MinDead)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Odd name", "busy"}; !slices.Equal(got, want) {
		t.Fatalf("vacuumed %q, want %q", got, want)
	}
	for table, n := range churn {
		var dead, vacuums int
		if err := pool.QueryRow(ctx, `SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables WHERE relname = $1`, table).Scan(&dead, &vacuums); err != nil {
			t.Fatal(err)
		}
		wantVacuums := 0
		if n >= MinDead {
			wantVacuums = 1
		}
		if vacuums != wantVacuums || (wantVacuums == 1 && dead != 0) {
			t.Errorf("%s: %d vacuums, %d dead rows left; want %d vacuums and, if vacuumed, none left", table, vacuums, dead, wantVacuums)
		}
	}
}
