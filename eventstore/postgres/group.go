package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
)

// Group commit of Updates. Every Forgot Password and Resend decision is an Update, and
// under load several run at once, each paying a transaction of its own: a BEGIN, a
// COMMIT with its WAL flush, and two round trips that wake both processes. Updates
// that arrive while others are on their way wait and go together in the next
// transaction (updateIn): one lock statement for all their streams, their reads in the
// first round trip, every decision in between, all their inserts and one COMMIT in the
// second. Alone, an Update goes at once, as before.
//
// A group holds distinct streams (two Updates of one stream in one transaction would
// both decide on the same head), none of them in a group on its way: the stream lock
// would make the whole new group wait for that one. An Update of a stream taken waits
// for a later group. If a group of several fails, each of its Updates is tried again
// alone, so that one bad decision (an event id stored already) fails only its own.

// Group sizes and timing.
const (
	// updateFlushers is how many group transactions run at once: while one waits for its
	// WAL flush, the next gathers and reads.
	updateFlushers = 2
	// maxUpdateGroup bounds a group: its first batch holds a head read and a tail read
	// or two per Update, and its lock statement the streams of all of them.
	maxUpdateGroup = 16
	// updateTimeout bounds one group transaction: it runs for several callers, on no
	// single caller's context (each stops waiting when its own context ends).
	updateTimeout = 30 * time.Second
)

// update is one Update waiting for, or in, a group.
type update struct {
	ctx    context.Context // the caller's: for its wait, and whether its write is redelivered (queueCommit)
	stream string
	from   uint64
	also   []eventstore.StreamRead
	decide func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error)
	done   chan updated // buffered: a group never waits for a caller that gave up

	// Set by each attempt of the group's transaction (updateIn).
	out    updated                // the outcome once the transaction committed
	events []eventstore.EventData // what decide returned, linked, to insert
	first  int64                  // the revision of events[0]
}

// updated is an Update's outcome.
type updated struct {
	res eventstore.AppendResult
	err error
}

// updateQueue holds the Updates waiting and the streams of the groups on their way.
type updateQueue struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	waiting []*update
	taken   map[string]bool // streams in a group on its way
	running int             // flushers running
	groups  int             // group transactions begun (tests)
	stale   atomic.Int64    // groups decided at once on remembered heads that had moved (tests)
}

// enqueue adds u and starts a flusher if fewer than updateFlushers run.
func (q *updateQueue) enqueue(u *update, flush func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waiting = append(q.waiting, u)
	if q.running < updateFlushers {
		q.running++
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			flush()
		}()
	}
}

// take removes the next group from the waiting Updates, oldest first: distinct streams,
// none taken by a group on its way, at most maxUpdateGroup. An Update whose caller gave
// up is answered and dropped. When nothing can go, the flusher stops (one still running
// takes what it left behind when its own group is over).
func (q *updateQueue) take() []*update {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.taken == nil {
		q.taken = map[string]bool{}
	}
	var group []*update
	rest := q.waiting[:0:0]
	for _, u := range q.waiting {
		switch {
		case u.ctx.Err() != nil:
			u.done <- updated{err: u.ctx.Err()}
		case len(group) < maxUpdateGroup && !q.taken[u.stream]:
			q.taken[u.stream] = true
			group = append(group, u)
		default:
			rest = append(rest, u)
		}
	}
	q.waiting = rest
	if len(group) == 0 {
		q.running--
		return nil
	}
	q.groups++
	return group
}

// release frees the streams of a group that is over.
func (q *updateQueue) release(group []*update) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, u := range group {
		delete(q.taken, u.stream)
	}
}

// begun is how many group transactions have begun (tests).
func (q *updateQueue) begun() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.groups
}

// queued is how many Updates wait for a group (tests).
func (q *updateQueue) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting)
}

// Update implements eventstore.Updater, grouped with the concurrent Updates of other
// streams (see the top of the file). decide runs on the group's goroutine, one decision
// after another, and may run again if its group fails.
func (s *Store) Update(ctx context.Context, stream string, from uint64, also []eventstore.StreamRead,
	decide func(tail eventstore.StreamTail, also []eventstore.StreamTail) ([]eventstore.EventData, error)) (eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	u := &update{ctx: ctx, stream: stream, from: from, also: also, decide: decide, done: make(chan updated, 1)}
	s.updates.enqueue(u, s.flushUpdates)
	select {
	case out := <-u.done:
		return out.res, out.err
	case <-ctx.Done():
		return eventstore.AppendResult{}, ctx.Err()
	}
}

// flushUpdates runs groups until none can go.
func (s *Store) flushUpdates() {
	for {
		group := s.updates.take()
		if group == nil {
			return
		}
		s.runGroup(group)
		s.updates.release(group)
	}
}

// runGroup runs group in one transaction and answers each of its Updates; a group of
// several that fails is run again one Update at a time.
func (s *Store) runGroup(group []*update) {
	err := s.groupTransaction(group)
	if err != nil && len(group) > 1 {
		for _, u := range group {
			switch {
			case u.ctx.Err() != nil: // its caller has gone: nothing to try again for
				u.out = updated{err: u.ctx.Err()}
			default:
				if err := s.groupTransaction([]*update{u}); err != nil {
					u.out = updated{err: err}
				}
			}
			u.done <- u.out
		}
		return
	}
	for _, u := range group {
		if err != nil {
			u.out = updated{err: err}
		}
		u.done <- u.out
	}
}

// groupTransaction is one attempt at group, on a connection of the pool.
func (s *Store) groupTransaction(group []*update) error {
	ctx, cancel := context.WithTimeout(context.Background(), updateTimeout)
	defer cancel()
	what := "update " + quote(group[0].stream)
	if len(group) > 1 {
		what += " and others"
	}
	_, err := s.write(ctx, what, func(conn *pgx.Conn) (eventstore.AppendResult, bool, error) {
		if x, ok := rememberedHeads(&s.heads, group); ok {
			res, stale, err := updateAtOnce(ctx, conn, what, group, x, &s.heads)
			if !stale {
				return res, err == nil, err
			}
			s.updates.stale.Add(1)
			if conn.PgConn().TxStatus() != 'I' {
				if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
					return eventstore.AppendResult{}, false, wrapErr(what, err)
				}
			}
		}
		return updateIn(ctx, conn, what, group, &s.heads)
	})
	return err
}
