package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
)

// notices is a Store's one LISTEN connection, shared by its subscriptions. Each of a
// process's consumers used to listen on a connection of its own: every append's NOTIFY
// then woke as many PostgreSQL backends and as many client reads, and the consumers woke
// at moments spread over a millisecond or more, too far apart to share the watermark
// query and the page read that follow (watermarks, Store.pages). Woken by one broadcast,
// they ask together. The connection is opened by the first subscription and closed when
// the last one leaves.
type notices struct {
	cfg   *pgx.ConnConfig
	retry time.Duration // the pause before listening again after the connection broke

	mu      sync.Mutex
	users   int
	newest  eventstore.Position // the newest position a notification named
	changed chan struct{}       // closed, and replaced, at every notification
	stop    context.CancelFunc  // ends the receiving goroutine; nil when none runs

	receivers sync.WaitGroup // the receiving goroutines, including one still closing
}

func newNotices(cfg *pgx.ConnConfig, retry time.Duration) *notices {
	return &notices{cfg: cfg, retry: retry, changed: make(chan struct{})}
}

// join registers a subscription. The first one opens the connection and listens before
// join returns, so that no append committed after join goes unannounced; a failure to
// connect then is join's error. The caller must call leave once, when it is done.
func (n *notices) join(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stop == nil {
		conn, err := n.connect(ctx)
		if err != nil {
			return err
		}
		rctx, stop := context.WithCancel(context.Background())
		n.stop = stop
		n.receivers.Add(1)
		go n.receive(rctx, conn)
	}
	n.users++
	return nil
}

// leave unregisters a subscription; the last one out closes the connection.
func (n *notices) leave() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.users--
	if n.users == 0 && n.stop != nil {
		n.stop()
		n.stop = nil
	}
}

func (n *notices) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, n.cfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{notifyChannel}.Sanitize()); err != nil {
		closeQuietly(conn)
		return nil, fmt.Errorf("listen: %w", err)
	}
	return conn, nil
}

// receive broadcasts each notification until ctx ends. A broken connection is opened
// again after retry; meanwhile the subscriptions poll, which is what covers the
// notifications lost with it.
func (n *notices) receive(ctx context.Context, conn *pgx.Conn) {
	defer n.receivers.Done()
	for {
		if conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(n.retry):
			}
			conn, _ = n.connect(ctx)
			continue
		}
		msg, err := conn.WaitForNotification(ctx)
		if err != nil {
			closeQuietly(conn)
			conn = nil
			continue
		}
		if p, ok := parsePositionPayload(msg.Payload); ok {
			n.announce(p)
		}
	}
}

// announce records p and wakes every waiting subscription.
func (n *notices) announce(p eventstore.Position) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.newest.Less(p) {
		n.newest = p
	}
	close(n.changed)
	n.changed = make(chan struct{})
}

// next waits up to d for a notification naming events beyond pos, and returns the newest
// position announced so far (at least announced, the newest the caller had seen). It
// returns at once if one came since the caller last looked. Notifications that name
// nothing newer are passed over: under load, an append's notification often arrives
// after its events were read with others, and each used to cost a watermark query and an
// empty read. (Events announced and not yet readable, held below the watermark by an
// older append, are the caller's to poll for.)
func (n *notices) next(ctx context.Context, d time.Duration, pos, announced eventstore.Position) (eventstore.Position, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		n.mu.Lock()
		newest, changed := n.newest, n.changed
		n.mu.Unlock()
		if announced.Less(newest) {
			announced = newest
			if pos.Less(newest) {
				return announced, nil
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			return announced, nil
		case <-ctx.Done():
			return announced, ctx.Err()
		}
	}
}

// close closes the connection, even with subscriptions still joined (they keep polling),
// and returns once every receiving goroutine has closed its own (Store.Close).
func (n *notices) close() {
	n.mu.Lock()
	if n.stop != nil {
		n.stop()
		n.stop = nil
	}
	n.mu.Unlock()
	n.receivers.Wait()
}

func closeQuietly(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
