package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"selfreset/eventstore"
	"selfreset/internal/testdb"
)

func benchStore(b *testing.B) *Store {
	b.Helper()
	ctx := context.Background()
	s, err := Open(ctx, testdb.New(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	return s
}

func benchEvent() eventstore.EventData {
	return eventstore.EventData{ID: uuid.New(), Type: "BenchHappened", SchemaVersion: 1, OccurredAt: time.Now(),
		Data:     json.RawMessage(`{"token_id":"0123456789abcdef","expires_at":"2026-11-27T10:00:00Z"}`),
		Metadata: eventstore.Metadata{Actor: "bench", CorrelationID: "c", ClientIP: "127.0.0.1"}}
}

// One event appended to its own new stream per operation (a Forgot Password that matched
// nobody, or a new account): the per-stream lock is never contended.
func BenchmarkAppendNewStream(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Append(ctx, fmt.Sprintf("bench-%d", i), eventstore.NoStream, benchEvent()); err != nil {
			b.Fatal(err)
		}
	}
}

// Appends from parallel writers to distinct streams: how far the watermark design lets
// independent accounts proceed side by side.
func BenchmarkAppendParallel(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		stream := "bench-" + uuid.NewString()
		for pb.Next() {
			if _, err := s.Append(ctx, stream, eventstore.Any, benchEvent()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Reading the global feed in pages of 500, as a consumer catching up does.
func BenchmarkReadAll500(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	batch := make([]eventstore.EventData, 100)
	for i := range 50 {
		for j := range batch {
			batch[j] = benchEvent()
		}
		if _, err := s.Append(ctx, fmt.Sprintf("seed-%d", i), eventstore.NoStream, batch...); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for { // wait until all 5,000 are readable
		head, err := s.ReadAll(ctx, eventstore.Start, 5000)
		if err != nil {
			b.Fatal(err)
		}
		if len(head) == 5000 || time.Now().After(deadline) {
			break
		}
	}
	for b.Loop() {
		pos, n := eventstore.Start, 0
		for {
			page, err := s.ReadAll(ctx, pos, 500)
			if err != nil {
				b.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			n += len(page)
			pos = page[len(page)-1].Position
		}
		if n != 5000 {
			b.Fatalf("read %d events, want 5000", n)
		}
	}
	b.ReportMetric(float64(5000*b.N)/b.Elapsed().Seconds(), "events/s")
}

// An Update of one account after another, as a worker deciding Forgot Password does: its
// stream's head and the provider's are remembered from the Update before ("at once", one
// round trip: heads.go), or forgotten before each ("read", the two round trips of
// updateIn, as when another process wrote last). Eight callers, each on an account of
// its own.
func BenchmarkUpdateOnARememberedHead(b *testing.B) {
	for _, remembered := range []bool{true, false} {
		name := "read"
		if remembered {
			name = "at_once"
		}
		b.Run(name, func(b *testing.B) {
			s := benchStore(b)
			ctx := context.Background()
			if _, err := s.Append(ctx, "provider", eventstore.NoStream, benchEvent()); err != nil {
				b.Fatal(err)
			}
			beside := []eventstore.StreamRead{{Stream: "provider", From: 1}}
			var accounts atomic.Int64
			decide := func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error) {
				return []eventstore.EventData{benchEvent()}, nil
			}
			b.SetParallelism(4) // callers per GOMAXPROCS: 8 on 2 cores, as the worker's subscribers
			b.RunParallel(func(pb *testing.PB) {
				stream := fmt.Sprintf("account-%d", accounts.Add(1))
				for from := uint64(0); pb.Next(); from++ {
					if !remembered {
						s.heads.forget(stream)
					}
					if _, err := s.Update(ctx, stream, from, beside, decide); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if n := s.updates.stale.Load(); n != 0 {
				b.Errorf("%d groups found a remembered head moved", n)
			}
		})
	}
}
