package postgres

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/eventstore"
)

// announcer sends the NOTIFY that wakes subscriptions, after appends have committed: at
// most one at a time per Store, naming the newest position committed so far, so appends
// that commit while one is on its way are named by the next.
//
// Not inside the append's transaction: PostgreSQL holds one lock on its notification
// queue from a notifying transaction's pre-commit until its commit record is flushed, so
// every append that notified waited for the previous one's WAL flush and no two could
// share one. Under load most backends were seen waiting there (pg_stat_activity: wait
// event Lock/object during commit). The NOTIFY here commits on its own with
// synchronous_commit off, which does not wait for a flush, so it holds that lock only
// briefly. A notification is a hint, never the record: one that is lost (a crash, a
// broken connection) costs subscribers a poll interval, as before.
type announcer struct {
	pool *pgxpool.Pool
	wg   sync.WaitGroup

	mu      sync.Mutex
	newest  eventstore.Position // the newest position committed and not yet announced
	pending bool
	sending bool
}

// announceTimeout bounds one NOTIFY; past it the subscriptions' poll takes over.
const announceTimeout = 5 * time.Second

// announceSQL notifies without waiting for its commit's WAL flush (set_config's third
// argument makes the setting local to this one-statement transaction).
const announceSQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)`

// announce records that the events up to p have committed, and sends a NOTIFY unless one
// is on its way already (the sender then sends another for p when it returns).
func (a *announcer) announce(p eventstore.Position) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.pending || a.newest.Less(p) {
		a.newest = p
	}
	a.pending = true
	if a.sending {
		return
	}
	a.sending = true
	a.wg.Add(1)
	go a.send()
}

func (a *announcer) send() {
	defer a.wg.Done()
	for {
		a.mu.Lock()
		if !a.pending {
			a.sending = false
			a.mu.Unlock()
			return
		}
		p := a.newest
		a.pending = false
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), announceTimeout)
		// An error is not the append's: its events are committed, and subscriptions poll.
		_, _ = a.pool.Exec(ctx, announceSQL, notifyChannel, positionPayload(p))
		cancel()
	}
}

// wait returns once no NOTIFY is on its way (Close, before the pool goes).
func (a *announcer) wait() { a.wg.Wait() }

// positionPayload is a NOTIFY's payload: the position, as parsePositionPayload reads it.
func positionPayload(p eventstore.Position) string {
	return strconv.FormatUint(p.Commit, 10) + "/" + strconv.FormatUint(p.Prepare, 10)
}

// parsePositionPayload reads positionPayload's payload (ok false for any other).
func parsePositionPayload(s string) (p eventstore.Position, ok bool) {
	commit, prepare, found := strings.Cut(s, "/")
	if !found {
		return p, false
	}
	var err1, err2 error
	p.Commit, err1 = strconv.ParseUint(commit, 10, 64)
	p.Prepare, err2 = strconv.ParseUint(prepare, 10, 64)
	return p, err1 == nil && err2 == nil
}
