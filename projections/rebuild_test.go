package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/commands"
	"selfreset/domain"
)

// TestRebuildWhileLive rebuilds the read models while the runner feeds them and commands
// keep appending. The rebuild replaces the live rows (a corrupted row comes back right),
// the live runner skips what the rebuild applied (strict_log would park a duplicate), and
// in the end the read models equal a fresh rebuild row for row (this test's rows: on the
// shared EventStoreDB the fresh rebuild, made later, may hold more of other tests').
func TestRebuildWhileLive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createStrictLog()
	e.writeHistory()
	models := append(ReadModels(), strictLog{})
	r := e.runner(asProjections(models...))
	rn := e.start(r)
	e.waitCaughtUp(r.names()...)

	// Damage a row behind the runner's back: only a rebuild repairs it.
	_, err := e.pool.Exec(e.ctx, `UPDATE readmodels.admin_users SET display_name = 'corrupted' WHERE provider = $1 AND login = 'alice'`, e.acme)
	e.must(err)

	// Commands keep coming while the rebuilds run.
	writeCtx, stopWriting := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	var written int
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; writeCtx.Err() == nil && i < 500; i++ {
			login := fmt.Sprintf("load%03d", i)
			if err := e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme, Login: login,
				DisplayName: "Load " + login, Password: pw}); err != nil {
				writeErr = err
				return
			}
			if err := e.cmd.EnableSelfReset(e.ctx, commands.UserCommand{Actor: operator, Provider: e.acme, Login: login}); err != nil {
				writeErr = err
				return
			}
			_, _ = e.cmd.RequestResetToken(e.ctx, commands.RequestResetToken{Provider: e.acme, Login: login, Email: login + "@example.org"})
			written++
		}
	}()

	reports, err := r.Rebuild(e.ctx)
	e.must(err)
	if len(reports) != len(models) {
		t.Fatalf("%d reports, want %d", len(reports), len(models))
	}
	for _, rep := range reports {
		// On EventStoreDB the history holds other tests' events no read model takes.
		if rep.Events == 0 || (rep.Parked != 0 && !e.shared) || rep.Position != reports[0].Position {
			t.Errorf("report %+v", rep)
		}
	}
	if got := e.count(`SELECT count(*) FROM readmodels.admin_users WHERE display_name = 'corrupted'`); got != 0 {
		t.Error("the rebuild did not replace the corrupted row")
	}
	_, err = r.Rebuild(e.ctx, ResetTokensName, "strict_log")
	e.must(err)

	stopWriting()
	wg.Wait()
	e.must(writeErr)
	if written == 0 {
		t.Fatal("no commands ran during the rebuilds")
	}
	e.waitCaughtUp(r.names()...)
	rn.stop(t)

	total := len(e.ownEvents())
	if n := e.strictLogged(); n != total {
		t.Errorf("strict_log has %d rows of this test's events, want one per event (%d)", n, total)
	}
	if n := len(e.ownParked()); n != 0 {
		t.Errorf("%d events parked\n%s", n, e.logs.String())
	}
	if n := e.count(`SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'projections_rebuild_%'`); n != 0 {
		t.Errorf("%d rebuild schemas left behind", n)
	}
	sameDumps(t, "after rebuilds while live", e.dumps(models), e.freshRebuild(r, models))
	t.Logf("%d accounts written during the rebuilds; %d events in all", written, total)
}

// mailerLike is a consumer with effects outside the database: never rebuildable.
type mailerLike struct{}

func (mailerLike) Name() string                                  { return "mailer" }
func (mailerLike) Apply(context.Context, pgx.Tx, Envelope) error { return nil }

func TestRebuildRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.runner(append(asProjections(ReadModels()...), mailerLike{}))

	if _, err := r.Rebuild(e.ctx, "mailer"); err == nil || !strings.Contains(err.Error(), "not a read model") {
		t.Errorf("rebuilding the mailer: %v", err)
	}
	if _, err := r.Rebuild(e.ctx, "nosuch"); err == nil || !strings.Contains(err.Error(), "no read model") {
		t.Errorf("rebuilding an unknown model: %v", err)
	}

	// A rebuild of a model already being rebuilt elsewhere is refused at once.
	conn, err := pgx.ConnectConfig(e.ctx, e.pool.Config().ConnConfig.Copy())
	e.must(err)
	defer closeConn(conn)
	_, err = conn.Exec(e.ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, "selfreset.projections.rebuild:"+ResetTokensName)
	e.must(err)
	if _, err := r.Rebuild(e.ctx); !errors.Is(err, ErrRebuildRunning) {
		t.Errorf("concurrent rebuild: %v, want ErrRebuildRunning", err)
	}
	if _, err := r.Rebuild(e.ctx, AdminUsersName); err != nil {
		t.Errorf("rebuilding another model meanwhile: %v", err)
	}

	// All read models but not the mailer, on an empty history (on EventStoreDB, on
	// whatever the shared server holds).
	_, err = conn.Exec(e.ctx, `SELECT pg_advisory_unlock_all()`)
	e.must(err)
	reports, err := r.Rebuild(e.ctx)
	e.must(err)
	var names []string
	for _, rep := range reports {
		names = append(names, rep.Name)
	}
	if got := strings.Join(names, ","); got != "admin_users,reset_tokens,reset_activity,analytics" {
		t.Errorf("rebuilt %s", got)
	}
}

// TestRebuildHoldsAndSkipsLiveRunner makes the interleaving deterministic: the live runner
// has an event in hand when the rebuild takes its checkpoint row; the runner waits on the
// row until the rebuild commits, then skips the event the rebuild already applied.
func TestRebuildHoldsAndSkipsLiveRunner(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createStrictLog()
	e.writeHistory()
	models := append(ReadModels(), strictLog{})
	isLate := func(env Envelope) bool {
		return env.Record.Stream == domain.ProviderStream(e.late) && env.Record.Type == "ProviderRegistered"
	}
	var (
		inHand, release = make(chan struct{}), make(chan struct{})
		once, skipOnce  sync.Once
		skipped         = make(chan struct{})
		waited          atomic.Bool
	)
	r := e.runner(asProjections(models...), func(c *Config) {
		c.hooks.beforeLock = func(consumer string, env Envelope) {
			if consumer == "strict_log" && isLate(env) {
				once.Do(func() { close(inHand) })
				select {
				case <-release:
				case <-time.After(waitLimit): // the rebuild reads the whole history first
				}
			}
		}
		c.hooks.skipped = func(consumer string, env Envelope) {
			if consumer == "strict_log" && isLate(env) {
				skipOnce.Do(func() { close(skipped) })
			}
		}
		c.hooks.rebuildLocked = func() {
			close(release)
			// Wait until the live runner is blocked on the checkpoint row.
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if e.count(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) > 0 {
					waited.Store(true)
					return
				}
			}
		}
	})
	rn := e.start(r)
	e.waitCaughtUp(r.names()...)
	e.must(e.cmd.RegisterProvider(e.ctx, commands.RegisterProvider{Actor: operator, Code: e.late, Name: "Late Agency"}))
	select {
	case <-inHand:
	case <-time.After(30 * time.Second):
		t.Fatal("the live runner never got the new event")
	}
	_, err := r.Rebuild(e.ctx, "strict_log")
	e.must(err)
	e.waitCaughtUp(r.names()...)
	// The checkpoints are at the head as soon as the rebuild commits; the live runner
	// finds its held event covered only after that (its pipelined pass fails on the moved
	// checkpoint, then it reads it under the lock). Stopping it before then would end the
	// pass, not fail it.
	select {
	case <-skipped:
	case <-time.After(waitLimit):
		t.Error("the live runner did not skip the event the rebuild had applied")
	}
	rn.stop(t)

	if !waited.Load() {
		t.Error("the live runner never waited on the checkpoint row during the rebuild")
	}
	if n, total := e.strictLogged(), len(e.ownEvents()); n != total {
		t.Errorf("strict_log has %d rows of this test's events, want %d", n, total)
	}
	if n := len(e.ownParked()); n != 0 {
		t.Errorf("%d events parked", n)
	}
	sameDumps(t, "after the rebuild", e.dumps(models), e.freshRebuild(r, models))
}

// TestRebuildPagesEqualLive: live consumers apply one event at a time (Apply), a rebuild a
// page at a time (ApplyPage: COPY for facts, each account's row read once, folded in
// memory and written back once). Over the mixed history plus churn on a few accounts
// (enablement periods opened and closed again, roles granted and revoked, locks and
// unlocks, many changes to one row within a page and across pages), the rebuilt tables
// equal the live ones row for row, whatever the page size.
func TestRebuildPagesEqualLive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeHistory()
	user := func(login string) commands.UserCommand {
		return commands.UserCommand{Actor: operator, Provider: e.acme, Login: login}
	}
	for i := range 3 {
		e.clock.Add(time.Minute)
		e.must(e.cmd.DisableSelfReset(e.ctx, user("bob")))
		e.must(e.cmd.EnableSelfReset(e.ctx, user("bob")))
		e.must(e.cmd.GrantRole(e.ctx, commands.RoleCommand{UserCommand: user("dave"), Role: domain.RoleUserAdmin}))
		e.must(e.cmd.AdminLock(e.ctx, user("dave")))
		e.must(e.cmd.AdminUnlock(e.ctx, user("dave")))
		if i < 2 {
			e.must(e.cmd.RevokeRole(e.ctx, commands.RoleCommand{UserCommand: user("dave"), Role: domain.RoleUserAdmin}))
		}
		e.must(e.cmd.Deactivate(e.ctx, user("gus")))
		e.must(e.cmd.Reactivate(e.ctx, user("gus")))
	}
	e.must(e.cmd.DisableSelfReset(e.ctx, user("carol")))
	e.must(e.cmd.RevokeProviderSelfReset(e.ctx, commands.ProviderCommand{Actor: operator, Code: e.acme}))
	e.must(e.cmd.AllowProviderSelfReset(e.ctx, commands.ProviderCommand{Actor: operator, Code: e.acme}))

	models := ReadModels()
	e.runToHead(e.runner(nil))
	live := e.dumps(models)
	if n := len(live["enablement_history"]); n < 5 {
		t.Fatalf("the history opened %d enablement periods, want several to compare", n)
	}
	sizes := []int{1, 4, 5000}
	if e.shared {
		sizes = []int{5000} // the shared history is long: one page size is enough there
	}
	for _, size := range sizes {
		r := e.runner(nil, func(c *Config) { c.RebuildBatch = size })
		sameDumps(t, fmt.Sprintf("rebuilt in pages of %d", size), live, e.freshRebuild(r, models))
	}
	if n := len(e.ownParked()); n != 0 {
		t.Errorf("%d events parked", n)
	}
}

// catalog describes everything in Schema an analyst or a query depends on: each relation
// with its kind, owner, rights, persistence and comment, each view's definition, each
// index's, each constraint's and each column's type, nullability and default.
func (e *env) catalog() []string {
	e.t.Helper()
	rows, err := e.pool.Query(e.ctx, `
		SELECT format('%s %s owner=%s acl=%s persistence=%s comment=%s view=%s index=%s', c.relname, c.relkind,
			pg_get_userbyid(c.relowner), c.relacl, c.relpersistence, obj_description(c.oid, 'pg_class'),
			CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END,
			CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) END)
		FROM pg_class c WHERE c.relnamespace = $1::regnamespace
		UNION ALL
		SELECT format('constraint %s on %s: %s', k.conname, k.conrelid::regclass, pg_get_constraintdef(k.oid))
		FROM pg_constraint k WHERE k.connamespace = $1::regnamespace
		UNION ALL
		SELECT format('column %s.%s %s notnull=%s default=%s acl=%s', c.relname, a.attname,
			format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attacl)
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
		WHERE c.relnamespace = $1::regnamespace
		ORDER BY 1`, Schema)
	e.must(err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	e.must(err)
	return out
}

// TestRebuildKeepsSchemaAndRights: a rebuild that swaps its tables in by renaming them
// leaves the schema as it found it (tables, views, indexes, constraints, owners, the
// analyst's rights), and the views read the new tables. Where a table has something the
// rename would lose (here a column privilege), the rebuild copies rows instead, and that
// is kept too.
func TestRebuildKeepsSchemaAndRights(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if e.shared {
		t.Skip("needs the private PostgreSQL store: the shared EventStoreDB's history makes every rebuild long")
	}
	h := e.writeHistory()
	r := e.runner(nil)
	e.runToHead(r)
	oid := func() uint32 {
		var oid uint32
		e.must(e.pool.QueryRow(e.ctx, `SELECT 'readmodels.reset_tokens'::regclass::oid`).Scan(&oid))
		return oid
	}
	analystCount := func(sql string) int {
		tx, err := e.pool.Begin(e.ctx)
		e.must(err)
		defer func() { _ = tx.Rollback(e.ctx) }()
		_, err = tx.Exec(e.ctx, "SET LOCAL ROLE "+AnalystRole)
		e.must(err)
		var n int
		e.must(tx.QueryRow(e.ctx, sql).Scan(&n))
		return n
	}
	const validNow = `SELECT count(*) FROM readmodels.reset_tokens_valid_now WHERE provider = 'ACME'`
	if n := analystCount(validNow); n != 1 {
		t.Fatalf("%d tokens valid now before the rebuild, want 1 (%s)", n, h.T5)
	}
	for _, step := range []struct {
		name    string
		prepare string
		renamed bool
	}{
		{"renaming", "", true},
		{"copying", `GRANT SELECT (token_id) ON readmodels.reset_tokens TO PUBLIC`, false},
	} {
		if step.prepare != "" {
			_, err := e.pool.Exec(e.ctx, step.prepare)
			e.must(err)
		}
		before, oidBefore := e.catalog(), oid()
		// Damage a row: only the rebuild's rows put it right.
		_, err := e.pool.Exec(e.ctx, `UPDATE readmodels.reset_tokens SET state = 'used' WHERE token_id = $1`, h.T5)
		e.must(err)
		_, err = r.Rebuild(e.ctx)
		e.must(err)
		if renamed := oid() != oidBefore; renamed != step.renamed {
			t.Errorf("%s: the table was renamed: %v", step.name, renamed)
		}
		if diff := cmpLines(before, e.catalog()); diff != "" {
			t.Errorf("%s: the schema changed:\n%s", step.name, diff)
		}
		if n := analystCount(validNow); n != 1 {
			t.Errorf("%s: the analyst sees %d tokens valid now through the view, want 1", step.name, n)
		}
		if n := e.count(`SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'projections_rebuild_%'`); n != 0 {
			t.Errorf("%s: %d rebuild schemas left behind", step.name, n)
		}
	}
}

// cmpLines shows the lines only one of a and b has ("-" a, "+" b), or "" when none.
func cmpLines(a, b []string) string {
	var out []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
