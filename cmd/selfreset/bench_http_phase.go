package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"selfreset/eventstore"
	"selfreset/mailer"
	"selfreset/reset"
)

// recorder collects one phase's latencies (by step) and outcomes from its workers.
type recorder struct {
	mu       sync.Mutex
	steps    map[string][]time.Duration
	outcomes map[string]int
	errors   int
	issued   atomic.Int64 // requests (or flows) started, for --max-requests
	max      int64
	deadline time.Time
}

func newRecorder(max int, d time.Duration) *recorder {
	return &recorder{steps: map[string][]time.Duration{}, outcomes: map[string]int{}, max: int64(max), deadline: time.Now().Add(d)}
}

// next says whether a worker may start one more request: within the time and the count.
func (r *recorder) next(ctx context.Context) bool {
	return ctx.Err() == nil && time.Now().Before(r.deadline) && r.issued.Add(1) <= r.max
}

// done records one request: its latency under step, and its outcome (an error when bad).
func (r *recorder) done(step string, d time.Duration, outcome string, bad bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps[step] = append(r.steps[step], d)
	if outcome != "" { // a step of a flow; the flow records the outcome
		r.outcomes[outcome]++
	}
	if bad {
		r.errors++
	}
}

// workers runs fn on conc goroutines until each returns.
func workers(conc int, fn func(w int)) {
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() { fn(w) })
	}
	wg.Wait()
}

// runPhase runs one phase at one level, lets the server settle, and measures.
func (b *httpBench) runPhase(ctx context.Context, phase string, conc int, accts levelAccounts, forgotRate float64) (phaseReport, error) {
	head0, err := b.store.Head(ctx)
	if err != nil {
		return phaseReport{}, err
	}
	mailMark := b.mail.mark()
	lagCtx, stopLag := context.WithCancel(ctx)
	samples := make(chan []lagSample, 1)
	go func() { samples <- b.sampleLag(lagCtx, 100*time.Millisecond) }()

	rec := newRecorder(b.cfg.maxRequests, b.cfg.duration)
	cpu0 := readCPU(b.pid)
	start := time.Now()
	var missed int64
	switch phase {
	case phaseInsertFloor:
		workers(conc, func(w int) { b.insertFloor(ctx, rec, w) })
	case phaseAppendFloor:
		workers(conc, func(w int) { b.appendFloor(ctx, rec) })
	case phaseForgot:
		var pick atomic.Int64
		workers(conc, func(w int) { b.forgotLoop(ctx, rec, accts.forgot, &pick, nil) })
	case phaseForgotPaced:
		missed = b.forgotPaced(ctx, rec, conc, accts.forgot, pacedShare*forgotRate)
	case phaseResetFlow:
		var pick atomic.Int64
		workers(conc, func(w int) { b.resetFlowLoop(ctx, rec, accts.reset, &pick) })
	case phaseLogin:
		workers(conc, func(w int) { b.loginLoop(ctx, rec, accts.login[w%len(accts.login)]) })
	}
	end := time.Now()
	headEnd, err := b.store.Head(ctx)
	if err != nil {
		stopLag()
		return phaseReport{}, err
	}
	caughtUp, settled, settleErr := b.settle(ctx)
	cpu1 := readCPU(b.pid)
	stopLag()
	lagSamples := <-samples
	if settleErr != nil {
		return phaseReport{}, settleErr
	}
	pr := rec.report(phase, end.Sub(start))
	pr.Missed = int(missed)
	if err := b.measureAfter(ctx, &pr, phaseWindow{start: start, end: end, caughtUp: caughtUp, settled: settled, head0: head0, headEnd: headEnd,
		cpu0: cpu0, cpu1: cpu1}, lagSamples, mailMark); err != nil {
		return phaseReport{}, err
	}
	return pr, nil
}

// phaseWindow is when a phase ran, when the read side caught up and the server settled
// after it (settle), where the feed stood, and the machine's CPU time at its start and
// once the server had settled.
type phaseWindow struct {
	start, end, caughtUp, settled time.Time
	head0, headEnd                eventstore.Position
	cpu0, cpu1                    cpuReading
}

// settle waits until the server has decided every queued command, every consumer is at
// the feed's head and no mail is pending; it returns when it first saw the consumers at
// the head with nothing queued, and when it first saw all of it.
func (b *httpBench) settle(ctx context.Context) (caughtUp, settled time.Time, err error) {
	deadline := time.Now().Add(benchSettleWithin)
	for {
		at := time.Now()
		st, err := b.idle(ctx)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		if st.caughtUp && caughtUp.IsZero() {
			caughtUp = at
		}
		if st.idle {
			return caughtUp, at, nil
		}
		// While commands wait to be decided the server is seconds from settling: look
		// less often, so that the looking takes less from it.
		poll := 20 * time.Millisecond
		if st.queued {
			poll = 100 * time.Millisecond
		}
		if at.After(deadline) {
			return time.Time{}, time.Time{}, fmt.Errorf("the server did not settle (queue, consumers, mail) within %s", benchSettleWithin)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, time.Time{}, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// state is how far the server is from settled after a phase.
type state struct {
	queued   bool // commands wait to be decided
	caughtUp bool // nothing queued, and every consumer is at the feed's head
	idle     bool // caught up, and no mail is pending either
}

// idle reads where the server stands.
func (b *httpBench) idle(ctx context.Context) (state, error) {
	if drained, err := reset.Drained(ctx, b.pool); err != nil || !drained {
		return state{queued: err == nil}, err
	}
	status, err := b.lag.Status(ctx)
	if err != nil {
		return state{}, err
	}
	for _, s := range status {
		if s.Configured && !s.CaughtUp() {
			return state{}, nil
		}
	}
	_, oldestPending, err := mailer.DeliveryStats(ctx, b.pool)
	if err != nil {
		return state{}, err
	}
	return state{caughtUp: true, idle: oldestPending.IsZero()}, nil
}

// feedScan is what the feed holds between two positions.
type feedScan struct {
	inWindow, after int
	byType          map[string]int
	tokenIssuedAt   map[string]time.Time // ResetTokenIssued event id → when it occurred
	last            time.Time            // the newest event's OccurredAt
}

// scanFeed reads the feed after head0: events up to headEnd are the phase's own.
func (b *httpBench) scanFeed(ctx context.Context, head0, headEnd eventstore.Position) (feedScan, error) {
	fs := feedScan{byType: map[string]int{}, tokenIssuedAt: map[string]time.Time{}}
	pos := head0
	for {
		page, err := b.store.ReadAll(ctx, pos, 1000)
		if err != nil {
			return fs, err
		}
		if len(page) == 0 {
			return fs, nil
		}
		for _, e := range page {
			if headEnd.Less(e.Position) {
				fs.after++
			} else {
				fs.inWindow++
			}
			fs.byType[e.Type]++
			if e.Type == "ResetTokenIssued" {
				fs.tokenIssuedAt[e.ID.String()] = e.OccurredAt
			}
			fs.last = e.OccurredAt
		}
		pos = page[len(page)-1].Position
	}
}

// measureAfter fills in what the server did: events, lag, mail and memory.
func (b *httpBench) measureAfter(ctx context.Context, pr *phaseReport, w phaseWindow, lag []lagSample, mailMark int) error {
	fs, err := b.scanFeed(ctx, w.head0, w.headEnd)
	if err != nil {
		return err
	}
	secs := w.end.Sub(w.start).Seconds()
	pr.Events = eventsReport{InWindow: fs.inWindow, After: fs.after, PerSecond: float64(fs.inWindow) / secs,
		ByType: fs.byType}
	if fs.inWindow+fs.after > 0 {
		pr.Events.ZeroLagAfterLastEventMS = ms(w.caughtUp.Sub(fs.last))
		if took := fs.last.Sub(w.start).Seconds(); took > 0 {
			pr.Events.SustainedPerSecond = float64(fs.inWindow+fs.after) / took
		}
	}
	untilSettled := w.settled.Sub(w.start)
	pr.CPU = cpuReportOf(cpuSeconds(w.cpu0.machine, w.cpu1.machine, untilSettled, runtime.NumCPU()), pr.Requests, fs.inWindow+fs.after)
	pr.CPU.ByProcess = processSeconds(w.cpu0, w.cpu1, untilSettled, runtime.NumCPU())
	pr.Lag = lagStats(lag, w.end)
	pr.Mail = b.mail.report(mailMark, w.end, fs.tokenIssuedAt)
	pr.SettledAfterEndMS = ms(w.settled.Sub(w.end))
	pr.VmHWMBytes = readVmHWM(b.pid)
	return nil
}

// report turns the recorder into the phase's answers figures.
func (r *recorder) report(phase string, wall time.Duration) phaseReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	main := mainStep(phase)
	pr := phaseReport{Phase: phase, Seconds: wall.Seconds(), Errors: r.errors, Outcomes: maps.Clone(r.outcomes),
		Steps: map[string]distribution{}}
	for _, step := range slices.Sorted(maps.Keys(r.steps)) {
		pr.Steps[step] = distributionOf(r.steps[step])
	}
	d := pr.Steps[main]
	pr.Requests, pr.P50MS, pr.P99MS = d.N, d.P50MS, d.P99MS
	pr.PerSecond = float64(d.N) / wall.Seconds()
	return pr
}

// mainStep is the step whose count and latency stand for the phase.
func mainStep(phase string) string {
	if phase == phaseResetFlow {
		return "flow"
	}
	return "answer"
}

// errPoolExhausted stops a flow worker whose accounts have used their tokens.
var errPoolExhausted = errors.New("every account of the pool has used its tokens")
