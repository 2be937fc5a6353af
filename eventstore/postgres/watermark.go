package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// watermarks shares the watermark query (watermarkSQL) among the readers that need one
// at the same time: every consumer of a process wakes on the same NOTIFY, and each used
// to run the query, which reads pg_locks and was PostgreSQL's costliest statement under
// load (36,444 runs, 0.14 ms each, for 24,000 decisions). A reader never gets a W that was
// computed before it asked: it shares the query that starts next, so whatever had
// committed when it asked lies below its W, as when it ran the query itself.
//
// The consumers wake on connections of their own, so their asks arrive spread over a
// millisecond or so; a subscription's ask that finds no query pending starts one only
// markGather later, so that those asks share it rather than running one each (still 13,117
// queries for 15,070 decisions without it). Other readers (ReadAll, Head: audits,
// rebuilds, status) read page after page on their own and would only wait: their asks
// start a query at once, or end the gathering of a pending one.
type watermarks struct {
	query func(ctx context.Context) (uint64, error)
	// after waits d (time.After; tests hold it to decide who arrives in time).
	after func(d time.Duration) <-chan time.Time
	wg    sync.WaitGroup

	mu      sync.Mutex
	running bool          // a query is gathering its readers or running
	next    *markQuery    // the query the readers arriving now will share
	hurry   chan struct{} // closed to end the pending query's gathering; nil if none gathers
	queries int           // how many have run (tests)
	asks    int           // how many readers have asked (tests)
}

// markGather is how long a watermark query waits for more readers after the first. It is
// added to the time an event takes to reach the read models, so it is kept well below
// the time a consumer takes to apply one.
const markGather = time.Millisecond

func newWatermarks(query func(ctx context.Context) (uint64, error)) *watermarks {
	return &watermarks{query: query, after: time.After}
}

// markQuery is one run of the query and the readers waiting for it.
type markQuery struct {
	done chan struct{}
	w    uint64
	err  error
}

// markTimeout bounds one watermark query: it runs for several readers, on no single
// reader's context.
const markTimeout = 10 * time.Second

// get returns a watermark computed after get was called; gather says whether the query
// may wait for other readers first (subscriptions).
func (m *watermarks) get(ctx context.Context, gather bool) (uint64, error) {
	m.mu.Lock()
	m.asks++
	q := m.next
	switch {
	case q == nil:
		q = &markQuery{done: make(chan struct{})}
		m.next = q
		if !m.running {
			m.startLocked(gather)
		}
	case !gather && m.hurry != nil:
		close(m.hurry)
		m.hurry = nil
	}
	m.mu.Unlock()
	select {
	case <-q.done:
		return q.w, q.err
	case <-ctx.Done():
		return 0, fmt.Errorf("watermark: %w", ctx.Err())
	}
}

// startLocked runs the next query, after the gathering time if gather; the readers that
// arrive until it starts share it, and those arriving while it runs wait for the one
// after it, which starts at once when it ends (they have waited a query already).
func (m *watermarks) startLocked(gather bool) {
	m.running = true
	m.queries++
	m.wg.Add(1)
	var hurry chan struct{}
	if gather {
		hurry = make(chan struct{})
		m.hurry = hurry
	}
	go func() {
		defer m.wg.Done()
		if hurry != nil {
			select {
			case <-m.after(markGather):
			case <-hurry:
			}
		}
		m.mu.Lock()
		q := m.next
		m.next = nil
		m.hurry = nil
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), markTimeout)
		q.w, q.err = m.query(ctx)
		cancel()
		close(q.done)
		m.mu.Lock()
		m.running = false
		if m.next != nil {
			m.startLocked(false)
		}
		m.mu.Unlock()
	}()
}

// wait returns once no query is running (Close, before the pool goes).
func (m *watermarks) wait() { m.wg.Wait() }
