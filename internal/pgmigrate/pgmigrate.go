// Package pgmigrate brings a package's PostgreSQL tables up to date with
// github.com/golang-migrate/migrate/v4: its source/iofs source reads the package's embedded
// NNNN_name.up.sql files, its database/pgx/v5 driver applies them, and each package keeps
// its own versions table, so packages migrate independently of each other.
//
// Migrations only go up. There are no .down.sql files: the event store is append-only and
// never migrated down, and the read side is rebuilt from it rather than rolled back.
//
// # Concurrency
//
// Up is safe to call from several goroutines and processes at once. golang-migrate
// serialises them itself: its pgx/v5 driver takes a session-level advisory lock,
// SELECT pg_advisory_lock(key), on the one connection it runs everything on
// ((*Postgres).Lock in database/pgx/v5/pgx.go), with key derived from the database,
// schema and versions table (database.GenerateAdvisoryLockId in database/util.go).
// (*Migrate).Up holds it while it reads the version, checks the dirty flag and applies
// every pending file, and the driver also holds it while it creates the versions table.
// The key depends on the table, so packages with different tables do not wait for each
// other.
//
// # Atomicity
//
// The driver runs each file as one Exec without arguments, which pgx sends over the simple
// query protocol (pgx.Conn.exec switches to QueryExecModeSimpleProtocol when there are no
// arguments). PostgreSQL runs a multi-statement simple query as one implicit transaction,
// so a file applies entirely or not at all — provided it has no BEGIN/COMMIT of its own
// and no statement that cannot run in a transaction block (CREATE INDEX CONCURRENTLY):
// keep it that way. golang-migrate records the version as dirty before it runs a file and
// clears the flag after, in transactions of their own.
package pgmigrate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// ErrDirty is matched (errors.Is) by the error of an Up that stops on a dirty versions
// table: one whose last migration failed or was interrupted, now or in an earlier run.
var ErrDirty = errors.New("pgmigrate: versions table is dirty")

// LockWait bounds how long Up waits for golang-migrate's lock while another process
// migrates the same table (golang-migrate's own default, 15s, is shorter than a migration
// that rewrites a large table may take). A context deadline that comes sooner wins.
const LockWait = 10 * time.Minute

// Up applies, in version order, the migrations in directory dir of files that table
// (golang-migrate's versions table, created if missing, in the current schema) does not
// yet record. Already up to date is success. Every file in dir must be named
// NNNN_name.up.sql.
//
// golang-migrate runs on a connection of its own, opened with pool's connection settings
// and closed before Up returns; pool itself is not used for it, nor closed. Cancelling ctx
// stops Up before the next file (a file already running finishes).
//
// A dirty table stops Up with an error naming the table, the version and how to recover;
// Up never forces a version. A database already past the newest file (a newer release
// migrated it first) is left as it is.
func Up(ctx context.Context, pool *pgxpool.Pool, files fs.FS, dir, table string) (err error) {
	if table == "" {
		return errors.New("pgmigrate: no versions table named")
	}
	fail := func(err error) error { return fmt.Errorf("pgmigrate: %s: %w", table, err) }
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	list, err := readDir(files, dir)
	if err != nil {
		return fail(err)
	}

	// Dedicated connections rather than stdlib.OpenDBFromPool(pool): if WithInstance fails
	// after taking its connection it never gives it back, and a pool connection held
	// forever makes pool.Close block forever. The connector remembers every connection it
	// opens, and closeAll closes any the driver left open.
	conns := &connector{Connector: stdlib.GetConnector(*pool.Config().ConnConfig)}
	defer conns.closeAll()
	m, drv, err := newMigrator(ctx, conns, files, dir, table)
	if err != nil {
		return fail(err)
	}
	defer func() {
		srcErr, dbErr := m.Close()
		if e := errors.Join(srcErr, dbErr); e != nil {
			err = errors.Join(err, fail(fmt.Errorf("close: %w", e)))
		}
	}()
	m.LockTimeout = LockWait
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < m.LockTimeout {
		m.LockTimeout = max(time.Until(deadline), time.Millisecond)
	}
	stop := context.AfterFunc(ctx, func() {
		select {
		case m.GracefulStop <- true:
		default:
		}
	})
	defer stop()

	if v, dirty, err := drv.Version(); err != nil {
		return fail(dbError(err))
	} else if !dirty && v != database.NilVersion && uint(v) > list.newest() {
		return nil // a newer release migrated this database; nothing here is pending
	}
	if err := upError(m.Up(), m.LockTimeout, drv, list, table); err != nil {
		return err
	}
	if ctx.Err() != nil { // GracefulStop may have cut the run short
		if v, _, verr := drv.Version(); verr != nil || v == database.NilVersion || uint(v) < list.newest() {
			return fail(fmt.Errorf("stopped before the newest migration was applied: %w", ctx.Err()))
		}
	}
	return nil
}

// newMigrator builds the migrator over files in dir and the versions table, connecting through
// conns under ctx. On error everything it opened is closed again.
func newMigrator(ctx context.Context, conns *connector, files fs.FS, dir, table string) (*migrate.Migrate, database.Driver, error) {
	src, err := iofs.New(files, dir)
	if err != nil {
		return nil, nil, err
	}
	db := sql.OpenDB(conns)
	if err := db.PingContext(ctx); err != nil { // connect under ctx; WithInstance reuses it
		return nil, nil, errors.Join(err, db.Close(), src.Close())
	}
	drv, err := migratepgx.WithInstance(db, &migratepgx.Config{MigrationsTable: table})
	if err != nil {
		return nil, nil, errors.Join(dbError(err), db.Close(), src.Close())
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		return nil, nil, errors.Join(err, drv.Close(), src.Close()) // drv.Close closes db
	}
	return m, drv, nil
}

// upError explains what m.Up returned (nil when it applied everything or had nothing to do).
func upError(err error, lockTimeout time.Duration, drv database.Driver, list migrations, table string) error {
	switch {
	case err == nil, errors.Is(err, migrate.ErrNoChange):
		return nil
	case errors.Is(err, migrate.ErrLockTimeout):
		// golang-migrate leaves its pg_advisory_lock waiting: m.Close waits for it to
		// return, and closeAll then closes the connection, which releases the lock.
		return fmt.Errorf("pgmigrate: %s: another process held the migration lock for longer than %s: %w", table, lockTimeout, err)
	}
	var de migrate.ErrDirty
	if errors.As(err, &de) {
		return &dirtyError{
			msg: fmt.Sprintf("pgmigrate: %s is marked dirty at version %d: %s failed or was interrupted in an earlier run, "+
				"and no migration runs until that is resolved. %s",
				table, de.Version, list.describe(uint(de.Version)), list.recovery(table, uint(de.Version))),
			cause: err,
		}
	}
	return migrationFailed(drv, list, table, err)
}

// migrationFailed explains an error of m.Up that is not ErrDirty: if a file failed, the
// driver has left the table dirty at its version.
func migrationFailed(drv database.Driver, list migrations, table string, err error) error {
	v, dirty, verr := drv.Version()
	if verr != nil || !dirty {
		return fmt.Errorf("pgmigrate: %s: %w", table, dbError(err))
	}
	// The driver's error quotes the whole file: report the line and the PostgreSQL error.
	cause, where := err, ""
	if de, ok := asDBError(err); ok && de.OrigErr != nil {
		cause = de.OrigErr
		if de.Line > 0 {
			where = fmt.Sprintf(" at line %d", de.Line)
		}
	}
	return &dirtyError{
		msg: fmt.Sprintf("pgmigrate: %s: %s failed%s: %v. %s is now marked dirty at version %d. %s",
			table, list.describe(uint(v)), where, cause, table, v, list.recovery(table, uint(v))),
		cause: cause,
	}
}

// dbError replaces golang-migrate's database.Error, which has no Unwrap (errors.As cannot
// reach the *pgconn.PgError in it) and quotes the statement whatever its length, by an
// error that wraps the cause and quotes only a short one-line statement.
func dbError(err error) error {
	de, ok := asDBError(err)
	if !ok || de.OrigErr == nil {
		return err
	}
	var parts []string
	if de.Err != "" {
		parts = append(parts, de.Err)
	}
	if q := strings.TrimSpace(string(de.Query)); q != "" && len(q) <= 200 && !strings.ContainsRune(q, '\n') {
		parts = append(parts, q)
	}
	if len(parts) == 0 {
		return de.OrigErr
	}
	return fmt.Errorf("%s: %w", strings.Join(parts, ": "), de.OrigErr)
}

// asDBError finds the driver's database.Error, which it returns by value or by pointer.
func asDBError(err error) (database.Error, bool) {
	var de database.Error
	var dep *database.Error
	switch {
	case errors.As(err, &de):
		return de, true
	case errors.As(err, &dep) && dep != nil:
		return *dep, true
	}
	return database.Error{}, false
}

type dirtyError struct {
	msg   string
	cause error
}

func (e *dirtyError) Error() string   { return e.msg }
func (e *dirtyError) Unwrap() []error { return []error{ErrDirty, e.cause} }

// migrations is the file name of each version in the source directory.
type migrations map[uint]string

// readDir lists dir and checks that golang-migrate will see every file in it: its iofs
// source silently skips a name it cannot parse (such as the old NNNN_name.sql).
func readDir(files fs.FS, dir string) (migrations, error) {
	entries, err := fs.ReadDir(files, dir)
	if err != nil {
		return nil, err
	}
	list := migrations{}
	for _, e := range entries {
		name := e.Name()
		m, err := source.Parse(name)
		if e.IsDir() || err != nil || m.Direction != source.Up || !strings.HasSuffix(name, ".up.sql") {
			return nil, fmt.Errorf("migration %s: want a file named NNNN_name.up.sql (up migrations only)", path.Join(dir, name))
		}
		if other, dup := list[m.Version]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, name, m.Version)
		}
		list[m.Version] = name
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("no migrations in %s", dir)
	}
	return list, nil
}

func (l migrations) newest() uint { return slices.Max(slices.Collect(maps.Keys(l))) }

// describe names version v and, if this build has it, its file.
func (l migrations) describe(v uint) string {
	if name, ok := l[v]; ok {
		return fmt.Sprintf("migration %d (%s)", v, name)
	}
	return fmt.Sprintf("migration %d (not in this build)", v)
}

// recovery says how to clear the dirty flag at version v. A file that failed changed
// nothing (it ran in one transaction), so its version must go back to the one before it;
// only if its changes are all there (a run killed between applying it and recording it)
// is clearing the flag alone right.
func (l migrations) recovery(table string, v uint) string {
	var prev uint
	for k := range l {
		if k < v && k > prev {
			prev = k
		}
	}
	back := fmt.Sprintf("UPDATE %s SET version = %d, dirty = false", table, prev)
	if prev == 0 {
		back = "DELETE FROM " + table
	}
	return fmt.Sprintf("To recover: check the schema first. If none of version %d's changes are in the database "+
		"(the usual case: a file that fails is rolled back whole), fix the file's SQL, run `%s` and migrate again. "+
		"If all of them are (the run stopped after applying it), run `UPDATE %s SET dirty = false` instead. "+
		"Do not clear the flag on a half-applied schema.", v, back, table)
}

// connector opens golang-migrate's connections and remembers them, so that closeAll can
// close any the driver fails to (WithInstance keeps its connection when it returns an error).
type connector struct {
	driver.Connector
	mu    sync.Mutex
	conns []driver.Conn
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err == nil {
		c.mu.Lock()
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
	}
	return conn, err
}

// closeAll closes every connection opened. Closing one twice is harmless. Call it only
// once nothing uses them: after the driver and the *sql.DB are closed.
func (c *connector) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}
