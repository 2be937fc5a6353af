package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"

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
