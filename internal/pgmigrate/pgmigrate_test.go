package pgmigrate

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/testdb"
)

const table = "test_migrations"

// files are three migrations that log the order they ran in. Versions 1, 2, 10: applied
// in numeric order, not the names' lexical one.
func files() fstest.MapFS {
	return fstest.MapFS{
		"migrations/1_log.up.sql": {Data: []byte(`
			CREATE TABLE applied (seq serial PRIMARY KEY, version int NOT NULL);
			INSERT INTO applied (version) VALUES (1);`)},
		"migrations/2_widgets.up.sql": {Data: []byte(`
			CREATE TABLE widgets (id int PRIMARY KEY);
			INSERT INTO applied (version) VALUES (2);`)},
		"migrations/10_widget_names.up.sql": {Data: []byte(`
			ALTER TABLE widgets ADD COLUMN name text NOT NULL DEFAULT '';
			INSERT INTO applied (version) VALUES (10);`)},
	}
}

func newPool(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// applied is the versions the migrations logged, in the order they ran.
func applied(t *testing.T, pool *pgxpool.Pool) []int {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT version FROM applied ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// version is what the versions table records.
func version(t *testing.T, pool *pgxpool.Pool) (v int, dirty bool) {
	t.Helper()
	if err := pool.QueryRow(t.Context(), `SELECT version, dirty FROM `+table).Scan(&v, &dirty); err != nil {
		t.Fatal(err)
	}
	return v, dirty
}

func wantApplied(t *testing.T, pool *pgxpool.Pool, want ...int) {
	t.Helper()
	if got := applied(t, pool); !equal(got, want) {
		t.Fatalf("migrations ran as %v, want %v", got, want)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestUpAppliesInOrderAndIsIdempotent(t *testing.T) {
	pool := newPool(t, testdb.New(t))
	ctx := t.Context()
	if err := Up(ctx, pool, files(), "migrations", table); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, pool, 1, 2, 10)
	if v, dirty := version(t, pool); v != 10 || dirty {
		t.Fatalf("version %d dirty %v, want 10 clean", v, dirty)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO widgets (id, name) VALUES (1, 'a')`); err != nil {
		t.Fatalf("schema after Up: %v", err)
	}

	// Up to date: nothing runs, and that is success.
	if err := Up(ctx, pool, files(), "migrations", table); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	wantApplied(t, pool, 1, 2, 10)

	// A new file runs on the next Up, alone.
	more := files()
	more["migrations/11_more.up.sql"] = &fstest.MapFile{Data: []byte(`INSERT INTO applied (version) VALUES (11);`)}
	if err := Up(ctx, pool, more, "migrations", table); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, pool, 1, 2, 10, 11)

	// Up borrowed nothing from the pool and kept nothing open.
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d pool connections still acquired", n)
	}
}

// Concurrent first runs (here as separate pools, like separate processes) take turns on
// golang-migrate's lock: each migration runs exactly once and every Up succeeds.
func TestConcurrentUp(t *testing.T) {
	dbURL := testdb.New(t)
	fsys := files()
	// Hold the lock a while, so that the others really wait for it.
	fsys["migrations/2_widgets.up.sql"].Data = append([]byte(`SELECT pg_sleep(0.3);`), fsys["migrations/2_widgets.up.sql"].Data...)
	pools := make([]*pgxpool.Pool, 4)
	for i := range pools {
		pools[i] = newPool(t, dbURL)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(pools))
	for i, pool := range pools {
		wg.Go(func() { errs[i] = Up(t.Context(), pool, fsys, "migrations", table) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Up %d: %v", i, err)
		}
	}
	wantApplied(t, pools[0], 1, 2, 10)
	if v, dirty := version(t, pools[0]); v != 10 || dirty {
		t.Fatalf("version %d dirty %v, want 10 clean", v, dirty)
	}
}

// Up waits for the advisory lock golang-migrate's driver takes for the table (the key
// lockKey computes the way the driver does).
func TestUpWaitsForTheLock(t *testing.T) {
	dbURL := testdb.New(t)
	pool := newPool(t, dbURL)
	ctx := t.Context()
	holder, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	var dbName, schema string
	if err := holder.QueryRow(ctx, `SELECT current_database(), current_schema()`).Scan(&dbName, &schema); err != nil {
		t.Fatal(err)
	}
	key, err := lockKey(dbName, schema, table)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Up(ctx, pool, files(), "migrations", table) }()
	select {
	case err := <-done:
		t.Fatalf("Up finished while the lock was held: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Up did not finish after the lock was released")
	}
	wantApplied(t, pool, 1, 2, 10)
}

// A failing file changes nothing, leaves the table dirty at its version and says how to
// recover; the next Up refuses to run until that is done; following the advice works.
func TestBrokenMigration(t *testing.T) {
	pool := newPool(t, testdb.New(t))
	ctx := t.Context()
	broken := files()
	broken["migrations/2_widgets.up.sql"].Data = []byte("CREATE TABLE widgets (id int PRIMARY KEY);\nINSERT INTO nowhere VALUES (2);\n")

	err := Up(ctx, pool, broken, "migrations", table)
	if err == nil {
		t.Fatal("Up of a broken migration succeeded")
	}
	t.Logf("first error: %v", err)
	if !errors.Is(err, ErrDirty) {
		t.Errorf("error does not match ErrDirty: %v", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
		t.Errorf("error does not carry the PostgreSQL error (undefined_table): %v", err)
	}
	for _, want := range []string{table, "migration 2 (2_widgets.up.sql) failed at line 2", `relation "nowhere" does not exist`,
		"dirty at version 2", "UPDATE " + table + " SET version = 1, dirty = false", "UPDATE " + table + " SET dirty = false"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "CREATE TABLE widgets") {
		t.Errorf("error quotes the whole file: %v", err)
	}
	// The file ran as one transaction: its first statement left nothing behind.
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('widgets') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("widgets exists (%v) after its migration failed", err)
	}
	wantApplied(t, pool, 1)
	if v, dirty := version(t, pool); v != 2 || !dirty {
		t.Fatalf("version %d dirty %v, want 2 dirty", v, dirty)
	}

	// Fixing the file is not enough: the table is dirty, and Up never forces it.
	err = Up(ctx, pool, files(), "migrations", table)
	if err == nil {
		t.Fatal("Up on a dirty table succeeded")
	}
	t.Logf("second error: %v", err)
	if !errors.Is(err, ErrDirty) {
		t.Errorf("error does not match ErrDirty: %v", err)
	}
	for _, want := range []string{table + " is marked dirty at version 2", "migration 2 (2_widgets.up.sql)",
		"UPDATE " + table + " SET version = 1, dirty = false"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}

	// The recovery the error gives, then Up with the fixed file.
	if _, err := pool.Exec(ctx, `UPDATE `+table+` SET version = 1, dirty = false`); err != nil {
		t.Fatal(err)
	}
	if err := Up(ctx, pool, files(), "migrations", table); err != nil {
		t.Fatal(err)
	}
	wantApplied(t, pool, 1, 2, 10)
}

// A failing first migration can only go back to no version at all.
func TestBrokenFirstMigration(t *testing.T) {
	pool := newPool(t, testdb.New(t))
	broken := fstest.MapFS{"m/0001_first.up.sql": {Data: []byte(`SELEC 1;`)}}
	err := Up(t.Context(), pool, broken, "m", table)
	if err == nil || !strings.Contains(err.Error(), "DELETE FROM "+table) {
		t.Fatalf("error does not say to delete the version: %v", err)
	}
}

// A database a newer release has migrated further is left alone.
func TestNewerDatabaseIsLeftAlone(t *testing.T) {
	pool := newPool(t, testdb.New(t))
	ctx := t.Context()
	newer := files()
	newer["migrations/11_more.up.sql"] = &fstest.MapFile{Data: []byte(`INSERT INTO applied (version) VALUES (11);`)}
	if err := Up(ctx, pool, newer, "migrations", table); err != nil {
		t.Fatal(err)
	}
	if err := Up(ctx, pool, files(), "migrations", table); err != nil {
		t.Fatalf("older build's Up: %v", err)
	}
	wantApplied(t, pool, 1, 2, 10, 11)
}

// golang-migrate would silently skip a file it cannot parse, such as the old NNNN_name.sql.
func TestMisnamedFileIsRefused(t *testing.T) {
	pool := newPool(t, testdb.New(t))
	for _, name := range []string{"0003_old_style.sql", "0003_down.down.sql", "x_no_version.up.sql"} {
		fsys := files()
		fsys["migrations/"+name] = &fstest.MapFile{Data: []byte(`SELECT 1;`)}
		err := Up(t.Context(), pool, fsys, "migrations", table)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	dup := files()
	dup["migrations/0002_again.up.sql"] = &fstest.MapFile{Data: []byte(`SELECT 1;`)}
	if err := Up(t.Context(), pool, dup, "migrations", table); err == nil || !strings.Contains(err.Error(), "share version 2") {
		t.Errorf("duplicate version: %v", err)
	}
}

// When golang-migrate cannot even set up (here: no right to create its table), Up fails
// with the database's error and leaves no connection behind: not in the pool, whose Close
// would otherwise block for ever, and not on the server.
func TestSetupFailureLeaksNoConnection(t *testing.T) {
	dbURL := testdb.New(t)
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) }) // after the role's drop below
	role := "pgmigrate_t_" + strings.TrimPrefix(mustDBName(t, admin), "selfreset_t_")
	if _, err := admin.Exec(ctx, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()+` LOGIN`); err != nil {
		t.Skipf("cannot create a role to test with: %v", err)
	}
	t.Cleanup(func() {
		// What the role owns or was granted in this database goes first, or the role cannot
		// go; a role left behind stays on the shared server.
		for _, sql := range []string{"DROP OWNED BY ", "DROP ROLE "} {
			if _, err := admin.Exec(context.Background(), sql+pgx.Identifier{role}.Sanitize()); err != nil {
				t.Errorf("dropping the test's role %s: %v", role, err)
			}
		}
	})
	// PostgreSQL 15+ gives PUBLIC no CREATE on schema public; make that so on older ones.
	if _, err := admin.Exec(ctx, `REVOKE CREATE ON SCHEMA public FROM PUBLIC`); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Skipf("needs a URL-form %s: %v", testdb.EnvURL, err)
	}
	u.User = url.User(role)
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	err = Up(ctx, pool, files(), "migrations", table)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("Up without CREATE rights: %v, want insufficient_privilege", err)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d pool connections still acquired", n)
	}
	closed := make(chan struct{})
	go func() { pool.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("pool.Close blocked")
	}
	// The server notices a closed connection a moment later.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, role).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections of %s still open", n, role)
		}
	}
}

func mustDBName(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var name string
	if err := conn.QueryRow(t.Context(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestCancelledContext(t *testing.T) {
	pool := newPool(t, testdb.New(t))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Up(ctx, pool, files(), "migrations", table); !errors.Is(err, context.Canceled) {
		t.Fatalf("Up with a cancelled context: %v", err)
	}
}

// lockKey is the advisory lock key golang-migrate's pgx/v5 driver locks for table
// ((*Postgres).Lock: database.GenerateAdvisoryLockId(database, schema, table)).
func lockKey(dbName, schema, table string) (int64, error) {
	s, err := database.GenerateAdvisoryLockId(dbName, schema, table)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}
