package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
)

// minBackoff is the first delay when a notified event is not yet readable.
const minBackoff = 5 * time.Millisecond

// SubscribeAll implements eventstore.Store. It catches up with ReadAll pages, then waits
// for a NOTIFY from an append (on a connection of its own, outside the pool) or for the
// poll interval, and reads again. A NOTIFY names the position of the appended events; those
// may still be above the watermark for a moment (an older append is still open), so
// until they are read it polls again quickly, backing off up to the poll interval.
func (s *Store) SubscribeAll(ctx context.Context, after eventstore.Position, handle eventstore.Handler) error {
	ln := &listener{cfg: s.pool.Config().ConnConfig}
	// Listen before the first read, so that no append between the two goes unnoticed.
	if err := ln.connect(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("eventstore/postgres: subscribe: %w", err)
	}
	defer ln.close()

	pos := after
	var announced eventstore.Position // the newest position a NOTIFY named
	backoff := minBackoff
	for {
		progressed, err := s.catchUp(ctx, &pos, handle)
		if err != nil {
			return err
		}
		wait := s.cfg.pollInterval
		if pos.Less(announced) {
			if progressed {
				backoff = minBackoff
			}
			wait = backoff
			backoff = min(2*backoff, s.cfg.pollInterval)
		} else {
			backoff = minBackoff
		}
		if announced, err = ln.next(ctx, wait, pos, announced); err != nil {
			return err
		}
	}
}

// next waits up to d for a notification naming a position beyond pos, and returns the
// newest position announced so far. Notifications of events already read are passed over
// without reading the feed again: an append's NOTIFY queues on this connection while the
// events it names are read and applied with others in one batch, and under load each
// such stale one used to cost a watermark query and an empty read.
func (l *listener) next(ctx context.Context, d time.Duration, pos, announced eventstore.Position) (eventstore.Position, error) {
	deadline := time.Now().Add(d)
	for {
		p, ok := l.wait(ctx, time.Until(deadline))
		if err := ctx.Err(); err != nil {
			return announced, err
		}
		if !ok { // timed out, or a connection or payload to give up on: read again
			return announced, nil
		}
		if announced.Less(p) {
			announced = p
		}
		if pos.Less(p) || !time.Now().Before(deadline) {
			return announced, nil
		}
	}
}

// catchUp delivers pages until the feed has nothing more to read right now.
// One watermark serves all the pages of a pass: what commits meanwhile waits for the next.
func (s *Store) catchUp(ctx context.Context, pos *eventstore.Position, handle eventstore.Handler) (progressed bool, err error) {
	w, err := s.subscriptionWatermark(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, fmt.Errorf("eventstore/postgres: subscribe: %w", err)
	}
	for {
		events, err := s.readAll(ctx, *pos, s.cfg.pageSize, w)
		if err != nil {
			if ctx.Err() != nil {
				return progressed, ctx.Err()
			}
			return progressed, fmt.Errorf("eventstore/postgres: subscribe: %w", err)
		}
		for _, e := range events {
			if err := ctx.Err(); err != nil {
				return progressed, err
			}
			if err := handle(ctx, e); err != nil {
				return progressed, err
			}
			*pos = e.Position
			progressed = true
		}
		if len(events) < s.cfg.pageSize {
			return progressed, nil
		}
	}
}

// listener owns the LISTEN connection. When the connection breaks, the subscription keeps
// polling and reconnects at its next wait.
type listener struct {
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
}

func (l *listener) connect(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, l.cfg.Copy())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{notifyChannel}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return fmt.Errorf("listen: %w", err)
	}
	l.conn = conn
	return nil
}

// wait blocks for at most d until a notification arrives, and returns the position it
// names (ok is false on timeout, on a payload it cannot parse, or on a broken connection:
// in every case the caller simply reads the feed again).
func (l *listener) wait(ctx context.Context, d time.Duration) (eventstore.Position, bool) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if l.conn == nil {
		if err := l.connect(wctx); err != nil {
			<-wctx.Done() // still down: poll at the usual pace
			return eventstore.Start, false
		}
	}
	n, err := l.conn.WaitForNotification(wctx)
	if err != nil {
		// A timeout leaves the connection usable; anything else closes it.
		if l.conn.IsClosed() {
			l.close()
		}
		return eventstore.Start, false
	}
	var p eventstore.Position
	if _, err := fmt.Sscanf(n.Payload, "%d/%d", &p.Commit, &p.Prepare); err != nil {
		return eventstore.Start, false
	}
	return p, true
}

func (l *listener) close() {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.conn.Close(ctx)
	l.conn = nil
}
