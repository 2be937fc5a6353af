package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
)

// feedAll runs the sessions that feed the Runner's consumers until ctx ends, and waits
// for them. A consumer is fed only by the session holding its advisory lock. The
// consumers whose locks are free are taken together, on one connection, and fed by one
// session (deliverAll); a consumer whose lock another process holds is waited for, its
// lock tried every LockPollInterval, and fed by a session of its own once taken. A session
// that fails lets its locks go; its consumers are tried again after ResubscribeDelay,
// from their stored checkpoints.
func (r *Runner) feedAll(ctx context.Context) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		free    = r.names() // the consumers no session of this Runner holds
		back    = make(chan struct{}, 1)
		waiting = map[string]bool{} // logged as waiting for their locks
		conn    *pgx.Conn           // the connection trying the locks, until it takes some
	)
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
		wg.Wait()
	}()
	release := func(took []string) {
		mu.Lock()
		free = append(free, took...)
		mu.Unlock()
		select {
		case back <- struct{}{}:
		default:
		}
	}
	for {
		mu.Lock()
		want := slices.Clone(free)
		mu.Unlock()
		if len(want) > 0 {
			var took, behind []string
			var at map[string]eventstore.Position
			var err error
			conn, took, behind, at, err = r.takeFree(ctx, conn, want)
			if err != nil && ctx.Err() == nil {
				r.log.Warn("projections: cannot take the consumer locks; trying again", "error", err, "after", r.cfg.Feed.LockPollInterval)
			}
			r.logWaiting(waiting, want, append(slices.Clone(took), behind...))
			if len(took) > 0 {
				mu.Lock()
				free = slices.DeleteFunc(free, func(n string) bool { return slices.Contains(took, n) })
				mu.Unlock()
				held := conn
				conn = nil
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := r.session(ctx, held, r.named(took), at)
					if ctx.Err() != nil {
						return
					}
					r.log.Warn("projections: feed interrupted; subscribing again from the checkpoint", "consumers", took, "error", err, "after", r.cfg.Feed.ResubscribeDelay)
					if sleep(ctx, r.cfg.Feed.ResubscribeDelay) {
						release(took)
					}
				}()
			}
			if len(behind) > 0 {
				continue // the consumers let go because they are behind: a session of their own
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-back:
		case <-time.After(r.cfg.Feed.LockPollInterval):
		}
	}
}

// takeFree takes, on conn (opened if nil), the locks of the consumers of want that no
// session holds, and lets go again those of the consumers far behind the others
// (nearNewest). at holds the checkpoints of those it took, read under their locks. On
// failure it closes conn, which lets every lock it took go, and returns it nil.
func (r *Runner) takeFree(ctx context.Context, conn *pgx.Conn, want []string) (_ *pgx.Conn, took, behind []string, at map[string]eventstore.Position, err error) {
	if conn == nil {
		if conn, err = lockConnect(ctx, r.cfg.Pool); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	took, err = tryLocks(ctx, conn, want)
	if err == nil {
		took, behind, at, err = r.nearNewest(ctx, conn, took)
	}
	if err == nil {
		err = unlock(ctx, conn, behind)
	}
	if err != nil {
		closeConn(conn)
		return nil, nil, nil, nil, err
	}
	return conn, took, behind, at, nil
}

// nearNewest splits the consumers of took, whose locks conn holds, into those whose
// checkpoints are within a batch of the newest of them and those further behind. One
// session feeds its consumers from the oldest checkpoint, so a consumer far behind (a
// model added since, or replayed from the start) would hold the others, the mailer among
// them, back while it caught up: it is fed by a session of its own.
func (r *Runner) nearNewest(ctx context.Context, conn *pgx.Conn, took []string) (near, behind []string, at map[string]eventstore.Position, err error) {
	at = make(map[string]eventstore.Position, len(took))
	var newest eventstore.Position
	for _, name := range took {
		if at[name], err = readCheckpoint(ctx, conn, name); err != nil {
			return nil, nil, nil, err
		}
		if newest.Less(at[name]) {
			newest = at[name]
		}
	}
	for _, name := range took {
		if at[name] == newest {
			near = append(near, name)
			continue
		}
		events, err := r.cfg.Store.ReadAll(ctx, at[name], r.cfg.Feed.BatchSize)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("projections: read the feed after %s's checkpoint: %w", name, err)
		}
		if len(events) < r.cfg.Feed.BatchSize || !events[len(events)-1].Position.Less(newest) {
			near = append(near, name)
		} else {
			behind = append(behind, name)
		}
	}
	return near, behind, at, nil
}

// logWaiting says once which consumers wait for a lock another process holds, and when
// one of them has been taken.
func (r *Runner) logWaiting(waiting map[string]bool, tried, took []string) {
	for _, name := range tried {
		switch got := slices.Contains(took, name); {
		case got && waiting[name]:
			r.log.Info("projections: consumer lock acquired", "consumer", name)
			delete(waiting, name)
		case !got && !waiting[name]:
			r.log.Info("projections: another process feeds this consumer; waiting for its lock", "consumer", name)
			waiting[name] = true
		}
	}
}

// named returns the configured projections of those names, in the configured order.
func (r *Runner) named(names []string) []Projection {
	var out []Projection
	for _, p := range r.cfg.Projections {
		if slices.Contains(names, p.Name()) {
			out = append(out, p)
		}
	}
	return out
}

// session feeds ps on conn, the connection holding their locks, until something fails
// or ctx ends, and closes conn: from their checkpoints (at, read under the locks, which
// only a rebuild moves, and a moved one is noticed by the pass's compare-and-set) it
// follows the feed from the oldest and applies each batch on that connection. Only this goroutine uses the
// connection, so every write stops the moment the locks are lost (fencing), and a
// consumer waiting on a checkpoint row (during a rebuild) takes no connection from the
// pool.
func (r *Runner) session(ctx context.Context, conn *pgx.Conn, ps []Projection, at map[string]eventstore.Position) error {
	defer closeConn(conn)
	members := make([]*member, 0, len(ps))
	var after eventstore.Position
	for i, p := range ps {
		pos := at[p.Name()]
		if i == 0 || pos.Less(after) {
			after = pos
		}
		// A consumer at Start may have no checkpoint row yet, which only the locking path
		// creates: its first batch goes that way.
		members = append(members, &member{p: p, one: r.eventHandler(conn, p), cur: cursor{pos: pos, known: pos != eventstore.Start}})
	}
	// A shared pass moves the checkpoints in the order a rebuild locks them (by name), so
	// that the two never wait for each other's rows in a cycle.
	slices.SortFunc(members, func(a, b *member) int { return strings.Compare(a.p.Name(), b.p.Name()) })
	r.log.Debug("projections: following the feed", "consumers", len(members), "after", after.String())
	f := follow(ctx, r.cfg.Store, after, r.cfg.Feed)
	defer f.close()
	for {
		batch, err := f.next(ctx, conn)
		if err != nil {
			return err
		}
		if err := r.deliverAll(ctx, conn, members, batch); err != nil {
			return err
		}
	}
}

// deliver applies batch to p on conn, in one transaction when it can. A batch that fails
// for the events' or the projection's fault (or keeps failing after the retries) is then
// applied event by event through one, so retries and parking isolate the bad event.
func (r *Runner) deliver(ctx context.Context, conn *pgx.Conn, p Projection, one message.HandlerFunc, batch []eventstore.RecordedEvent, cur *cursor) error {
	var tried string
	// One event goes the batch's way too when its pass can be pipelined (one round trip).
	if len(batch) > 1 || cur.known && pipelined(p) {
		var err error
		if tried, err = r.deliverBatch(ctx, conn, p, batch, cur); err == nil {
			return nil
		}
		if err := stopped(ctx, conn); err != nil {
			return err
		}
		r.log.Warn("projections: batch not applied; applying its events one by one", "consumer", p.Name(), "events", len(batch), "error", err)
	}
	return r.deliverEach(ctx, conn, one, batch, cur, tried)
}

// deliverEach hands the events of batch to one, a consumer's handler of one event, one
// by one; tried names the event whose Apply failed in the batch's attempt, if one did.
func (r *Runner) deliverEach(ctx context.Context, conn *pgx.Conn, one message.HandlerFunc, batch []eventstore.RecordedEvent, cur *cursor, tried string) error {
	cur.known = false // the event-by-event path moves the checkpoint (and parks) its own way
	for _, rec := range batch {
		if err := r.deliverOne(ctx, conn, one, rec, rec.ID.String() == tried); err != nil {
			return err
		}
	}
	return nil
}

// deliverBatch applies batch in one transaction, retrying failures of the runner's own
// work (watermill's Retry middleware); tried names the event whose Apply failed.
func (r *Runner) deliverBatch(ctx context.Context, conn *pgx.Conn, p Projection, batch []eventstore.RecordedEvent, cur *cursor) (tried string, err error) {
	h := r.retry().Middleware(middleware.Recoverer(func(*message.Message) ([]*message.Message, error) {
		var err error
		tried, err = r.processBatch(ctx, conn, p, batch, cur)
		return nil, err
	}))
	// The message only carries the cancellation the retries wait on: the batch is the
	// closure's.
	msg := message.NewMessage(batch[0].ID.String()+".."+batch[len(batch)-1].ID.String(), nil)
	msg.SetContext(ctx)
	_, err = h(msg)
	return tried, err
}

// deliverOne hands rec to the consumer's handler until it is applied or parked. A
// failure that is not the event's (the database, the connection) sends it again after
// RedeliveryDelay, as a new message. tried says the event had one attempt already, in a
// batch.
func (r *Runner) deliverOne(ctx context.Context, conn *pgx.Conn, one message.HandlerFunc, rec eventstore.RecordedEvent, tried bool) error {
	for {
		if err := stopped(ctx, conn); err != nil {
			return err
		}
		msg, err := NewMessage(rec)
		if err != nil {
			return err
		}
		if tried {
			msg.Metadata.Set(attemptsKey, "1")
			tried = false // a redelivery starts counting again, as it always has
		}
		msg.SetContext(ctx)
		if _, err := one(msg); err == nil {
			return nil
		} else if ctx.Err() == nil {
			r.log.Warn("projections: event not applied; trying it again", "event_id", rec.ID, "after", r.cfg.Feed.RedeliveryDelay, "error", err)
		}
		if !sleep(ctx, r.cfg.Feed.RedeliveryDelay) {
			return ctx.Err()
		}
	}
}

// stopped says why the session cannot go on, if it cannot: ctx ended, or the lock's
// connection is gone.
func stopped(ctx context.Context, conn *pgx.Conn) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if conn.IsClosed() {
		return errLockLost
	}
	return nil
}

// eventHandler is the handler of one event for p on conn, for one session: watermill's
// middlewares around the apply (outermost first) park what the retries could not fix,
// retry what failed or panicked, stop at the last attempt, and turn a panic into an error.
func (r *Runner) eventHandler(conn *pgx.Conn, p Projection) message.HandlerFunc {
	apply := func(msg *message.Message) ([]*message.Message, error) {
		return nil, r.handleEvent(msg.Context(), conn, p, msg)
	}
	return r.parkMiddleware(conn, p.Name())(r.retry().Middleware(r.attemptsMiddleware(middleware.Recoverer(apply))))
}

// handleEvent counts the attempt, decodes the message's event and applies it.
func (r *Runner) handleEvent(ctx context.Context, conn *pgx.Conn, p Projection, msg *message.Message) error {
	n, _ := strconv.Atoi(msg.Metadata.Get(attemptsKey))
	msg.Metadata.Set(attemptsKey, strconv.Itoa(n+1))
	rec, err := RecordFromMessage(msg)
	if err != nil {
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	e, err := r.decode(rec)
	if err != nil {
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	_, err = r.process(ctx, conn, p, e)
	return err
}

// retry is watermill's Retry middleware set from Config.Retry. Failures a retry cannot
// fix, and batches that must be split, are not retried.
func (r *Runner) retry() middleware.Retry {
	rc := r.cfg.Retry
	return middleware.Retry{
		MaxRetries:          rc.MaxAttempts - 1,
		InitialInterval:     rc.InitialInterval,
		MaxInterval:         rc.MaxInterval,
		Multiplier:          rc.Multiplier,
		RandomizationFactor: rc.Jitter,
		ResetContextOnRetry: true,
		ShouldRetry: func(p middleware.RetryParams) bool {
			return !errors.Is(p.Err, errPermanent) && !errors.Is(p.Err, errSplit)
		},
		OnRetryHook: func(n int, delay time.Duration) {
			r.log.Debug("projections: retrying", "retry", n, "delay", delay)
		},
	}
}

// attemptsMiddleware stops the retries of an event that failed its last attempt, counting
// the attempt it had inside a batch (deliverOne then starts its count at one).
func (r *Runner) attemptsMiddleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil && parkable(err) {
			if n, _ := strconv.Atoi(msg.Metadata.Get(attemptsKey)); n >= r.cfg.Retry.MaxAttempts {
				return nil, fmt.Errorf("%w: %w", errPermanent, err)
			}
		}
		return out, err
	}
}

// parkMiddleware returns the outermost step for consumer on conn: an event the retries
// could not apply is parked, so the consumer moves on. Shutdown and infrastructure
// failures are returned (deliverOne tries the event again later).
func (r *Runner) parkMiddleware(conn *pgx.Conn, consumer string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil {
				return out, nil
			}
			ctx := msg.Context()
			if ctx.Err() != nil || !parkable(err) {
				return nil, err
			}
			rec, derr := RecordFromMessage(msg)
			if derr != nil {
				return nil, errors.Join(err, derr)
			}
			attempts, _ := strconv.Atoi(msg.Metadata.Get(attemptsKey))
			if perr := r.park(ctx, conn, consumer, rec, err, attempts); perr != nil {
				return nil, errors.Join(err, perr)
			}
			return nil, nil
		}
	}
}
