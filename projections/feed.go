package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/eventstore"
	"selfreset/internal/pguuid"
)

// FeedConfig tunes how each consumer follows the global feed (the Runner supplies the
// store, the database and the logger).
type FeedConfig struct {
	// LockPollInterval is how often a waiting consumer tries for its lock, and how often
	// an idle consumer checks that the connection holding it is alive (default 2s).
	LockPollInterval time.Duration
	// RedeliveryDelay is the pause before an event that failed for a reason that is not
	// its own (the database, the connection) is tried again (default 500ms).
	RedeliveryDelay time.Duration
	// ResubscribeDelay is the pause before a failed session starts again (default 1s).
	ResubscribeDelay time.Duration
	// BatchSize is the most events applied in one transaction with one checkpoint update
	// (the Runner sets 500 when it is 0; 1 applies event by event).
	BatchSize int
	// BatchWait is how long a batch waits for more events once it has one (default 0:
	// it takes what has arrived, so a quiet feed adds no latency and a busy one, whose
	// events pile up while the previous batch is applied, fills batches by itself).
	BatchWait time.Duration
}

func (c *FeedConfig) setDefaults() {
	if c.LockPollInterval <= 0 {
		c.LockPollInterval = 2 * time.Second
	}
	if c.RedeliveryDelay <= 0 {
		c.RedeliveryDelay = 500 * time.Millisecond
	}
	if c.ResubscribeDelay <= 0 {
		c.ResubscribeDelay = time.Second
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.BatchWait < 0 {
		c.BatchWait = 0
	}
}

// errLockLost ends a session whose lock connection broke.
var errLockLost = errors.New("projections: the consumer lock's connection was lost")

// feed follows the store's global feed after a position for one consumer session. A
// goroutine of its own reads the store into a buffer (SubscribeAll calls back for every
// event); the consumer's goroutine cuts batches from that buffer with next. It never
// touches the consumer's connection except through the conn next is given.
type feed struct {
	cfg    FeedConfig
	events chan eventstore.RecordedEvent
	failed chan error    // the subscription's end, when it ends by itself
	done   chan struct{} // closed once the subscription goroutine has returned
	cancel context.CancelFunc
}

// follow starts reading the feed after after. close stops it.
func follow(ctx context.Context, store eventstore.Store, after eventstore.Position, cfg FeedConfig) *feed {
	ctx, cancel := context.WithCancel(ctx)
	f := &feed{cfg: cfg, events: make(chan eventstore.RecordedEvent, cfg.BatchSize),
		failed: make(chan error, 1), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(f.done)
		f.failed <- store.SubscribeAll(ctx, after, func(ctx context.Context, r eventstore.RecordedEvent) error {
			select {
			case f.events <- r:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return f
}

// close stops the subscription and waits for its goroutine. Events left in the buffer
// are not lost: the next session starts again from the stored checkpoint.
func (f *feed) close() {
	f.cancel()
	<-f.done
}

// next waits for the next batch: at least one event, then what the buffer holds (or
// arrives within BatchWait), up to BatchSize. While it waits it pings conn, the
// connection holding the consumer's lock, every LockPollInterval: a broken connection has
// lost the lock, and another process may be feeding the consumer already.
func (f *feed) next(ctx context.Context, conn *pgx.Conn) ([]eventstore.RecordedEvent, error) {
	tick := time.NewTicker(f.cfg.LockPollInterval)
	defer tick.Stop()
	for {
		select {
		case r := <-f.events:
			// Sized to what the buffer holds now, not to BatchSize: most batches at the
			// head are a few events, and 500 slots each (about 100 KB) were 40% of
			// serve's allocations under load.
			batch := make([]eventstore.RecordedEvent, 0, min(1+len(f.events), f.cfg.BatchSize))
			return f.fill(ctx, append(batch, r)), nil
		case err := <-f.failed:
			return nil, fmt.Errorf("projections: following the feed: %w", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			if err := conn.Ping(ctx); err != nil && ctx.Err() == nil {
				return nil, fmt.Errorf("%w: %w", errLockLost, err)
			}
		}
	}
}

// fill adds to batch what the buffer holds, waiting up to BatchWait for more.
func (f *feed) fill(ctx context.Context, batch []eventstore.RecordedEvent) []eventstore.RecordedEvent {
	var wait <-chan time.Time
	if f.cfg.BatchWait > 0 {
		t := time.NewTimer(f.cfg.BatchWait)
		defer t.Stop()
		wait = t.C
	}
	for len(batch) < f.cfg.BatchSize {
		select {
		case r := <-f.events:
			batch = append(batch, r)
			continue
		default:
		}
		if wait == nil {
			return batch
		}
		select {
		case r := <-f.events:
			batch = append(batch, r)
		case <-wait:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// lockKey is the advisory-lock key text of a consumer.
func lockKey(consumer string) string { return "selfreset.projections:" + consumer }

// lockConnect opens a connection of its own for consumer locks, outside the pool,
// configured like the pool's. Its owner must closeConn it, which releases the locks.
func lockConnect(ctx context.Context, pool *pgxpool.Pool) (*pgx.Conn, error) {
	cfg := pool.Config().ConnConfig.Copy() // a parsed config always has RuntimeParams
	// A batch commits its read-model rows with its checkpoint, so a commit that a database
	// crash loses takes both back and the events are applied again: the consumer need not
	// wait for each commit's WAL flush (the rebuild runs the same way), which left it behind
	// the appends it follows, queued on the flushes.
	cfg.RuntimeParams["synchronous_commit"] = "off"
	conn, err := pguuid.Connect(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("projections: consumer lock: connect: %w", err)
	}
	// Schema first for the whole session, which the pipelined passes rely on: a pass's
	// own search_path statement would come too late, since pgx prepares a batch's
	// statements before it runs any (the first pass on a new connection failed on tables
	// it could not find and was split event by event).
	if _, err := conn.Exec(ctx, sqlUseSessionSchema); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("projections: consumer lock: set search_path: %w", err)
	}
	return conn, nil
}

// tryLocks takes, on conn, the lock of each of consumers that no other session holds, and
// returns the ones it took.
func tryLocks(ctx context.Context, conn *pgx.Conn, consumers []string) ([]string, error) {
	var took []string
	for _, consumer := range consumers {
		var ok bool
		err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, lockKey(consumer)).Scan(&ok)
		if err != nil {
			return took, fmt.Errorf("projections: consumer lock %s: %w", consumer, err)
		}
		if ok {
			took = append(took, consumer)
		}
	}
	return took, nil
}

// unlock releases, on conn, the locks of consumers.
func unlock(ctx context.Context, conn *pgx.Conn, consumers []string) error {
	for _, consumer := range consumers {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, lockKey(consumer)); err != nil {
			return fmt.Errorf("projections: consumer lock %s: unlock: %w", consumer, err)
		}
	}
	return nil
}

// closeConn releases the session's advisory locks explicitly (the server frees them on
// disconnect too, but only once it has noticed the disconnect) and closes the connection.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !conn.IsClosed() {
		_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
	}
	_ = conn.Close(ctx)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
