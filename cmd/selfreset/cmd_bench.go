package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"selfreset/commands"
	"selfreset/config"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/secret"
)

var benchGroup = group{
	name:    "bench",
	summary: "measure the command path in process, or with --http a running serve against its floor (bounded; writes a throwaway provider)",
	run:     runBench,
}

// benchResult is one measured operation.
type benchResult struct {
	name      string
	latencies []time.Duration
	errors    int
	firstErr  error
	wall      time.Duration
}

func (r benchResult) row() string {
	if len(r.latencies) == 0 {
		return fmt.Sprintf("%-28s %8s", r.name, "no samples")
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	pct := func(p float64) time.Duration { return percentile(s, p).Round(10 * time.Microsecond) }
	return fmt.Sprintf("%-28s %8d %10.1f %10s %10s %10s %6d", r.name, len(s),
		float64(len(s))/r.wall.Seconds(), pct(0.50), pct(0.95), pct(0.99), r.errors)
}

func runBench(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("bench", "selfreset bench [--users N] [--concurrency N]\n"+
		"       selfreset bench --http http://127.0.0.1:8080 [--smtp-listen 127.0.0.1:2525] [--concurrency 1,8,32] [--duration 20s] [--json out.json]")
	users := fs.Int("users", 200, "accounts to create (each gets one token request and one reset)")
	conc := fs.String("concurrency", "8", "concurrent callers; with --http a list of levels, e.g. 1,8,32")
	var hc httpBenchConfig
	fs.StringVar(&hc.base, "http", "", "drive the serve running at this loopback URL instead of calling the commands in process")
	fs.StringVar(&hc.smtpListen, "smtp-listen", "127.0.0.1:2525", "with --http: where the harness's SMTP sink listens (the serve's SELFRESET_SMTP_ADDR); \"\" for none")
	fs.DurationVar(&hc.duration, "duration", 20*time.Second, "with --http: how long each phase runs at each level")
	fs.IntVar(&hc.maxRequests, "max-requests", 100000, "with --http: at most this many requests per phase and level")
	fs.IntVar(&hc.accounts, "accounts", 200, "with --http: accounts per pool and level (forgot password, reset flows)")
	phases := fs.String("phases", "all", "with --http: the phases to run, comma-separated ("+strings.Join(allPhases, ",")+")")
	fs.StringVar(&hc.jsonPath, "json", "", "with --http: also write the figures to this JSON file")
	fs.IntVar(&hc.pid, "pid", 0, "with --http: the serve's process id, for its VmHWM (default: the process listening on the --http port)")
	dbURL := fs.String("database-url", "", "the database the serve under test uses (default "+config.EnvDatabaseURL+")")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	if *dbURL != "" {
		c = c.withEnv(config.EnvDatabaseURL, *dbURL)
	}
	levels, err := parseLevels(*conc)
	if err != nil {
		return err
	}
	if hc.base != "" {
		if hc.base, err = checkBase(hc.base); err != nil {
			return err
		}
		if hc.phases, err = parsePhases(*phases); err != nil {
			return err
		}
		switch {
		case hc.duration <= 0 || hc.duration > time.Hour:
			return usagef("bench: --duration %s: must be more than 0 and at most 1h", hc.duration)
		case hc.maxRequests < 1:
			return usagef("bench: --max-requests %d: must be at least 1", hc.maxRequests)
		case hc.accounts < 1 || hc.accounts > 10000:
			return usagef("bench: --accounts %d: must be from 1 to 10000", hc.accounts)
		}
		hc.levels = levels
		return c.withApp(ctx, nil, func(a *app) error { return runBenchHTTP(ctx, c, a, hc) })
	}
	if *users < 1 || *users > 5000 || len(levels) != 1 {
		return usagef("bench: --users must be 1..5000 and --concurrency one number 1..256 (a list needs --http)")
	}
	return c.withApp(ctx, nil, func(a *app) error { return runBenchCommands(ctx, c, a, *users, levels[0]) })
}

// runBenchCommands measures the command handler in process, once per user.
func runBenchCommands(ctx context.Context, c *cli, a *app, users, conc int) error {
	h, err := a.commands()
	if err != nil {
		return err
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	code := "BENCH" + strings.ToUpper(hex.EncodeToString(suffix[:]))
	c.printf("bench: provider %s, %d users, concurrency %d, event store %s\n", code, users, conc, a.cfg.EventStore)
	if err := h.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: code, Name: "Benchmark", AllowSelfReset: true}); err != nil {
		return err
	}
	logins := make([]string, users)
	for i := range logins {
		logins[i] = fmt.Sprintf("u%05d", i)
	}
	keys, err := a.cfg.Keyring()
	if err != nil {
		return err
	}
	tokens := make([]string, len(logins))

	results := []benchResult{
		measure(ctx, "register user (argon2id)", logins, conc, func(ctx context.Context, i int, l string) error {
			return benchRegister(ctx, h, code, l)
		}),
		measure(ctx, "enable + configure", logins, conc, func(ctx context.Context, i int, l string) error {
			return benchConfigure(ctx, h, keys, code, l)
		}),
		measure(ctx, "forgot password (token)", logins, conc, func(ctx context.Context, i int, l string) error {
			id, err := h.RequestResetToken(ctx, commands.RequestResetToken{Provider: code, Login: l, Email: benchEmail(l)})
			if err != nil {
				return err
			}
			tokens[i], err = keys.Value(secret.KindResetToken, keys.CurrentKeyID(), id)
			return err
		}),
		measure(ctx, "unmatched request", logins, conc, func(ctx context.Context, i int, l string) error {
			_, err := h.RequestResetToken(ctx, commands.RequestResetToken{Provider: code, Login: "nobody" + l, Email: benchEmail(l)})
			if domain.Code(err) == domain.ErrUnknownAccount.Code {
				return nil
			}
			return err
		}),
		measure(ctx, "reset password (argon2id)", logins, conc, func(ctx context.Context, i int, l string) error {
			return h.ResetPassword(ctx, commands.ResetPassword{Provider: code, Login: l, Token: tokens[i], NewPassword: "new-bench-password-" + l})
		}),
		measure(ctx, "load user (fold stream)", logins, conc, func(ctx context.Context, i int, l string) error {
			_, err := h.LoadUser(ctx, code, l)
			return err
		}),
	}
	results = append(results, measureFeed(ctx, a.store))

	c.printf("\n%-28s %8s %10s %10s %10s %10s %6s\n", "operation", "n", "ops/s", "p50", "p95", "p99", "errors")
	for _, r := range results {
		c.printf("%s\n", r.row())
	}
	c.printf("\nThe provider %s and its users stay in the event store (events are never deleted).\n", code)
	return nil
}

func benchEmail(login string) string    { return login + "@bench.invalid" }
func benchPassword(login string) string { return "bench-password-" + login }

// benchRegister registers a bench account with its password (argon2id, as configured).
func benchRegister(ctx context.Context, h *commands.Handler, code, login string) error {
	return h.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: code, Login: login, DisplayName: login, Password: benchPassword(login)})
}

// benchConfigure enables Self Password Reset for the account and configures its recovery
// email, verified with the code derived from the keyring (no mail needed).
func benchConfigure(ctx context.Context, h *commands.Handler, keys *secret.Keyring, code, login string) error {
	if err := h.EnableSelfReset(ctx, commands.UserCommand{Actor: operator, Provider: code, Login: login}); err != nil {
		return err
	}
	self := commands.SelfUser{Provider: code, Login: login}
	id, err := h.StartEmailVerification(ctx, commands.StartEmailVerification{SelfUser: self, Email: benchEmail(login)})
	if err != nil {
		return err
	}
	v, err := keys.Value(secret.KindEmailCode, keys.CurrentKeyID(), id)
	if err != nil {
		return err
	}
	if err := h.VerifyEmailCode(ctx, commands.VerifyEmailCode{SelfUser: self, Code: v}); err != nil {
		return err
	}
	return h.ConfigureSelfReset(ctx, commands.ConfigureSelfReset{SelfUser: self})
}

// measure runs op once per login with conc workers and records each call's latency.
func measure(ctx context.Context, name string, logins []string, conc int, op func(ctx context.Context, i int, login string) error) benchResult {
	res := benchResult{name: name, latencies: make([]time.Duration, 0, len(logins))}
	var mu sync.Mutex
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				err := op(ctx, i, logins[i])
				d := time.Since(t0)
				mu.Lock()
				res.latencies = append(res.latencies, d)
				if err != nil {
					res.errors++
					if res.firstErr == nil {
						res.firstErr = err
					}
				}
				mu.Unlock()
			}
		})
	}
	for i := range logins {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	res.wall = time.Since(start)
	return res
}

// measureFeed pages through the whole global feed once, 500 events a page.
func measureFeed(ctx context.Context, store eventstore.Store) benchResult {
	res := benchResult{name: "read feed (per 500 events)"}
	start := time.Now()
	pos := eventstore.Start
	for ctx.Err() == nil {
		t0 := time.Now()
		page, err := store.ReadAll(ctx, pos, 500)
		res.latencies = append(res.latencies, time.Since(t0))
		if err != nil {
			res.errors++
			break
		}
		if len(page) == 0 {
			break
		}
		pos = page[len(page)-1].Position
	}
	res.wall = time.Since(start)
	return res
}

// withEnv is c with one environment variable set to value (a flag that overrides it).
func (c *cli) withEnv(name, value string) *cli {
	out := *c
	out.getenv = func(k string) string {
		if k == name {
			return value
		}
		return c.getenv(k)
	}
	return &out
}
