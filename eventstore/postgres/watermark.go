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
type watermarks struct {
	query func(ctx context.Context) (uint64, error)
	wg    sync.WaitGroup

	mu      sync.Mutex
	running bool
	next    *markQuery // the query the readers arriving now will share
	queries int        // how many have run (tests)
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

// get returns a watermark computed after get was called.
func (m *watermarks) get(ctx context.Context) (uint64, error) {
	m.mu.Lock()
	q := m.next
	if q == nil {
		q = &markQuery{done: make(chan struct{})}
		m.next = q
		if !m.running {
			m.startLocked()
		}
	}
	m.mu.Unlock()
	select {
	case <-q.done:
		return q.w, q.err
	case <-ctx.Done():
		return 0, fmt.Errorf("watermark: %w", ctx.Err())
	}
}

// startLocked runs the next query; the readers that arrive meanwhile wait for the one
// after it, which starts when it ends.
func (m *watermarks) startLocked() {
	q := m.next
	m.next = nil
	m.running = true
	m.queries++
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), markTimeout)
		q.w, q.err = m.query(ctx)
		cancel()
		close(q.done)
		m.mu.Lock()
		m.running = false
		if m.next != nil {
			m.startLocked()
		}
		m.mu.Unlock()
	}()
}

// wait returns once no query is running (Close, before the pool goes).
func (m *watermarks) wait() { m.wg.Wait() }
