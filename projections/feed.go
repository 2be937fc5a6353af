package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/eventstore"
)

// FeedConfig configures a Feed. Store and Pool are required.
type FeedConfig struct {
	Store eventstore.Store
	// Pool is the read-model database: checkpoints are read from it, and the consumer
	// locks are taken on connections configured like its own (outside the pool).
	Pool   *pgxpool.Pool
	Logger *slog.Logger
	// NoLock skips the per-consumer advisory lock. Without it, every process subscribed to
	// a topic receives every event (the runner's checkpoint row still applies each once),
	// and the runner's transactions use the pool: size it above the number of consumers
	// plus two, or consumers waiting on a rebuild can starve it.
	NoLock bool
	// LockPollInterval is how often a waiting subscription tries for the consumer lock, and
	// how often a held lock's connection is checked (default 2s).
	LockPollInterval time.Duration
	// RedeliveryDelay is the pause before a nacked event is delivered again (default 500ms).
	RedeliveryDelay time.Duration
	// ResubscribeDelay is the pause before a failed subscription starts again (default 1s).
	ResubscribeDelay time.Duration
	// BatchSize is the most events one message carries: a consumer applies them in one
	// transaction with one checkpoint update. 0 or 1 delivers event by event (the Runner
	// sets 500 when it is 0).
	BatchSize int
	// BatchWait is how long a batch waits for more events once it has one (default 0:
	// it takes what has arrived, so a quiet feed adds no latency and a busy one, whose
	// events pile up while the previous batch is applied, fills batches by itself).
	BatchWait time.Duration
}

func (c *FeedConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
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
		c.BatchSize = 1
	}
	if c.BatchWait < 0 {
		c.BatchWait = 0
	}
}

// Feed is a watermill message.Subscriber over the event store's global feed. The topic is
// a consumer name: Subscribe takes that consumer's advisory lock (so one process in a
// deployment feeds it), reads its checkpoint from projection_checkpoints and follows the
// feed from there. Each event becomes a *message.Message (see NewMessage); the next one is
// delivered only after the previous one is acked, so consumers see the feed in order. A
// nacked event is delivered again, as a new message instance, after RedeliveryDelay.
//
// When the subscription fails (the store or the lock connection is lost), the Feed lets go
// of the lock, waits, and starts again from the checkpoint stored in the database. The
// output channel is closed only when ctx ends or Close is called.
type Feed struct {
	cfg FeedConfig

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

var _ message.Subscriber = (*Feed)(nil)

// ErrFeedClosed is returned by Subscribe after Close.
var ErrFeedClosed = errors.New("projections: feed is closed")

// NewFeed returns a Feed.
func NewFeed(cfg FeedConfig) *Feed {
	cfg.setDefaults()
	return &Feed{cfg: cfg, closing: make(chan struct{})}
}

// Subscribe implements message.Subscriber. topic is the consumer name.
func (f *Feed) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if topic == "" {
		return nil, errors.New("projections: subscribe: empty consumer name")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrFeedClosed
	}
	out := make(chan *message.Message)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(out)
		f.consume(ctx, topic, out)
	}()
	return out, nil
}

// Close stops every subscription, closes their channels and returns once they are done.
// It is idempotent.
func (f *Feed) Close() error {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.closing)
	}
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

// consume runs sessions until ctx ends or the feed closes.
func (f *Feed) consume(ctx context.Context, consumer string, out chan<- *message.Message) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-f.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	log := f.cfg.Logger.With("consumer", consumer)
	for {
		err := f.session(ctx, consumer, out, log)
		if ctx.Err() != nil {
			return
		}
		log.Warn("projections: feed interrupted; subscribing again from the checkpoint", "error", err, "after", f.cfg.ResubscribeDelay)
		if !sleep(ctx, f.cfg.ResubscribeDelay) {
			return
		}
	}
}

// session holds the consumer lock, reads the checkpoint and follows the feed until
// something fails.
func (f *Feed) session(ctx context.Context, consumer string, out chan<- *message.Message, log *slog.Logger) error {
	var lock *consumerLock
	if !f.cfg.NoLock {
		var err error
		if lock, err = acquireConsumerLock(ctx, f.cfg.Pool, consumer, f.cfg.LockPollInterval, log); err != nil {
			return err
		}
		defer lock.release(log)
		ctx = lock.ctx
	}
	after, err := readCheckpoint(ctx, f.cfg.Pool, consumer)
	if err != nil {
		return err
	}
	log.Debug("projections: following the feed", "after", after.String())
	if f.cfg.BatchSize == 1 {
		return f.cfg.Store.SubscribeAll(ctx, after, func(ctx context.Context, r eventstore.RecordedEvent) error {
			return f.deliver(ctx, r, out, lock)
		})
	}
	// The subscription hands events over through a buffer; batches are cut from it. A
	// failed session starts again from the checkpoint, so events left in the buffer are
	// not lost.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan eventstore.RecordedEvent, f.cfg.BatchSize)
	subErr := make(chan error, 1)
	go func() {
		subErr <- f.cfg.Store.SubscribeAll(ctx, after, func(ctx context.Context, r eventstore.RecordedEvent) error {
			select {
			case events <- r:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	for {
		var batch []eventstore.RecordedEvent
		select {
		case r := <-events:
			batch = append(batch, r)
		case err := <-subErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
		batch = f.fill(ctx, batch, events)
		if err := f.deliverBatch(ctx, batch, out, lock); err != nil {
			return err
		}
	}
}

// fill adds to batch what the buffer holds, waiting up to BatchWait for more.
func (f *Feed) fill(ctx context.Context, batch []eventstore.RecordedEvent, events <-chan eventstore.RecordedEvent) []eventstore.RecordedEvent {
	var wait <-chan time.Time
	if f.cfg.BatchWait > 0 {
		t := time.NewTimer(f.cfg.BatchWait)
		defer t.Stop()
		wait = t.C
	}
	for len(batch) < f.cfg.BatchSize {
		select {
		case r := <-events:
			batch = append(batch, r)
			continue
		default:
		}
		if wait == nil {
			return batch
		}
		select {
		case r := <-events:
			batch = append(batch, r)
		case <-wait:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// deliverBatch sends the events as one message. When that is nacked (a consumer could
// not apply the batch), it sends them again one message each, so that the runner's
// retries and parking deal with each event on its own.
func (f *Feed) deliverBatch(ctx context.Context, batch []eventstore.RecordedEvent, out chan<- *message.Message, lock *consumerLock) error {
	if len(batch) == 1 {
		return f.deliver(ctx, batch[0], out, lock)
	}
	msg := newBatchMessage(batch)
	acked, err := f.send(ctx, context.WithValue(ctx, batchKey{}, batch), msg, out, lock)
	if err != nil || acked {
		return err
	}
	tried := msg.Metadata.Get(metaTried)
	for _, r := range batch {
		if err := f.deliverOne(ctx, r, out, lock, r.ID.String() == tried); err != nil {
			return err
		}
	}
	return nil
}

// send hands msg, with msgCtx as its context, to out and waits for its ack or nack. With a
// lock, the context also carries the lock's connection (see connFrom), which no one else
// uses until the handler has acked or nacked.
func (f *Feed) send(ctx, msgCtx context.Context, msg *message.Message, out chan<- *message.Message, lock *consumerLock) (acked bool, err error) {
	if lock != nil {
		lock.mu.Lock()
		if lock.conn.IsClosed() {
			lock.mu.Unlock()
			return false, errLockLost
		}
		msgCtx = context.WithValue(msgCtx, connKey{}, lock.conn)
	}
	msg.SetContext(msgCtx)
	sent, acked, err := f.await(ctx, msg, out)
	if lock != nil {
		if sent && !acked && err != nil {
			// Shutting down with the message in flight: its handler owns the connection
			// until it acks or nacks (release waits for that before closing it).
			go func() {
				select {
				case <-msg.Acked():
				case <-msg.Nacked():
				}
				lock.mu.Unlock()
			}()
		} else {
			lock.mu.Unlock()
		}
	}
	return acked, err
}

// batchKey carries a batch message's events in its context: they never leave the process,
// so they are not encoded into the payload.
type batchKey struct{}

// MetaBatch is set, to the number of events, on a message that carries a batch.
const MetaBatch = "batch"

func newBatchMessage(batch []eventstore.RecordedEvent) *message.Message {
	first, last := batch[0], batch[len(batch)-1]
	msg := message.NewMessage(first.ID.String()+".."+last.ID.String(), nil)
	msg.Metadata.Set(MetaBatch, strconv.Itoa(len(batch)))
	msg.Metadata.Set(MetaPosition, last.Position.String())
	return msg
}

// batchFrom returns the events of a batch message (nil for a message of one event).
func batchFrom(msg *message.Message) []eventstore.RecordedEvent {
	b, _ := msg.Context().Value(batchKey{}).([]eventstore.RecordedEvent)
	return b
}

// errLockLost ends a session whose lock connection broke.
var errLockLost = errors.New("projections: the consumer lock's connection was lost")

// deliver sends r and waits for its ack, sending it again (as a new message) on each nack.
// With a lock, the message's context carries the lock's connection (see connFrom), which
// no one else uses until the message is acked or nacked.
func (f *Feed) deliver(ctx context.Context, r eventstore.RecordedEvent, out chan<- *message.Message, lock *consumerLock) error {
	return f.deliverOne(ctx, r, out, lock, false)
}

// deliverOne is deliver; tried says the event had one attempt already, in a batch.
func (f *Feed) deliverOne(ctx context.Context, r eventstore.RecordedEvent, out chan<- *message.Message, lock *consumerLock, tried bool) error {
	for {
		msg, err := NewMessage(r)
		if err != nil {
			return err
		}
		if tried {
			msg.Metadata.Set(attemptsKey, "1")
			tried = false // a redelivery starts counting again, as it always has
		}
		acked, err := f.send(ctx, ctx, msg, out, lock)
		if err != nil || acked {
			return err
		}
		if !sleep(ctx, f.cfg.RedeliveryDelay) {
			return ctx.Err()
		}
	}
}

// await sends msg and waits for its ack or nack.
func (f *Feed) await(ctx context.Context, msg *message.Message, out chan<- *message.Message) (sent, acked bool, err error) {
	select {
	case out <- msg:
	case <-ctx.Done():
		return false, false, ctx.Err()
	}
	select {
	case <-msg.Acked():
		return true, true, nil
	case <-msg.Nacked():
		return true, false, nil
	case <-ctx.Done():
		return true, false, ctx.Err()
	}
}

// connKey carries a consumer's lock connection in a message's context.
type connKey struct{}

// connFrom returns the connection that holds the consumer's lock, for the message being
// handled (nil without a lock). The runner runs the consumer's transactions on it: writes
// then stop the moment the lock is lost (fencing), and consumers waiting on a row lock
// (during a rebuild) never hold pool connections that others need.
func connFrom(ctx context.Context) *pgx.Conn {
	c, _ := ctx.Value(connKey{}).(*pgx.Conn)
	return c
}

// consumerLock is a session advisory lock held on a connection of its own, outside the
// pool. ctx ends when the lock may be lost.
type consumerLock struct {
	ctx     context.Context
	cancel  context.CancelFunc
	stopped chan struct{}
	// mu is held while a message is in flight: the handler owns conn then.
	mu   sync.Mutex
	conn *pgx.Conn
}

// lockKey is the advisory-lock key text of a consumer.
func lockKey(consumer string) string { return "selfreset.projections:" + consumer }

// acquireConsumerLock waits until this process holds consumer's advisory lock.
func acquireConsumerLock(ctx context.Context, pool *pgxpool.Pool, consumer string, poll time.Duration, log *slog.Logger) (*consumerLock, error) {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("projections: consumer lock %s: connect: %w", consumer, err)
	}
	waiting := false
	for {
		var ok bool
		err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, lockKey(consumer)).Scan(&ok)
		if err != nil {
			closeConn(conn)
			return nil, fmt.Errorf("projections: consumer lock %s: %w", consumer, err)
		}
		if ok {
			break
		}
		if !waiting {
			log.Info("projections: another process feeds this consumer; waiting for its lock")
			waiting = true
		}
		if !sleep(ctx, poll) {
			closeConn(conn)
			return nil, ctx.Err()
		}
	}
	if waiting {
		log.Info("projections: consumer lock acquired")
	}
	lctx, cancel := context.WithCancel(ctx)
	l := &consumerLock{ctx: lctx, cancel: cancel, conn: conn, stopped: make(chan struct{})}
	go l.watch(poll, log)
	return l, nil
}

// watch checks the lock's connection; a broken connection has lost the lock.
func (l *consumerLock) watch(poll time.Duration, log *slog.Logger) {
	defer close(l.stopped)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
			if !l.mu.TryLock() {
				continue // a message is in flight: its handler is using the connection
			}
			err := l.conn.Ping(l.ctx)
			l.mu.Unlock()
			if err != nil && l.ctx.Err() == nil {
				log.Error("projections: consumer lock connection lost; stopping this subscription", "error", err)
				l.cancel()
				return
			}
		}
	}
}

// releaseWait bounds how long release waits for a handler still using the connection.
const releaseWait = 30 * time.Second

// release ends the session, which releases the lock. The connection is closed once no
// handler uses it any more (a handler whose context ended returns promptly).
func (l *consumerLock) release(log *slog.Logger) {
	l.cancel()
	<-l.stopped
	done := make(chan struct{})
	go func() {
		l.mu.Lock()
		closeConn(l.conn)
		l.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(releaseWait):
		log.Error("projections: a handler still uses the consumer's connection; it is closed (and the lock released) when the handler returns")
	}
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
