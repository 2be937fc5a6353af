package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/config"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/reset"
	"selfreset/secret"
)

// TestIntakeUnderOverload is the documented measurement behind docs/benchmarks.md's
// "Forgot Password under overload": `serve --role web` answering and one
// `serve --role worker` deciding (mail to an SMTP sink in the test),
// Forgot Password offered at SELFRESET_LOAD_RATE a second (default 1000) for
// SELFRESET_LOAD_SECONDS (default 5) while the command side decides with
// SELFRESET_RESET_WORKERS workers (default 2), well below the offered rate. It prints
// the answer latencies (p50, p99, max), how many commands were decided per second
// while the load ran, and checks that every request answered 202 was decided once
// the queue drained. It is a measurement, not a pass/fail timing: it asserts only that
// nothing answered was lost. Run it with SELFRESET_LOAD_FIGURES=1.
func TestIntakeUnderOverload(t *testing.T) {
	if os.Getenv("SELFRESET_LOAD_FIGURES") == "" {
		t.Skip("set SELFRESET_LOAD_FIGURES=1 to run this measurement (about 30 s, one serve on loopback)")
	}
	rate := envInt(t, "SELFRESET_LOAD_RATE", 1000)
	seconds := envInt(t, "SELFRESET_LOAD_SECONDS", 5)
	workers := envInt(t, config.EnvResetWorkers, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dbURL := testdb.New(t)
	dir := t.TempDir()
	bin := buildBinary(t, ctx, dir)
	cliEnv := repEnv(t, dbURL, "cli")
	repCLI(t, bin, cliEnv, 60*time.Second, "migrate")
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	keyID := config.KeyID([]byte(repSecret))
	keys, err := secret.NewKeyring(keyID, map[string][]byte{keyID: []byte(repSecret)})
	if err != nil {
		t.Fatal(err)
	}
	const accounts = 200
	repSeedN(t, ctx, dbURL, keys, keyID, accounts)

	sink := (&testkit.SMTPServer{}).Start(t)
	env := repEnv(t, dbURL, "load", config.EnvAddr+"=127.0.0.1:0", config.EnvRateLimitPerIP+"=0",
		config.EnvResetWorkers+"="+strconv.Itoa(workers), config.EnvMailDriver+"=smtp", config.EnvSMTPAddr+"="+sink.Addr,
		config.EnvSMTPTLS+"=none", config.EnvMailFrom+"=Self Password Reset <no-reply@reset.example.org>",
		config.EnvPublicURL+"=http://reset.example.org")
	// A web process answers; a worker process decides (the production split, so the
	// answers' latency is the publish path's, not the command side's).
	srv := repStartReplica(t, bin, dir, "load", env, "--migrate=false", "--role=web")
	worker := exec.Command(bin, "serve", "--migrate=false", "--role=worker")
	worker.Env = repEnv(t, dbURL, "load-worker", config.EnvResetWorkers+"="+strconv.Itoa(workers), config.EnvMailDriver+"=smtp",
		config.EnvSMTPAddr+"="+sink.Addr, config.EnvSMTPTLS+"=none", config.EnvMailFrom+"=Self Password Reset <no-reply@reset.example.org>",
		config.EnvPublicURL+"=http://reset.example.org")
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = worker.Process.Kill(); _ = worker.Wait() })
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	defer client.CloseIdleConnections()
	srv.waitReady(t, client, 20*time.Second)

	decidedBefore := countDecisions(t, ctx, pool)
	total := rate * seconds
	lat := make([]time.Duration, total)
	answered := make([]bool, total)
	var failed atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	start := time.Now()
	for i := range total {
		<-tick.C
		r := &repRequest{id: fmt.Sprintf("load-%06d", i), login: repLogin(i % accounts), email: repEmail(i % accounts), answeredBy: -1}
		wg.Go(func() {
			var resent atomic.Int64
			t0 := time.Now()
			repSend(ctx, client, []*repReplica{srv}, r, 0, &resent)
			lat[i] = time.Since(t0)
			answered[i] = r.answeredBy == 0
			if !answered[i] {
				failed.Add(1)
			}
		})
	}
	tick.Stop()
	offeredFor := time.Since(start)
	wg.Wait()
	decidedDuring := countDecisions(t, ctx, pool) - decidedBefore
	pendingAfter, err := reset.Pending(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	drainStart := time.Now()
	repWait(t, 3*time.Minute, "the intake queue to drain", func() (bool, string) {
		n, err := reset.Pending(ctx, pool)
		return err == nil && n == 0, fmt.Sprintf("pending %d, err %v", n, err)
	})
	drained := time.Since(drainStart)
	decided := map[string]int{}
	rows, err := pool.Query(ctx, `SELECT metadata->>'correlation_id', count(*) FROM events
		WHERE type IN ('ResetTokenIssued', 'ResetRequestRejected') GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		decided[id] = n
	}
	rows.Close()
	var lost, twice int
	for i := range total {
		if !answered[i] {
			continue
		}
		switch decided[fmt.Sprintf("load-%06d", i)] {
		case 0:
			lost++
		case 1:
		default:
			twice++
		}
	}
	if lost > 0 || twice > 0 || failed.Load() > 0 {
		t.Errorf("lost %d, decided twice %d, not answered 202 %d", lost, twice, failed.Load())
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))].Round(10 * time.Microsecond) }
	t.Logf("FIGURES: offered %d/s for %s (%d requests), reset workers %d; answers p50 %s p99 %s max %s; "+
		"decided while offered %d (%.0f/s); queued at the end of the load %d, drained in %s; lost %d, decided twice %d",
		rate, offeredFor.Round(time.Millisecond), total, workers, pct(0.5), pct(0.99), lat[len(lat)-1].Round(time.Millisecond),
		decidedDuring, float64(decidedDuring)/offeredFor.Seconds(), pendingAfter, drained.Round(time.Millisecond), lost, twice)
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func countDecisions(t *testing.T, ctx context.Context, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE type IN ('ResetTokenIssued', 'ResetRequestRejected')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
