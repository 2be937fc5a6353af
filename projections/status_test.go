package projections

import (
	"context"
	"io/fs"
	"sync/atomic"
	"testing"
	"time"

	"selfreset/eventstore"
)

// TestStatusAndLag checks the lag counts. They count the whole feed, so on the shared
// EventStoreDB, which others append to meanwhile, only bounds hold: the head is at or past
// this test's, at least this test's events are behind before the run, and none of them
// after it. The cap is exact on both.
func TestStatusAndLag(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeHistory()
	head := e.waitVisible()
	total := len(e.ownEvents())
	// The mailer's checkpoint, written by another process: reported, not configured here.
	_, err := e.pool.Exec(e.ctx, `INSERT INTO projection_checkpoints (consumer, commit, prepare) VALUES ('mailer', 0, 0)`)
	e.must(err)

	status := func(r *Runner) map[string]ConsumerStatus {
		t.Helper()
		before := time.Now()
		st, err := r.Status(e.ctx)
		e.must(err)
		after := time.Now()
		out := map[string]ConsumerStatus{}
		for _, s := range st {
			out[s.Name] = s
			// The checkpoints are read once, within the call.
			if s.ReadAt.Before(before) || s.ReadAt.After(after) || s.ReadAt != st[0].ReadAt {
				t.Errorf("%s: read at %v, want one time within [%v, %v]", s.Name, s.ReadAt, before, after)
			}
		}
		if n := len(ReadModels()); len(st) != n+1 || st[n].Name != "mailer" {
			t.Fatalf("status lists %+v; want the read models, then the mailer", st)
		}
		return out
	}

	// Nothing applied yet: every consumer is the whole history behind.
	for name, s := range status(e.runner(nil)) {
		headOK, behindOK := s.Head == head, s.Behind == total && !s.Capped
		if e.shared {
			headOK, behindOK = !s.Head.Less(head), s.Behind >= total
		}
		if s.Checkpoint != eventstore.Start || !headOK || !behindOK ||
			s.Configured != (name != "mailer") || s.Parked != 0 || !s.UpdatedAt.IsZero() != (name == "mailer") {
			t.Errorf("%s: %+v; want %d behind head %s", name, s, total, head)
		}
	}
	// With a cap below the backlog the count stops there and says so; at exactly the
	// backlog it is not capped.
	for name, s := range status(e.runner(nil, func(c *Config) { c.LagCap = 10 })) {
		if s.Behind != 10 || !s.Capped || s.BehindText() != "≥ 10" {
			t.Errorf("%s with cap 10: behind %d capped %v %q", name, s.Behind, s.Capped, s.BehindText())
		}
	}
	for name, s := range status(e.runner(nil, func(c *Config) { c.LagCap = total })) {
		// On EventStoreDB there may be more than this test's events: capped or not.
		if s.Behind != total || (s.Capped && !e.shared) {
			t.Errorf("%s with cap %d: behind %d capped %v", name, total, s.Behind, s.Capped)
		}
	}

	// Caught up: nothing behind, checkpoint at the head.
	r := e.runner(nil)
	e.runToHead(r)
	for name, s := range status(r) {
		if name == "mailer" {
			if s.Behind != total && !(e.shared && s.Behind > total) {
				t.Errorf("mailer: behind %d, want %d", s.Behind, total)
			}
			continue
		}
		if e.shared {
			// Past this test's events; whatever others appended since may be behind.
			if s.Checkpoint.Less(head) || s.UpdatedAt.IsZero() {
				t.Errorf("%s after catching up: %+v", name, s)
			}
			continue
		}
		if s.Checkpoint != head || s.Behind != 0 || !s.CaughtUp() || s.BehindText() != "0" || s.UpdatedAt.IsZero() {
			t.Errorf("%s after catching up: %+v", name, s)
		}
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // migrated once
	for range 2 {
		e.must(Migrate(e.ctx, e.pool))
	}
	// golang-migrate keeps one row: the newest version applied, and whether it is dirty.
	all, err := fs.Glob(migrationFiles, "migrations/*.up.sql")
	e.must(err)
	if n := e.count(`SELECT version FROM projections_migrations WHERE NOT dirty`); n != len(all) || n == 0 {
		t.Errorf("at version %d, want %d", n, len(all))
	}
	// Concurrent first runs take turns.
	e2 := newEnv(t)
	_, err = e2.pool.Exec(e2.ctx, `DROP TABLE projections_migrations, projection_checkpoints, parked_events CASCADE;
		DROP SCHEMA readmodels CASCADE; DROP FUNCTION projection_checkpoint_move`)
	e.must(err)
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- Migrate(e2.ctx, e2.pool) }()
	}
	for range 3 {
		e.must(<-errs)
	}
	if n := e2.count(`SELECT version FROM projections_migrations WHERE NOT dirty`); n != len(all) {
		t.Errorf("at version %d after concurrent runs, want %d", n, len(all))
	}
}

// feedReads counts the ReadAll calls made through it.
type feedReads struct {
	eventstore.Store
	calls atomic.Int64
}

func (f *feedReads) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	f.calls.Add(1)
	return f.Store.ReadAll(ctx, after, limit)
}

// TestStatusCountsTheFeedOncePerCheckpoint: consumers at one checkpoint share one count
// of the feed (under load every status read had paged the backlog once per consumer),
// and a consumer elsewhere still gets its own.
func TestStatusCountsTheFeedOncePerCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if e.shared {
		t.Skip("counts the whole feed exactly: needs a store of its own (the PostgreSQL or memory store), not the shared EventStoreDB")
	}
	e.writeHistory()
	head := e.waitVisible()
	total := len(e.ownEvents())
	// The mailer, another process's consumer, stands three events into the feed.
	page, err := e.store.ReadAll(e.ctx, eventstore.Start, 3)
	e.must(err)
	c, p := page[2].Position.Commit, page[2].Position.Prepare
	_, err = e.pool.Exec(e.ctx, `INSERT INTO projection_checkpoints (consumer, commit, prepare) VALUES ('mailer', $1, $2)`,
		int64(c), int64(p))
	e.must(err)

	reads := &feedReads{Store: e.store}
	st, err := e.runner(nil, func(c *Config) { c.Store = reads }).Status(e.ctx)
	e.must(err)
	for _, s := range st {
		want := total
		if s.Name == "mailer" {
			want = total - 3
		}
		if s.Behind != want || s.Capped || s.Head != head {
			t.Errorf("%s: behind %d capped %v head %v; want %d behind %v", s.Name, s.Behind, s.Capped, s.Head, want, head)
		}
	}
	// Two checkpoints (the read models' start and the mailer's), each counted in one page.
	if n := reads.calls.Load(); n != 2 {
		t.Errorf("%d feed reads for %d consumers at two checkpoints; want 2", n, len(st))
	}
}
