package postgres

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
)

// Readers asking for a watermark at once share queries, and none gets one computed
// before it asked: an append committed before the ask lies below every W returned.
func TestConcurrentReadersShareFreshWatermarks(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	const rounds, readers = 20, 16
	for round := range rounds {
		res, err := s.Append(ctx, fmt.Sprintf("marked-%d", round), eventstore.NoStream, event("Marked"))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range readers {
			wg.Go(func() {
				w, err := s.watermark(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if w <= res.Position.Commit {
					t.Errorf("round %d: W %d does not pass the append committed before the ask (tx %d)", round, w, res.Position.Commit)
				}
			})
		}
		wg.Wait()
	}
	s.marks.mu.Lock()
	queries := s.marks.queries
	s.marks.mu.Unlock()
	if queries >= rounds*readers {
		t.Errorf("%d watermark queries for %d readers: none shared", queries, rounds*readers)
	}
	t.Logf("%d watermark queries for %d readers", queries, rounds*readers)
}

// A reader whose context ends stops waiting; the query it would have shared still runs
// for the others.
func TestWatermarkReaderMayGiveUp(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.watermark(ctx); err == nil {
		t.Fatal("watermark on an ended context: no error")
	}
	if _, err := s.watermark(t.Context()); err != nil {
		t.Fatalf("watermark after a reader gave up: %v", err)
	}
}

// A transaction that S saw in progress and that ended before pg_locks was read does not
// hold W back, unless an append is under way that pg_locks cannot yet tie to its id. S is
// taken by an earlier statement here, so that the transaction can end in between.
func TestWatermarkPassesTransactionsEndedAfterTheSnapshot(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE unrelated (n int)`); err != nil {
		t.Fatal(err)
	}
	begin := func() pgx.Tx {
		t.Helper()
		conn, err := pgx.ConnectConfig(ctx, s.Pool().Config().ConnConfig.Copy())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	writer := begin()
	var x uint64
	if err := writer.QueryRow(ctx, `INSERT INTO unrelated VALUES (1) RETURNING pg_current_xact_id()::text::bigint`).Scan(&x); err != nil {
		t.Fatal(err)
	}
	// A later transaction that ends moves xmax past x, so that S lists x in xip.
	if _, err := s.Pool().Exec(ctx, `INSERT INTO unrelated VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	var snapshot string
	var seen bool
	if err := s.Pool().QueryRow(ctx, `SELECT s::text, $1::text::xid8 IN (SELECT pg_snapshot_xip(s))
		FROM pg_current_snapshot() s`, fmt.Sprint(x)).Scan(&snapshot, &seen); err != nil {
		t.Fatal(err)
	}
	if !seen {
		t.Fatalf("the snapshot %s does not show transaction %d in progress", snapshot, x)
	}
	if err := writer.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	watermarkAt := func() uint64 {
		t.Helper()
		var w uint64
		if err := s.Pool().QueryRow(ctx, watermarkQuery("$1::pg_snapshot"), snapshot).Scan(&w); err != nil {
			t.Fatal(err)
		}
		return w
	}

	if w := watermarkAt(); w <= x {
		t.Errorf("W %d: held back by transaction %d, which had committed before pg_locks was read", w, x)
	}
	appender := begin() // holds a stream lock and has no id yet
	if _, err := appender.Exec(ctx, lockStreamSQL, "here"); err != nil {
		t.Fatal(err)
	}
	if w := watermarkAt(); w > x {
		t.Errorf("W %d passes transaction %d while an append holds a stream lock with no id lock shown", w, x)
		logLocks(t, s, snapshot)
	}
	if err := appender.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if w := watermarkAt(); w <= x {
		t.Errorf("W %d: still held back by transaction %d once the append ended", w, x)
	}
}

// Readers asking for the same page at once share one query, and each gets a slice of its
// own: what one does with it is not seen by another.
func TestConcurrentReadersSharePages(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	for i := range 5 {
		if _, err := s.Append(ctx, fmt.Sprintf("paged-%d", i), eventstore.NoStream, event("Paged")); err != nil {
			t.Fatal(err)
		}
	}
	w, err := s.watermark(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const rounds, readers = 10, 16
	for range rounds {
		var wg sync.WaitGroup
		for range readers {
			wg.Go(func() {
				page, err := s.readAll(ctx, eventstore.Start, 10, w)
				if err != nil {
					t.Error(err)
					return
				}
				if len(page) == 0 {
					t.Error("a reader got no events")
					return
				}
				if len(page) != 5 || page[0].Stream != "paged-0" || page[4].Stream != "paged-4" {
					t.Errorf("a reader got %d events, from %q to %q: want the 5 appended, paged-0 to paged-4",
						len(page), page[0].Stream, page[len(page)-1].Stream)
					return
				}
				page[0].Stream = "changed by one reader"
				_ = append(page[:1], eventstore.RecordedEvent{Stream: "appended by one reader"})
			})
		}
		wg.Wait()
	}
	if runs := s.pageRuns.Load(); runs >= rounds*readers {
		t.Errorf("%d page queries for %d readers: none shared", runs, rounds*readers)
	} else {
		t.Logf("%d page queries for %d readers", runs, rounds*readers)
	}
}

// The readers that ask within the gathering time of an idle moment share one query; a
// reader that asks while a query runs gets the next one, which starts as soon as that
// ends, without gathering again.
func TestWatermarkGathersTheReadersOfAMoment(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	release := make(chan struct{})
	var runs atomic.Uint64
	m := newWatermarks(func(context.Context) (uint64, error) {
		n := runs.Add(1)
		if n == 1 {
			<-release
		}
		return n, nil
	})
	gathered := make(chan time.Time)
	m.after = func(time.Duration) <-chan time.Time { return gathered }
	asked := func(n int) {
		t.Helper()
		for {
			m.mu.Lock()
			a := m.asks
			m.mu.Unlock()
			if a >= n {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%d readers asked, want %d", a, n)
			}
			runtime.Gosched()
		}
	}
	type answer struct {
		w   uint64
		err error
	}
	first := make(chan answer, 3)
	for range 3 {
		go func() { w, err := m.get(ctx, true); first <- answer{w, err} }()
	}
	asked(3)
	select { // the gathering time is over: the one query runs
	case gathered <- time.Now():
	case <-ctx.Done():
		t.Fatal("no query was gathering its readers")
	}
	for runs.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the gathered query never ran")
		}
		runtime.Gosched()
	}
	late := make(chan answer, 1)
	go func() { w, err := m.get(ctx, true); late <- answer{w, err} }()
	asked(4)
	close(release)
	for range 3 {
		if a := <-first; a.err != nil || a.w != 1 {
			t.Fatalf("a reader of the gathered moment got W %d, %v: want the first query's", a.w, a.err)
		}
	}
	if a := <-late; a.err != nil || a.w != 2 {
		t.Fatalf("the reader that asked while the query ran got W %d, %v: want the next query's, run without gathering", a.w, a.err)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d queries for 4 readers, want 2", n)
	}
}

// A reader that does not gather (ReadAll, Head) starts a query at once, and ends the
// gathering of a pending one that it joins.
func TestWatermarkReadersThatDoNotGatherDoNotWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var runs atomic.Uint64
	m := newWatermarks(func(context.Context) (uint64, error) { return runs.Add(1), nil })
	m.after = func(time.Duration) <-chan time.Time { return nil } // a gathering never ends by itself
	if w, err := m.get(ctx, false); err != nil || w != 1 {
		t.Fatalf("a reader alone got W %d, %v: want a query of its own at once", w, err)
	}
	gathering := make(chan uint64, 1)
	go func() {
		w, err := m.get(ctx, true)
		if err != nil {
			t.Error(err)
		}
		gathering <- w
	}()
	for {
		m.mu.Lock()
		pending := m.hurry != nil
		m.mu.Unlock()
		if pending {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the subscription's query never started gathering")
		}
		runtime.Gosched()
	}
	if w, err := m.get(ctx, false); err != nil || w != 2 {
		t.Fatalf("a reader joining a gathering query got W %d, %v: want that query's, run at once", w, err)
	}
	if w := <-gathering; w != 2 {
		t.Fatalf("the gathering reader got W %d, want 2", w)
	}
}

// logLocks logs what the watermark query reads, for a failure that depends on it.
func logLocks(t *testing.T, s *Store, snapshot string) {
	t.Helper()
	rows, err := s.Pool().Query(t.Context(), `SELECT locktype, database, classid, objid, objsubid,
		virtualtransaction, transactionid, mode, granted, pid, current_database()
		FROM pg_locks WHERE locktype IN ('advisory', 'transactionid')`)
	if err != nil {
		t.Logf("pg_locks: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		v, err := rows.Values()
		t.Logf("pg_locks row %v %v", v, err)
	}
	t.Logf("snapshot %s", snapshot)
}
