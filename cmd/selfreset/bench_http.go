package main

// selfreset bench --http: a load harness that drives a running `serve` over loopback and
// measures, in the same run, the machine's floor (one-row INSERT, the event store's own
// append) at the same concurrency. docs/benchmarks.md reports it.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/commands"
	"selfreset/config"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/projections"
	"selfreset/secret"
)

// The phases of one concurrency level, in the order they run.
const (
	phaseInsertFloor  = "insert_floor"
	phaseAppendFloor  = "append_floor"
	phaseForgot       = "forgot_password"
	phaseForgotPaced  = "forgot_password_80pct"
	phaseResetFlow    = "reset_flow"
	phaseLogin        = "login"
	pacedShare        = 0.8              // of the full-rate forgot-password phase's sustained rate, for the lag at steady load
	benchSettleWithin = 10 * time.Minute // the intake's backlog after a burst drains slowly
)

var allPhases = []string{phaseInsertFloor, phaseAppendFloor, phaseForgot, phaseForgotPaced, phaseResetFlow, phaseLogin}

// httpBenchConfig is what the flags of `bench --http` say.
type httpBenchConfig struct {
	base        string // the serve under test, http://127.0.0.1:port
	smtpListen  string // where the harness's SMTP sink listens ("" for none)
	levels      []int
	duration    time.Duration // per phase and level
	maxRequests int           // per phase and level
	accounts    int           // per pool and level
	phases      []string
	jsonPath    string
	pid         int // the serve process (0: found from the listener of base)
}

// httpBench is one harness run.
type httpBench struct {
	cfg      httpBenchConfig
	c        *cli
	client   *http.Client
	store    eventstore.Store
	codec    *domain.Codec
	pool     *pgxpool.Pool
	lag      *projections.Runner
	mail     *mailbox
	h        *commands.Handler
	keys     *secret.Keyring
	provider string
	maxUses  int // tokens an account gets per throttling window
	pid      int
}

// parseLevels reads "1,8,32".
func parseLevels(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 256 {
			return nil, usagef("bench: --concurrency %q: each level must be a number from 1 to 256", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// parsePhases reads a comma-separated subset of allPhases ("" or "all": every phase).
func parsePhases(s string) ([]string, error) {
	if s == "" || s == "all" {
		return allPhases, nil
	}
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		found := false
		for _, p := range allPhases {
			found = found || p == f
		}
		if !found {
			return nil, usagef("bench: --phases: unknown phase %q (known: %s)", f, strings.Join(allPhases, ", "))
		}
		out = append(out, f)
	}
	return out, nil
}

// checkBase accepts only a loopback http URL: the harness measures a serve on this machine.
func checkBase(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", usagef("bench: --http %q must be http://host:port of a running serve", raw)
	}
	host := u.Hostname()
	if host != "localhost" && !strings.HasPrefix(host, "127.") && host != "::1" {
		return "", usagef("bench: --http %q: only a serve on loopback is measured", raw)
	}
	return "http://" + u.Host, nil
}

// runBenchHTTP opens the read-model pool, prepares accounts and runs every phase at every level.
func runBenchHTTP(ctx context.Context, c *cli, a *app, cfg httpBenchConfig) error {
	b, cleanup, err := newHTTPBench(ctx, c, a, cfg)
	if err != nil {
		return err
	}
	defer cleanup()
	rep, err := b.run(ctx)
	if err != nil {
		return err
	}
	b.printReport(rep)
	if cfg.jsonPath != "" {
		return writeJSONReport(cfg.jsonPath, rep)
	}
	return nil
}

func newHTTPBench(ctx context.Context, c *cli, a *app, cfg httpBenchConfig) (*httpBench, func(), error) {
	maxLevel := 1
	for _, l := range cfg.levels {
		maxLevel = max(maxLevel, l)
	}
	store, pool, closePool, err := benchConnections(ctx, c, a, maxLevel+4)
	if err != nil {
		return nil, nil, err
	}
	h, err := a.commands()
	if err != nil {
		closePool()
		return nil, nil, err
	}
	keys, err := a.cfg.Keyring()
	if err != nil {
		closePool()
		return nil, nil, &config.Error{Var: config.EnvSecret, Msg: err.Error()}
	}
	lag, err := projections.New(projections.Config{Store: store, Pool: pool, Logger: c.log,
		Projections: consumers(), LagCap: 1 << 20})
	if err != nil {
		closePool()
		return nil, nil, err
	}
	b := &httpBench{cfg: cfg, c: c, store: store, codec: a.codec, pool: pool, lag: lag, h: h, keys: keys,
		maxUses: a.cfg.Policy().MaxTokensPerWindow, mail: newMailbox(),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: maxLevel + 4}}}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	b.provider = "BENCH" + strings.ToUpper(hex.EncodeToString(suffix[:]))
	cleanup := func() {
		b.client.CloseIdleConnections()
		_ = b.mail.Close()
		b.dropFloorTable(context.WithoutCancel(ctx))
		closePool()
	}
	if err := b.start(ctx); err != nil {
		cleanup()
		return nil, nil, err
	}
	return b, cleanup, nil
}

// benchConnections opens the harness's own event store and database pool with conns
// connections each (unless the URLs set pool_max_conns): the floors run every worker of
// the highest level at once, and the lag sampler and the feed scans need a connection
// beside them. With serve's sizes (12) a c = 32 floor ran 12 statements at a time and the
// sampler got no connection while it ran.
func benchConnections(ctx context.Context, c *cli, a *app, conns int) (eventstore.Store, *pgxpool.Pool, func(), error) {
	if a.cfg.EventStore != config.EventStorePostgres {
		pool, closePool, err := openDatabasePool(ctx, withPoolSize(a.cfg.DatabaseURL, conns))
		return a.store, pool, closePool, err
	}
	s, err := c.openPostgres(ctx, a.cfg, withPoolSize(a.cfg.EventStoreURL, conns))
	if err != nil {
		return nil, nil, nil, err
	}
	if a.cfg.EventStoreURL == a.cfg.DatabaseURL {
		return s, s.Pool(), s.Close, nil
	}
	pool, closePool, err := openDatabasePool(ctx, withPoolSize(a.cfg.DatabaseURL, conns))
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	return s, pool, func() { closePool(); s.Close() }, nil
}

// start checks the serve answers, finds its process, starts the sink and the floor table.
func (b *httpBench) start(ctx context.Context) error {
	res, err := b.client.Get(b.cfg.base + "/readyz")
	if err != nil {
		return fmt.Errorf("bench: no serve answering at %s: %w", b.cfg.base, err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: %s/readyz answered %s; start serve and let it get ready first", b.cfg.base, res.Status)
	}
	b.pid = b.cfg.pid
	if b.pid == 0 {
		if b.pid, err = pidListeningOn(b.cfg.base); err != nil {
			b.c.log.Warn("bench: the serve process was not found; VmHWM will be missing (pass --pid)", "err", err)
		}
	}
	if b.cfg.smtpListen != "" {
		if err := b.mail.Listen(b.cfg.smtpListen); err != nil {
			return err
		}
	}
	return b.createFloorTable(ctx)
}

// run prepares the accounts and runs the phases level by level.
func (b *httpBench) run(ctx context.Context) (benchReport, error) {
	rep := benchReport{Started: time.Now().UTC(), BaseURL: b.cfg.base, PID: b.pid, Provider: b.provider,
		DurationSeconds: b.cfg.duration.Seconds(), MaxRequests: b.cfg.maxRequests, Accounts: b.cfg.accounts}
	b.c.printf("bench: %s (pid %d), provider %s, levels %v, %s per phase\n", b.cfg.base, b.pid, b.provider, b.cfg.levels, b.cfg.duration)
	pools, took, err := b.prepare(ctx)
	if err != nil {
		return rep, err
	}
	rep.PrepareSeconds = took.Seconds()
	if _, _, err := b.settle(ctx); err != nil { // the preparation's code mails, its events
		return rep, err
	}
	b.c.printf("bench: prepared %d accounts in %s\n\n", pools.count(), took.Round(time.Millisecond))
	b.printHeader()
	for li, level := range b.cfg.levels {
		lr := levelReport{Concurrency: level}
		var forgotRate float64
		for _, ph := range b.cfg.phases {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			pr, err := b.runPhase(ctx, ph, level, pools.level(li), forgotRate)
			if err != nil {
				return rep, fmt.Errorf("bench: %s at concurrency %d: %w", ph, level, err)
			}
			if ph == phaseForgot {
				forgotRate = sustainedRate(pr)
			}
			b.c.printf("%s\n", pr.row(level))
			lr.Phases = append(lr.Phases, pr)
		}
		lr.ratios()
		rep.Levels = append(rep.Levels, lr)
	}
	rep.VmHWMBytes = readVmHWM(b.pid)
	return rep, nil
}

// sustainedRate is the Forgot Password rate the whole command path kept up at full load:
// the answers, or the decisions behind them (events over the time to the last one) when
// the intake fell behind. Answers beyond it only queue, so a steady load is paced below it.
func sustainedRate(pr phaseReport) float64 {
	if s := pr.Events.SustainedPerSecond; s > 0 {
		return min(pr.PerSecond, s)
	}
	return pr.PerSecond
}
