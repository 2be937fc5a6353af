package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/config"
)

// selfreset bench runs every operation against the configured store, once per user, and
// reports each with no errors. (The figures themselves are printed, never asserted.)
func TestBenchCommand(t *testing.T) {
	e := newEnv(t)
	e.ok(t, "", "migrate")
	r := e.ok(t, "", "bench", "--users", "3", "--concurrency", "2")
	row := regexp.MustCompile(`^(\S.*?)\s{2,}(\d+)\s+[\d.]+\s+\S+\s+\S+\s+\S+\s+(\d+)$`)
	seen := map[string]bool{}
	for _, line := range strings.Split(r.stdout, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		seen[m[1]] = true
		if m[3] != "0" {
			t.Errorf("%s: %s errors\n%s", m[1], m[3], r.stdout)
		}
		if m[1] != "read feed (per 500 events)" && m[2] != "3" {
			t.Errorf("%s: %s samples, want 3", m[1], m[2])
		}
	}
	for _, op := range []string{"register user (argon2id)", "forgot password (token)", "reset password (argon2id)", "read feed (per 500 events)"} {
		if !seen[op] {
			t.Errorf("no row for %q in\n%s", op, r.stdout)
		}
	}
	e.fails(t, exitUsage, "", "bench", "--users", "0")
}

// selfreset bench --http drives a real serve (built, run as a process, its mail sent to
// the harness's own SMTP sink) for about a second per phase, and writes JSON whose counts
// show each part worked: answers, decision events, token mails, the floor and VmHWM. The
// figures themselves are never asserted.
func TestBenchHTTPSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary and runs serve under the harness (about 30 s)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := newEnv(t)
	e.ok(t, "", "migrate")
	dir := t.TempDir()
	bin := buildBinary(t, ctx, dir)
	smtpAddr, metricsAddr := freeAddr(t), freeAddr(t)
	srv := repStartReplica(t, bin, dir, "bench", repEnv(t, e[config.EnvDatabaseURL], "bench",
		config.EnvAddr+"=127.0.0.1:0", config.EnvRateLimitPerIP+"=0",
		config.EnvMetricsAddr+"="+metricsAddr, config.EnvPprof+"=true",
		config.EnvMailDriver+"=smtp", config.EnvSMTPAddr+"="+smtpAddr, config.EnvSMTPTLS+"=none",
		config.EnvMailFrom+"=Bench <no-reply@bench.example.org>", config.EnvPublicURL+"=http://bench.example.org"))
	client := &http.Client{Timeout: 30 * time.Second}
	srv.waitReady(t, client, 30*time.Second)

	out := filepath.Join(dir, "bench.json")
	e.ok(t, "", "bench", "--http", "http://"+srv.Addr, "--smtp-listen", smtpAddr, "--concurrency", "2",
		"--duration", "1s", "--max-requests", "300", "--accounts", "4", "--json", out)
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep benchReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.PID != srv.cmd.Process.Pid || rep.VmHWMBytes <= 0 || len(rep.Levels) != 1 {
		t.Fatalf("pid %d (serve is %d), VmHWM %d, %d levels", rep.PID, srv.cmd.Process.Pid, rep.VmHWMBytes, len(rep.Levels))
	}
	phases := map[string]phaseReport{}
	for _, p := range rep.Levels[0].Phases {
		phases[p.Phase] = p
		if p.Requests == 0 || p.Errors != 0 || p.Requests > 300 {
			t.Errorf("%s: %d requests, %d errors (outcomes %v)", p.Phase, p.Requests, p.Errors, p.Outcomes)
		}
	}
	if len(phases) != len(allPhases) {
		t.Fatalf("phases %v, want %v", slices.Sorted(maps.Keys(phases)), allPhases)
	}
	if f := phases[phaseForgot]; f.Events.InWindow+f.Events.After < f.Outcomes["matched 202"] || f.Mail.TokenMails == 0 ||
		f.Lag.Samples == 0 || f.Outcomes["unmatched 202"] == 0 {
		t.Errorf("forgot password: events %+v, mail %+v, lag %+v, outcomes %v", f.Events, f.Mail, f.Lag, f.Outcomes)
	}
	if r := phases[phaseResetFlow]; r.Mail.TokenDelay.N == 0 || r.Steps["complete"].N != r.Requests {
		t.Errorf("reset flow: mail %+v, steps %+v", r.Mail, r.Steps)
	}
	if a := phases[phaseAppendFloor]; a.Events.InWindow+a.Events.After < a.Requests {
		t.Errorf("append floor: %d appends, %d events in the feed", a.Requests, a.Events.InWindow)
	}
	for name, p := range phases {
		if p.CPU.Seconds <= 0 || p.CPU.PerRequestMS <= 0 {
			t.Errorf("%s: machine CPU %+v", name, p.CPU)
		}
	}
	for _, k := range []string{"forgot_answers_to_insert_floor", "forgot_events_to_append_floor", "append_cpu_to_forgot_event_cpu"} {
		if rep.Levels[0].Ratios[k] <= 0 {
			t.Errorf("ratio %s missing: %v", k, rep.Levels[0].Ratios)
		}
	}
	res, err := client.Get("http://" + metricsAddr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("pprof with %s=true: %s", config.EnvPprof, res.Status)
	}
	e.fails(t, exitUsage, "", "bench", "--http", "http://example.org:8080")
	e.fails(t, exitUsage, "", "bench", "--http", "http://"+srv.Addr, "--phases", "nap")
}

// TestBenchHTTPBadFlags: each bad flag of bench --http is one line naming it, exit code 2,
// before anything is contacted (nothing listens on 127.0.0.1:1).
func TestBenchHTTPBadFlags(t *testing.T) {
	e := cliEnv{config.EnvDatabaseURL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable", config.EnvSecret: testSecret}
	base := []string{"bench", "--http", "http://127.0.0.1:1"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--http", "notaurl"}, "--http"},
		{append(base, "--concurrency", "1,x"), "--concurrency"},
		{append(base, "--concurrency", "0"), "--concurrency"},
		{append(base, "--duration", "-1s"), "--duration"},
		{append(base, "--duration", "2h"), "--duration"},
		{append(base, "--max-requests", "0"), "--max-requests"},
		{append(base, "--accounts", "0"), "--accounts"},
		{append(base, "--phases", "bogus"), "--phases"},
	} {
		r := e.fails(t, exitUsage, "", c.args...)
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("selfreset %s: %q does not name %s", strings.Join(c.args, " "), r.stderr, c.want)
		}
	}
}

// The paced phase runs below what the command path kept up, not below what was answered:
// answers beyond the decisions only queue, and a queue that grows is no steady load.
func TestSustainedRate(t *testing.T) {
	for _, tc := range []struct {
		name             string
		answers, decided float64
		want             float64
	}{
		{"decisions kept up", 140, 141, 140},
		{"intake fell behind", 980, 150, 150},
		{"no events seen", 500, 0, 500},
	} {
		pr := phaseReport{PerSecond: tc.answers, Events: eventsReport{SustainedPerSecond: tc.decided}}
		if got := sustainedRate(pr); got != tc.want {
			t.Errorf("%s: sustainedRate = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPercentileIsTheNearestRank(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []int
		p      float64
		want   int
	}{
		{"p99 of 100 is the 99th", hundred, 0.99, 99},
		{"p50 of 100 is the 50th", hundred, 0.50, 50},
		{"p100 is the largest", hundred, 1, 100},
		{"p0 is the smallest", hundred, 0, 1},
		{"p99 of 10 is the largest", hundred[:10], 0.99, 10},
		{"p50 of 3 is the middle", []int{1, 2, 3}, 0.5, 2},
		{"one value", []int{7}, 0.99, 7},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestLagStatsNamesTheConsumerBehindTheSlowestSamples(t *testing.T) {
	start := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	var samples []lagSample
	for i := 1; i <= 11; i++ {
		name := "admin_users"
		if i >= 9 {
			name = "mailer"
		}
		samples = append(samples, lagSample{at: start.Add(time.Duration(i) * 100 * time.Millisecond),
			age: time.Duration(i) * time.Millisecond, furthest: name})
	}
	// The 11th sample came after the phase ended: not counted.
	r := lagStats(samples, start.Add(time.Second))
	if r.Samples != 10 || r.P99MS != 10 {
		t.Errorf("samples %d, p99 %v ms; want 10 and 10", r.Samples, r.P99MS)
	}
	if want := map[string]int{"mailer": 2}; !maps.Equal(r.FurthestInSlowest, want) {
		t.Errorf("furthest in the slowest tenth: %v, want %v", r.FurthestInSlowest, want)
	}
}

// The harness's floors run every worker of the highest level at once, with a connection
// left for the lag sampler: its event store and database pool are sized for that, not to
// serve's defaults (12, which ran a c = 32 floor 12 statements at a time).
func TestBenchConnectionsFitTheHighestLevel(t *testing.T) {
	e := newEnv(t)
	e.ok(t, "", "migrate")
	c := &cli{stdout: io.Discard, stderr: io.Discard, getenv: e.getenv, log: slog.New(slog.DiscardHandler)}
	err := c.withApp(t.Context(), nil, func(a *app) error {
		store, pool, closeAll, err := benchConnections(t.Context(), c, a, 36)
		if err != nil {
			return err
		}
		defer closeAll()
		if got := pool.Config().MaxConns; got != 36 {
			t.Errorf("database pool of %d connections, want 36", got)
		}
		if s, ok := store.(interface{ Pool() *pgxpool.Pool }); !ok || s.Pool().Config().MaxConns != 36 {
			t.Errorf("the harness's event store is not a Postgres store of 36 connections")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMachineCPUOfAPhase: the harness reads /proc/stat's cpu line, counts idle and iowait
// as not busy, and turns two readings into the busy CPU seconds between them.
func TestMachineCPUOfAPhase(t *testing.T) {
	for _, tc := range []struct {
		line        string
		busy, total uint64
		bad         bool
	}{
		{line: "cpu  100 5 50 800 20 3 2 1 0 0", busy: 161, total: 981},
		{line: "cpu  1 2 3 4 5 6 7 8", busy: 27, total: 36},
		{line: "cpu0 100 5 50 800 20 3 2 1 0 0", bad: true},
		{line: "cpu  100 5 50", bad: true},
		{line: "cpu  100 x 50 800 20 3 2 1", bad: true},
	} {
		c, err := parseMachineCPU(tc.line)
		if (err != nil) != tc.bad || (!tc.bad && (c.busy != tc.busy || c.total != tc.total)) {
			t.Errorf("%q: %+v, %v; want busy %d of %d (bad %v)", tc.line, c, err, tc.busy, tc.total, tc.bad)
		}
	}
	// Half the ticks busy over 4 s on 2 CPUs is 4 CPU seconds; readings that go backwards give none.
	from, to := machineCPU{busy: 1000, total: 4000}, machineCPU{busy: 1400, total: 4800}
	if got := cpuSeconds(from, to, 4*time.Second, 2); got != 4 {
		t.Errorf("cpuSeconds = %v, want 4", got)
	}
	if got := cpuSeconds(to, from, 4*time.Second, 2); got != 0 {
		t.Errorf("cpuSeconds of readings going backwards = %v, want 0", got)
	}
}

// TestProcessCPUOfAPhase: the harness splits a phase's CPU time by process from
// /proc/<pid>/stat (a name with spaces and parentheses included), into serve, postgres,
// harness and the rest of the machine's busy time.
func TestProcessCPUOfAPhase(t *testing.T) {
	for _, tc := range []struct {
		line  string
		comm  string
		ticks uint64
		bad   bool
	}{
		{line: "4242 (postgres) S 1 4242 4242 0 -1 4194560 900 0 0 0 70 30 0 0 20 0 1 0 100 200 300", comm: "postgres", ticks: 100},
		{line: "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 2 3", comm: "a (b) c", ticks: 11},
		{line: "77 (short) R 1 2 3", bad: true},
		{line: "77 postgres R 1", bad: true},
		{line: "77 (x) R 1 77 77 0 -1 0 0 0 0 0 five 6 0", bad: true},
	} {
		comm, ticks, err := parseProcessStat(tc.line)
		if (err != nil) != tc.bad || (!tc.bad && (comm != tc.comm || ticks != tc.ticks)) {
			t.Errorf("%q: %q %d %v; want %q %d (bad %v)", tc.line, comm, ticks, err, tc.comm, tc.ticks, tc.bad)
		}
	}

	proc := t.TempDir()
	stat := func(pid int, comm string, utime, stime int) {
		t.Helper()
		dir := fmt.Sprintf("%s/%d", proc, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("%d (%s) S 1 1 1 0 -1 0 0 0 0 0 %d %d 0 0 20 0 1 0 1 1 1\n", pid, comm, utime, stime)
		if err := os.WriteFile(dir+"/stat", []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stat(10, "selfreset", 40, 10) // serve
	stat(11, "selfreset", 20, 5)  // the harness
	stat(12, "postgres", 100, 50)
	stat(13, "postgres", 30, 0)
	stat(14, "sshd", 9, 9)
	if err := os.MkdirAll(proc+"/self", 0o755); err != nil { // not a pid: passed over
		t.Fatal(err)
	}
	got := readProcessCPU(proc, 10, 11)
	want := processCPU{procServe: 50, procHarness: 25, procPostgres: 180}
	if !maps.Equal(got, want) {
		t.Errorf("readProcessCPU = %v, want %v", got, want)
	}

	// Over 4 s on 2 CPUs the machine counted 800 ticks (100 a second per CPU), 400 busy:
	// serve 100 ticks is 1 s, postgres 200 is 2 s, the harness 40 is 0.4 s, and the
	// remaining 60 busy ticks 0.6 s.
	from := cpuReading{machine: machineCPU{busy: 1000, total: 4000}, procs: processCPU{procServe: 50, procPostgres: 180, procHarness: 25}}
	to := cpuReading{machine: machineCPU{busy: 1400, total: 4800}, procs: processCPU{procServe: 150, procPostgres: 380, procHarness: 65}}
	split := processSeconds(from, to, 4*time.Second, 2)
	if want := map[string]float64{procServe: 1, procPostgres: 2, procHarness: 0.4, procRest: 0.6}; !maps.Equal(split, want) {
		t.Errorf("processSeconds = %v, want %v", split, want)
	}
	r := cpuReport{Seconds: 4, ByProcess: split}
	if got, want := r.shares(), "serve 25%, postgres 50%, harness 10%, rest 15%"; got != want {
		t.Errorf("shares = %q, want %q", got, want)
	}
	// A backend that ended (postgres going backwards) leaves its group out, not negative.
	to.procs[procPostgres] = 100
	if split := processSeconds(from, to, 4*time.Second, 2); split[procPostgres] != 0 || split[procRest] != 2.6 {
		t.Errorf("with a group going backwards: %v", split)
	}
}
