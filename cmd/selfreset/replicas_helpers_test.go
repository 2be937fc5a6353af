package main

// Helpers of TestReplicasSurviveAKilledLockHolder (replicas_test.go): an SMTP sink, the
// `selfreset serve` child processes, and the queries that look into the shared database.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/config"
	"selfreset/internal/testkit"
	"selfreset/mailer"
	"selfreset/projections"
)

// ---- SMTP sink ----

// repSMTPDelay is how long the sink (a testkit.SMTPServer) takes to accept a message: a
// relay takes a moment to accept; it also widens the window in which a killed sender holds
// leased deliveries.
const repSMTPDelay = 3 * time.Millisecond

// repParsed is what the test reads from a message: the event id in its Message-ID and, for
// a reset-token mail, the token on its own line of the text part.
type repParsed struct {
	EventID string
	Token   string // "" when the text part has no token line
}

func repParseMail(m testkit.Message) (repParsed, error) {
	if m.Err != nil {
		return repParsed{}, m.Err
	}
	if m.MediaType != "multipart/alternative" {
		return repParsed{}, fmt.Errorf("Content-Type %q: want multipart/alternative", m.Header.Get("Content-Type"))
	}
	var p repParsed
	id := strings.Trim(m.Header.Get("Message-ID"), "<>")
	p.EventID, _, _ = strings.Cut(id, "@")
	found := testkit.MatchingLines(m.Text, testkit.TokenLine)
	if len(found) > 1 {
		return repParsed{}, fmt.Errorf("%d token lines in one message: %q", len(found), found)
	}
	if len(found) == 1 {
		p.Token = found[0]
	}
	return p, nil
}

// ---- child processes ----

// repEnv is the environment of a child process: nothing inherited but PATH and the libpq
// variables a test database URL may rely on, the database URL tagged with app (so that
// pg_stat_activity names the process), the secret and extra.
func repEnv(t *testing.T, dbURL, app string, extra ...string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env,
		config.EnvDatabaseURL+"="+repWithAppName(t, dbURL, app),
		config.EnvSecret+"="+repSecret,
	)
	return append(env, extra...)
}

// repWithAppName sets application_name in a URL or key=value connection string.
func repWithAppName(t *testing.T, dbURL, app string) string {
	t.Helper()
	if u, err := url.Parse(dbURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("application_name", app)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dbURL + " application_name=" + app
}

// repCLI runs the built binary once and returns its stdout; it fails the test on a
// non-zero exit or after timeout.
func repCLI(t *testing.T, bin string, env []string, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := repCLIErr(bin, env, timeout, args...)
	if err != nil {
		t.Fatalf("selfreset %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func repCLIErr(bin string, env []string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// repReplica is one `selfreset serve` child process.
type repReplica struct {
	Name   string // also its application_name
	Addr   string // host:port it listens on
	Logs   string // stderr file
	cmd    *exec.Cmd
	done   chan struct{} // closed once Wait returned
	err    error         // Wait's result, once done is closed
	killed atomic.Bool   // SIGKILLed by the test: requests to it are expected to fail
}

var repListening = regexp.MustCompile(`msg=listening addr=(\S+)`)

// repStartReplica starts `selfreset serve` (with args) and returns once it listens (not
// yet ready).
func repStartReplica(t *testing.T, bin, dir, name string, env []string, args ...string) *repReplica {
	t.Helper()
	r := &repReplica{Name: name, Logs: filepath.Join(dir, name+".stderr"), done: make(chan struct{})}
	stderr, err := os.Create(r.Logs)
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := os.Create(filepath.Join(dir, name+".stdout"))
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	r.cmd.Env = env
	r.cmd.Stdout, r.cmd.Stderr = stdout, stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		stdout.Close()
		stderr.Close()
		close(r.done)
	}()
	t.Cleanup(func() {
		// Whatever happened, leave no child behind (only this test's own process).
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			select {
			case <-r.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not exit after SIGKILL", name, r.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("---- last lines of %s stderr (%s) ----\n%s", name, r.Logs, repTail(r.Logs, 40))
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(r.Logs); err == nil {
			if m := repListening.FindSubmatch(b); m != nil {
				r.Addr = string(m[1])
				return r
			}
		}
		select {
		case <-r.done:
			t.Fatalf("%s exited before listening: %v\n%s", name, r.err, repTail(r.Logs, 40))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen within 30s\n%s", name, repTail(r.Logs, 40))
		}
	}
}

// waitReady polls GET /readyz until it answers 200.
func (r *repReplica) waitReady(t *testing.T, client *http.Client, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get("http://" + r.Addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /readyz not 200 within %s (last error %v)", r.Name, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL.
func (r *repReplica) kill() error {
	r.killed.Store(true)
	return r.cmd.Process.Kill()
}

// terminate sends SIGTERM and waits up to within for the exit; it returns the exit error
// (nil for status 0).
func (r *repReplica) terminate(within time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-r.done:
		return time.Since(start), r.err
	case <-time.After(within):
		return time.Since(start), fmt.Errorf("%s did not exit within %s of SIGTERM", r.Name, within)
	}
}

// repTail is the last n lines of a file.
func repTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// repCountLines counts the lines of a file that contain s.
func repCountLines(path, s string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// ---- looking into the database ----

// repConsumers are the consumers every `serve` feeds, each under its own advisory lock.
func repConsumers() []string {
	var out []string
	for _, m := range projections.ReadModels() {
		out = append(out, m.Name())
	}
	return append(out, mailer.ProjectionName)
}

// repLockHolders maps each consumer to the application_name of the session holding its
// advisory lock in this database ("" when nobody holds it). The key scheme is
// projections/feed.go's: pg_try_advisory_lock(hashtextextended('selfreset.projections:'
// || consumer, 0)); a bigint key shows in pg_locks as classid (high half), objid (low
// half) and objsubid 1.
func repLockHolders(ctx context.Context, pool *pgxpool.Pool) (map[string]string, error) {
	rows, err := pool.Query(ctx, `
		SELECT c.name, coalesce(a.application_name, '')
		FROM unnest($1::text[]) AS c(name)
		LEFT JOIN pg_locks l
			ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended('selfreset.projections:' || c.name, 0)
		LEFT JOIN pg_stat_activity a ON a.pid = l.pid`, repConsumers())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, app string
		if err := rows.Scan(&name, &app); err != nil {
			return nil, err
		}
		out[name] = app
	}
	return out, rows.Err()
}

// repSoleHolder is the one application holding every consumer lock, or "".
func repSoleHolder(holders map[string]string) string {
	app := ""
	for _, c := range repConsumers() {
		h := holders[c]
		if h == "" || (app != "" && h != app) {
			return ""
		}
		app = h
	}
	return app
}

// repDumpReadModels renders every row of the read models' tables, ordered by key.
func repDumpReadModels(ctx context.Context, pool *pgxpool.Pool) (map[string][]string, error) {
	order := map[string]string{
		"providers":            "code",
		"admin_users":          "provider, login",
		"reset_tokens":         "token_id",
		"reset_activity_facts": "event_id, kind",
		"login_activity_facts": "event_id",
		"configuration_facts":  "event_id",
		"enablement_history":   "enabled_event_id",
	}
	out := map[string][]string{}
	for _, m := range projections.ReadModels() {
		for _, table := range m.Tables() {
			by, ok := order[table]
			if !ok {
				return nil, fmt.Errorf("read model %s has a table %s this test does not know how to order", m.Name(), table)
			}
			rows, err := pool.Query(ctx, `SELECT t::text FROM `+pgx.Identifier{projections.Schema, table}.Sanitize()+` t ORDER BY `+by)
			if err != nil {
				return nil, err
			}
			var lines []string
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					rows.Close()
					return nil, err
				}
				lines = append(lines, s)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
			out[table] = lines
		}
	}
	return out, nil
}

// repStatusBehind parses `selfreset projections status`: consumer → BEHIND and PARKED.
func repStatusBehind(out string) (behind map[string]string, parked map[string]string) {
	behind, parked = map[string]string{}, map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 5 {
			continue
		}
		behind[f[0]], parked[f[0]] = f[3], f[4]
	}
	return behind, parked
}

// ---- back-pressure for the load ----

// repBacklog counts, per replica, the requests it answered 202 whose event (the command's
// decision, carrying the request id as correlation id) has not appeared in the store.
type repBacklog struct {
	mu          sync.Mutex
	answeredBy  map[string]int  // request id → replica
	seen        map[string]bool // request ids with an event
	outstanding []int
}

func newRepBacklog(replicas int) *repBacklog {
	return &repBacklog{answeredBy: map[string]int{}, seen: map[string]bool{}, outstanding: make([]int, replicas)}
}

func (b *repBacklog) answered(id string, replica int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.answeredBy[id]; dup {
		return
	}
	b.answeredBy[id] = replica
	if !b.seen[id] {
		b.outstanding[replica]++
	}
}

func (b *repBacklog) saw(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen[id] {
		return
	}
	b.seen[id] = true
	if r, ok := b.answeredBy[id]; ok {
		b.outstanding[r]--
	}
}

// watch reads the request ids of the Forgot Password decisions every interval until ctx ends.
func (b *repBacklog) watch(ctx context.Context, pool *pgxpool.Pool, interval time.Duration) error {
	for {
		rows, err := pool.Query(ctx, `SELECT DISTINCT metadata->>'correlation_id' FROM events
			WHERE type IN ('ResetTokenIssued', 'ResetRequestRejected') AND metadata ? 'correlation_id'`)
		if err == nil {
			for rows.Next() {
				var id string
				if err = rows.Scan(&id); err != nil {
					break
				}
				b.saw(id)
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// waitBelow waits until every replica not ignored has fewer than limit requests
// outstanding; it reports how long it waited.
func (b *repBacklog) waitBelow(limit int, ignore func(replica int) bool, within time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		b.mu.Lock()
		busy := -1
		for r, n := range b.outstanding {
			if n >= limit && !ignore(r) {
				busy = r
			}
		}
		state := fmt.Sprint(b.outstanding)
		b.mu.Unlock()
		if busy < 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > within {
			return time.Since(start), fmt.Errorf("replica %d has had %d requests or more waiting for their command for %s (outstanding per replica %s)",
				busy+1, limit, within, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// buildBinary builds this command into dir and returns its path, for tests that run it
// as separate processes (to kill them).
func buildBinary(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "selfreset")
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go tool on PATH to build the binary it runs as separate processes")
	}
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
