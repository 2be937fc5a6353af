package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
	"selfreset/eventstore/chain"
)

// EnvBenchVerifyEvents sets how many events BenchmarkVerify generates (default 20000).
// docs/benchmarks.md records a run with 1000000.
const EnvBenchVerifyEvents = "SELFRESET_BENCH_VERIFY_EVENTS"

// BenchmarkVerify measures `audit verify` over a generated history: users' streams of
// LoginFailed events, interleaved, inserted in bulk with correct chain values (appending
// them one by one would take hours), then sealed every 100000 events by the real sealer.
func BenchmarkVerify(b *testing.B) {
	n := 20000
	if v := os.Getenv(EnvBenchVerifyEvents); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("%s=%q is not a positive number", EnvBenchVerifyEvents, v)
		}
	}
	w := newWorld(b)
	const streams = 10000
	start := time.Now()
	rows := make([][]any, 0, 10000)
	flush := func() {
		if _, err := w.pool.CopyFrom(w.ctx, pgx.Identifier{"events"},
			[]string{"event_id", "type", "schema_version", "stream", "revision", "occurred_at", "data", "metadata"},
			pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		rows = rows[:0]
	}
	prev := map[string]string{}
	for i := range n {
		stream := fmt.Sprintf("user-BENCH-u%05d", i%streams)
		rev := uint64(i / streams)
		e := eventstore.EventData{
			ID: uuid.New(), Type: "LoginFailed", SchemaVersion: 1,
			OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
			Data:       json.RawMessage(fmt.Sprintf(`{"reason":"wrong_password","failed_attempts":%d}`, rev+1)),
			Metadata:   eventstore.Metadata{Actor: "user:BENCH/u", CorrelationID: uuid.NewString(), ClientIP: "192.0.2.10", UserAgent: "bench"},
		}
		one := []eventstore.EventData{e}
		last, err := chain.Link(stream, rev, prev[stream], one)
		if err != nil {
			b.Fatal(err)
		}
		prev[stream] = last
		md, _ := json.Marshal(one[0].Metadata)
		rows = append(rows, []any{one[0].ID, one[0].Type, 1, stream, int64(rev), one[0].OccurredAt, string(one[0].Data), string(md)})
		if len(rows) == cap(rows) {
			flush()
		}
	}
	flush()
	inserted := time.Since(start)
	start = time.Now()
	w.sealer.MaxEvents = 100000
	seals := 0
	for {
		ok, err := w.sealer.SealOnce(w.ctx)
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			break
		}
		seals++
	}
	b.Logf("%d events in %d streams inserted in %v, sealed (%d seals) in %v", n, min(n, streams), inserted.Round(time.Millisecond), seals, time.Since(start).Round(time.Millisecond))

	cpu0 := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		rep, err := Verify(w.ctx, w.store, w.codec, VerifyOptions{Keys: Keys{sealKey.ID: sealKey.Secret}})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Break != nil || rep.Checked != int64(n+seals) || rep.SealedEvents != int64(n) {
			b.Fatalf("report %+v", rep)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// The verifier's own CPU time per event, which a busy machine inflates less than the
	// wall-clock rate (PostgreSQL's share is not in it).
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(n*b.N), "cpu-µs/event")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
