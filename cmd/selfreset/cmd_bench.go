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
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/secret"
)

var benchGroup = group{
	name:    "bench",
	summary: "measure the command path and the feed against the configured stores (bounded; writes a throwaway provider)",
	run:     runBench,
}

// benchResult is one measured operation.
type benchResult struct {
	name      string
	latencies []time.Duration
	errors    int
	wall      time.Duration
}

func (r benchResult) row() string {
	if len(r.latencies) == 0 {
		return fmt.Sprintf("%-28s %8s", r.name, "no samples")
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	pct := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("%-28s %8d %10.1f %10s %10s %10s %6d", r.name, len(s),
		float64(len(s))/r.wall.Seconds(), pct(0.50).Round(10*time.Microsecond),
		pct(0.95).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), r.errors)
}

func runBench(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("bench", "selfreset bench [--users N] [--concurrency N]")
	users := fs.Int("users", 200, "accounts to create (each gets one token request and one reset)")
	conc := fs.Int("concurrency", 8, "concurrent callers")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	if *users < 1 || *users > 5000 || *conc < 1 || *conc > 256 {
		return usagef("bench: --users must be 1..5000 and --concurrency 1..256")
	}
	a, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	h, err := a.commands()
	if err != nil {
		return err
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	code := "BENCH" + strings.ToUpper(hex.EncodeToString(suffix[:]))
	c.printf("bench: provider %s, %d users, concurrency %d, event store %s\n", code, *users, *conc, a.cfg.EventStore)
	if err := h.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: code, Name: "Benchmark", AllowSelfReset: true}); err != nil {
		return err
	}
	logins := make([]string, *users)
	for i := range logins {
		logins[i] = fmt.Sprintf("u%05d", i)
	}
	keys, err := a.cfg.Keyring()
	if err != nil {
		return err
	}
	email := func(login string) string { return login + "@bench.invalid" }
	tokens := make([]string, len(logins))

	results := []benchResult{
		measure(ctx, "register user (argon2id)", logins, *conc, func(ctx context.Context, i int, l string) error {
			return h.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: code, Login: l, DisplayName: l, Password: "bench-password-" + l})
		}),
		measure(ctx, "enable + configure", logins, *conc, func(ctx context.Context, i int, l string) error {
			if err := h.EnableSelfReset(ctx, commands.UserCommand{Actor: operator, Provider: code, Login: l}); err != nil {
				return err
			}
			self := commands.SelfUser{Provider: code, Login: l}
			id, err := h.StartEmailVerification(ctx, commands.StartEmailVerification{SelfUser: self, Email: email(l)})
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
		}),
		measure(ctx, "forgot password (token)", logins, *conc, func(ctx context.Context, i int, l string) error {
			id, err := h.RequestResetToken(ctx, commands.RequestResetToken{Provider: code, Login: l, Email: email(l)})
			if err != nil {
				return err
			}
			tokens[i], err = keys.Value(secret.KindResetToken, keys.CurrentKeyID(), id)
			return err
		}),
		measure(ctx, "unmatched request", logins, *conc, func(ctx context.Context, i int, l string) error {
			_, err := h.RequestResetToken(ctx, commands.RequestResetToken{Provider: code, Login: "nobody" + l, Email: email(l)})
			if domain.Code(err) == domain.ErrUnknownAccount.Code {
				return nil
			}
			return err
		}),
		measure(ctx, "reset password (argon2id)", logins, *conc, func(ctx context.Context, i int, l string) error {
			return h.ResetPassword(ctx, commands.ResetPassword{Provider: code, Login: l, Token: tokens[i], NewPassword: "new-bench-password-" + l})
		}),
		measure(ctx, "load user (fold stream)", logins, *conc, func(ctx context.Context, i int, l string) error {
			_, _, err := h.LoadUser(ctx, code, l)
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
