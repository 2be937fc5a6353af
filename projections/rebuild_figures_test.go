package projections

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
)

// TestRebuildFigures is the documented measurement behind docs/benchmarks.md's "Rebuild":
// SELFRESET_REBUILD_FIGURES_EVENTS events (e.g. 1000000) on the PostgreSQL store, 100
// registered accounts whose streams then receive wrong-email refusals and failed logins
// in batches of 1,000 through the store port, then one Rebuild of every read model,
// timed. Figures are printed, not asserted.
func TestRebuildFigures(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SELFRESET_REBUILD_FIGURES_EVENTS"))
	if n <= 0 {
		t.Skip("set SELFRESET_REBUILD_FIGURES_EVENTS=1000000 to run this measurement (minutes, loopback only)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Minute)
	defer cancel()
	store, pool, appendBulk := figuresHistory(ctx, t)
	t1 := time.Now()
	written := appendBulk(n)
	t.Logf("FIGURES appended %d events in %s", written, time.Since(t1).Round(time.Second))
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE events"); err != nil {
		t.Fatal(err)
	}

	// Debug level shows how the time splits between the replay and the swap.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := New(Config{Store: store, Pool: pool, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t1 = time.Now()
	cpu0 := processCPU(t)
	reports, err := r.Rebuild(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(t1)
	cpu := processCPU(t) - cpu0
	for _, rep := range reports {
		t.Logf("FIGURES %s: %d events, %d parked, %s", rep.Name, rep.Events, rep.Parked, rep.Duration.Round(time.Millisecond))
	}
	t.Logf("FIGURES rebuild of every read model over %d events: %s, %.0f events/s", written, d.Round(time.Millisecond), float64(written)/d.Seconds())
	t.Logf("FIGURES CPU time of this process during the rebuild: %s (%.0f%% of the wall time; the server's is not counted)",
		cpu.Round(time.Millisecond), 100*cpu.Seconds()/d.Seconds())
}

// processCPU is the user and system CPU time this process has used so far.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// figuresHistory makes a database with the store and the read models migrated, a provider
// and 100 accounts; appendBulk appends n refusals and failed logins to their streams in
// batches of 1,000 and returns how many it wrote.
func figuresHistory(ctx context.Context, t *testing.T) (store *postgres.Store, pool *pgxpool.Pool, appendBulk func(n int) int) {
	dbURL := testdb.New(t)
	store, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pool, err = pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	clk := testkit.NewClock(t0)
	cmd := testkit.Handler(t, store, clk, testkit.Keyring(t, "k1"))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cmd.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: "ACME", Name: "Acme", AllowSelfReset: true}))
	const accounts = 100
	for i := range accounts {
		must(cmd.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: "ACME", Login: fmt.Sprintf("u%03d", i),
			DisplayName: "U", Password: pw}))
	}
	codec := cmd.Codec()
	return store, pool, func(n int) int {
		written := 0
		for b := 0; written < n; b++ {
			login := fmt.Sprintf("u%03d", b%accounts)
			size := min(1000, n-written)
			batch := make([]eventstore.EventData, size)
			for i := range batch {
				var e domain.Event = domain.ResetRequestRejected{Reason: domain.ReasonIdentifiersMismatch, Provider: "ACME", Login: login,
					EmailMasked: "s***r@e***e.org", EmailHash: "bulk"}
				if i%2 == 1 {
					e = domain.LoginFailed{Reason: "wrong_password", Provider: "ACME", Login: login, FailedAttempts: 1}
				}
				typ, ver, raw, err := codec.Encode(e)
				must(err)
				batch[i] = eventstore.EventData{ID: uuid.New(), Type: typ, SchemaVersion: ver, OccurredAt: clk.Now(), Data: raw,
					Metadata: eventstore.Metadata{Actor: "anonymous"}}
			}
			_, err := store.Append(ctx, domain.UserStream("ACME", login), eventstore.Any, batch...)
			must(err)
			written += size
		}
		return written
	}
}

// TestCatchUpFigures is the documented measurement behind docs/benchmarks.md's "Live
// catch-up": with the four read models running, SELFRESET_CATCHUP_FIGURES_EVENTS events
// (e.g. 100000) are appended as fast as the store takes them (batches of 1,000), and the
// time from the last append until every checkpoint is at the head is measured, once with
// batches of one event (as before batching) and once with the default. Printed, not asserted.
func TestCatchUpFigures(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SELFRESET_CATCHUP_FIGURES_EVENTS"))
	if n <= 0 {
		t.Skip("set SELFRESET_CATCHUP_FIGURES_EVENTS=100000 to run this measurement (minutes, loopback only)")
	}
	for _, size := range []int{1, 0} {
		t.Run(fmt.Sprintf("batch=%d", size), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
			defer cancel()
			store, pool, appendBulk := figuresHistory(ctx, t)
			r, err := New(Config{Store: store, Pool: pool, Feed: FeedConfig{BatchSize: size},
				Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- r.Run(runCtx) }()
			defer func() {
				stop()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			caughtUp := func() time.Time {
				head, err := store.Head(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for {
					all := true
					for _, m := range ReadModels() {
						cp, err := readCheckpoint(ctx, pool, m.Name())
						if err != nil {
							t.Fatal(err)
						}
						all = all && !cp.Less(head)
					}
					if all {
						return time.Now()
					}
					if ctx.Err() != nil {
						t.Fatal(ctx.Err())
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			caughtUp()
			t0 := time.Now()
			written := appendBulk(n)
			last := time.Now()
			end := caughtUp()
			t.Logf("FIGURES batch size %d: %d events appended in %s; every read model at the head %s after the last append; %.0f events/s from the first append",
				r.cfg.Feed.BatchSize, written, last.Sub(t0).Round(time.Millisecond), end.Sub(last).Round(time.Millisecond),
				float64(written)/end.Sub(t0).Seconds())
		})
	}
}
