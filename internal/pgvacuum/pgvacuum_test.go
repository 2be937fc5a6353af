package pgvacuum

import (
	"context"
	"slices"
	"strings"
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

// A role that may not vacuum a table leaves it alone rather than asking PostgreSQL to skip
// it with a warning every second.
func TestTidyLeavesTablesItMayNotVacuum(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	url := testdb.New(t)
	owner, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close) // after the role is dropped (cleanups run last first)
	// Roles are the server's, not the database's: named after this test's database.
	role := "pgvacuum_t_" + strings.TrimPrefix(owner.Config().ConnConfig.Database, "selfreset_t_")
	for _, q := range []string{
		`CREATE ROLE ` + role + ` NOLOGIN`,
		`CREATE TABLE churn (id bigint PRIMARY KEY)`,
		`GRANT SELECT ON churn TO ` + role,
		`INSERT INTO churn SELECT generate_series(1, 2000)`,
		`DELETE FROM churn`,
		`SELECT pg_stat_force_next_flush()`,
		`SELECT 1`,
	} {
		if _, err := owner.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = owner.Exec(context.Background(), `DROP TABLE churn; DROP ROLE `+role) })
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["role"] = role
	other, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	got, err := Tidy(ctx, other, []string{"churn"}, MinDead)
	if err != nil || len(got) != 0 {
		t.Fatalf("a role that does not own the table vacuumed %q (%v)", got, err)
	}
	if got, err := Tidy(ctx, owner, []string{"churn"}, MinDead); err != nil || len(got) != 1 {
		t.Fatalf("the owner vacuumed %q (%v), want the table", got, err)
	}
}
