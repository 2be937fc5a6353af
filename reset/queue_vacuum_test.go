package reset

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestAVacuumLeavesTheQueuesTheirPages: a queue emptied by its workers keeps its pages
// through a VACUUM. Truncating them would take an ACCESS EXCLUSIVE lock that the
// Forgot Password INSERTs and the claims queue behind, for pages filled again at once.
func TestAVacuumLeavesTheQueuesTheirPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, pool := f.ctx, f.store.Pool()
	for _, table := range QueueTables() {
		name := pgx.Identifier{table}.Sanitize()
		if _, err := pool.Exec(ctx, `INSERT INTO `+name+` (uuid, payload) SELECT gen_random_uuid()::text, '{}' FROM generate_series(1, 2000)`); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `DELETE FROM `+name); err != nil {
			t.Fatal(err)
		}
		var before, after int64
		size := `SELECT pg_relation_size($1::regclass)`
		if err := pool.QueryRow(ctx, size, name).Scan(&before); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `VACUUM `+name); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, size, name).Scan(&after); err != nil {
			t.Fatal(err)
		}
		if before == 0 || after != before {
			t.Errorf("%s: %d bytes before the VACUUM, %d after; want them kept (and some)", table, before, after)
		}
	}
}
