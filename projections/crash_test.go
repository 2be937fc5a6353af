package projections

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrashRecovery stops the consumers again and again at the two moments that matter —
// after the read-model write but before the commit, and right after the commit (before
// the ack) — restarts them each time, and checks that the read models end up equal, row
// for row, to a fresh rebuild, and that no event was ever applied twice (strict_log would
// have parked the duplicate).
func TestCrashRecovery(t *testing.T) {
	for _, tc := range []struct {
		name        string
		afterCommit bool
	}{{"between write and commit", false}, {"after commit", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.createStrictLog()
			e.writeHistory()
			models := append(ReadModels(), strictLog{})
			projs := asProjections(models...)
			total := len(e.ownEvents())

			crashes := 0
			for range 16 {
				target := e.furthestBehind(models)
				if target == "" {
					break
				}
				const k = 4 // crash on the target's 4th event of this run
				ctx, cancel := context.WithCancel(e.ctx)
				var n atomic.Int32
				crashed := make(chan struct{})
				r := e.runner(projs, func(c *Config) {
					if tc.afterCommit {
						c.hooks.afterCommit = func(consumer string, _ Envelope) {
							if consumer == target && n.Add(1) == k {
								cancel()
								close(crashed)
							}
						}
						return
					}
					c.hooks.beforeCommit = func(consumer string, _ Envelope) error {
						if consumer == target && n.Add(1) == k {
							cancel()
							close(crashed)
							return errCrash
						}
						return nil
					}
				})
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx) }()
				if e.crashOrCaughtUp(crashed, r.names()) {
					crashes++
				}
				cancel()
				select {
				case err := <-done:
					e.must(err)
				case <-time.After(30 * time.Second):
					t.Fatal("Run did not return after the crash")
				}
			}
			if crashes < 8 {
				t.Fatalf("only %d of the runs crashed; the test did not exercise recovery", crashes)
			}
			if n := len(e.ownParked()); n != 0 {
				t.Fatalf("%d events parked (an event applied twice?)\n%s", n, e.logs.String())
			}

			// Restart and finish.
			r := e.runner(projs)
			e.runToHead(r)
			if n := e.strictLogged(); n != total {
				t.Errorf("strict_log has %d rows of this test's events, want one per event (%d)", n, total)
			}
			if n := len(e.ownParked()); n != 0 {
				t.Errorf("%d events parked", n)
			}
			sameDumps(t, "after crashes", e.dumps(models), e.freshRebuild(r, models))
			t.Logf("%d crashes over %d events", crashes, total)
		})
	}
}

// crashOrCaughtUp waits until the crash hook fired (true) or every consumer reached the
// last event without it (false). On the shared EventStoreDB the crashes may hit other
// tests' events: recovery is the same for every event.
func (e *env) crashOrCaughtUp(crashed <-chan struct{}, names []string) bool {
	e.t.Helper()
	target := e.lastAppended()
	deadline := time.Now().Add(waitLimit)
	for {
		select {
		case <-crashed:
			return true
		case <-time.After(10 * time.Millisecond):
		}
		all := true
		for _, n := range names {
			cp, err := readCheckpoint(e.ctx, e.pool, n)
			e.must(err)
			all = all && !cp.Less(target)
		}
		if all {
			return false
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("neither a crash nor progress to %s within %s\n%s", target, waitLimit, e.logs.String())
		}
	}
}

// furthestBehind names the model whose checkpoint is furthest from the last event ("" when
// all are there).
func (e *env) furthestBehind(models []ReadModel) string {
	e.t.Helper()
	last := e.lastAppended()
	name, lowest := "", last
	for _, m := range models {
		cp, err := readCheckpoint(e.ctx, e.pool, m.Name())
		e.must(err)
		if cp.Less(lowest) || (name == "" && cp.Less(last)) {
			name, lowest = m.Name(), cp
		}
	}
	return name
}
