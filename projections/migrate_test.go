package projections

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestGrantReadOnlyRace creates a role that does not exist yet from several goroutines at
// once (as replicas or several databases migrating together would), then once more: every
// call succeeds and the role ends up with exactly the analyst's rights. It uses a role of
// its own, dropped afterwards, since roles belong to the whole shared server.
func TestGrantReadOnlyRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := "selfreset_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx := t.Context()
		_, _ = e.pool.Exec(ctx, "DROP OWNED BY "+pgx.Identifier{role}.Sanitize())
		_, _ = e.pool.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
	})
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- grantReadOnly(e.ctx, e.pool, role) }()
	}
	for range 4 {
		e.must(<-errs)
	}
	e.must(grantReadOnly(e.ctx, e.pool, role))

	check := func(sql string, want bool) {
		t.Helper()
		var got bool
		e.must(e.pool.QueryRow(e.ctx, sql, role).Scan(&got))
		if got != want {
			t.Errorf("%s: %v, want %v", sql, got, want)
		}
	}
	check(`SELECT rolcanlogin FROM pg_roles WHERE rolname = $1`, false)
	check(`SELECT has_schema_privilege($1, 'readmodels', 'USAGE')`, true)
	check(`SELECT has_schema_privilege($1, 'readmodels', 'CREATE')`, false)
	check(`SELECT has_table_privilege($1, 'readmodels.admin_users', 'SELECT')`, true)
	check(`SELECT has_table_privilege($1, 'readmodels.admin_users', 'INSERT')`, false)
	check(`SELECT has_table_privilege($1, 'readmodels.reset_activity_daily', 'SELECT')`, true)
	check(`SELECT has_table_privilege($1, 'public.projection_checkpoints', 'SELECT')`, false)

	// A table created later in the schema is readable without another migrate.
	_, err := e.pool.Exec(e.ctx, `CREATE TABLE readmodels.later (x int)`)
	e.must(err)
	check(`SELECT has_table_privilege($1, 'readmodels.later', 'SELECT')`, true)
}
