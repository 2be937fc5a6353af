package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"selfreset/commands"
)

// levelAccounts are one level's accounts, one pool per use (a pool's tokens are spent by
// its phase: fresh pools keep the matched share the same at every level).
type levelAccounts struct {
	forgot, reset, login []string
}

type benchPools []levelAccounts

func (p benchPools) count() int {
	n := 0
	for _, l := range p {
		n += len(l.forgot) + len(l.reset) + len(l.login)
	}
	return n
}

func (p benchPools) level(i int) levelAccounts { return p[i] }

// prepare registers the provider and every level's accounts through the command handler,
// each enabled and configured with a verified recovery email (the sink's address space).
func (b *httpBench) prepare(ctx context.Context) (benchPools, time.Duration, error) {
	start := time.Now()
	if err := b.h.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: b.provider,
		Name: "Benchmark", AllowSelfReset: true}); err != nil {
		return nil, 0, err
	}
	has := func(p string) bool { return slices.Contains(b.cfg.phases, p) }
	pools := make(benchPools, len(b.cfg.levels))
	var all []string
	for li, level := range b.cfg.levels {
		names := func(prefix string, n int) []string {
			out := make([]string, n)
			for i := range out {
				out[i] = fmt.Sprintf("%s%d.%04d", prefix, li, i)
			}
			all = append(all, out...)
			return out
		}
		if has(phaseForgot) || has(phaseForgotPaced) {
			pools[li].forgot = names("f", b.cfg.accounts)
		}
		if has(phaseResetFlow) {
			pools[li].reset = names("r", max(b.cfg.accounts, level))
		}
		if has(phaseLogin) {
			pools[li].login = names("l", level)
		}
	}
	res := measure(ctx, "prepare", all, 2*runtime.GOMAXPROCS(0), func(ctx context.Context, _ int, login string) error {
		if err := benchRegister(ctx, b.h, b.provider, login); err != nil {
			return err
		}
		return benchConfigure(ctx, b.h, b.keys, b.provider, login)
	})
	if res.firstErr != nil {
		return nil, 0, fmt.Errorf("bench: preparing accounts: %d failed, the first: %w", res.errors, res.firstErr)
	}
	return pools, time.Since(start), nil
}
