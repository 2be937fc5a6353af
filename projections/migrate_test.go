package projections

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/pgmigrate"
	"selfreset/internal/testdb"
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
		// Not t.Context(): it is cancelled before cleanups run, and the role was left behind.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, sql := range []string{"DROP OWNED BY ", "DROP ROLE IF EXISTS "} {
			if _, err := e.pool.Exec(ctx, sql+pgx.Identifier{role}.Sanitize()); err != nil {
				t.Errorf("dropping the test's role %s: %v", role, err)
			}
		}
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

	// A grant in public made by hand is taken back by the next migrate.
	_, err = e.pool.Exec(e.ctx, "GRANT SELECT ON public.projection_checkpoints TO "+pgx.Identifier{role}.Sanitize())
	e.must(err)
	check(`SELECT has_table_privilege($1, 'public.projection_checkpoints', 'SELECT')`, true)
	e.must(grantReadOnly(e.ctx, e.pool, role))
	check(`SELECT has_table_privilege($1, 'public.projection_checkpoints', 'SELECT')`, false)
}

// TestUpgradeMovesReadModels: a database migrated before the read models had a schema of
// their own (versions 1–4, tables in public) keeps its rows through the upgrade, in
// Schema, and loses the login typed for accounts that do not exist.
func TestUpgradeMovesReadModels(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	old := fstest.MapFS{}
	for _, name := range []string{"0001_runner.up.sql", "0002_admin_users.up.sql", "0003_reset_tokens.up.sql", "0004_reset_activity.up.sql"} {
		b, err := migrationFiles.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		old["migrations/"+name] = &fstest.MapFile{Data: b}
	}
	if err := pgmigrate.Up(ctx, pool, old, "migrations", migrationsTable); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO admin_users (provider, login, display_name, updated_at) VALUES ('ACME', 'alice', 'Alice', now());
		INSERT INTO reset_activity_facts (event_id, kind, provider, login, day, occurred_at, reason) VALUES
			(gen_random_uuid(), 'rejected', 'ACME', 'someone@example.org', current_date, now(), 'unknown_account'),
			(gen_random_uuid(), 'request', 'ACME', 'alice', current_date, now(), NULL)`); err != nil {
		t.Fatal(err)
	}

	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	count := func(sql string) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM readmodels.admin_users WHERE login = 'alice'`); n != 1 {
		t.Errorf("%d alice rows in readmodels.admin_users, want 1", n)
	}
	if n := count(`SELECT count(*) FROM readmodels.reset_activity_facts WHERE login IS NULL AND reason = 'unknown_account'`); n != 1 {
		t.Errorf("%d unknown-account facts without a login, want 1", n)
	}
	if n := count(`SELECT count(*) FROM readmodels.reset_activity_facts WHERE login = 'alice'`); n != 1 {
		t.Errorf("%d facts of alice, want 1", n)
	}
	if n := count(`SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relname IN ('providers', 'admin_users', 'reset_tokens', 'reset_activity_facts',
			'reset_tokens_valid_now', 'reset_activity_daily')`); n != 0 {
		t.Errorf("%d read-model relations left in public", n)
	}
	if n := count(`SELECT count(*) FROM readmodels.reset_activity_daily`); n != 1 {
		t.Errorf("reset_activity_daily has %d rows after the move, want 1", n)
	}
}
