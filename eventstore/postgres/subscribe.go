package postgres

import (
	"context"
	"fmt"
	"time"

	"selfreset/eventstore"
)

// minBackoff is the first delay when a notified event is not yet readable.
const minBackoff = 5 * time.Millisecond

// SubscribeAll implements eventstore.Store. It catches up with ReadAll pages, then waits
// for a NOTIFY from an append (on the connection the Store's subscriptions share, outside
// the pool: notices) or for the poll interval, and reads again. A NOTIFY names the
// position of the appended events; those may still be above the watermark for a moment
// (an older append is still open), so until they are read it polls again quickly,
// backing off up to the poll interval.
func (s *Store) SubscribeAll(ctx context.Context, after eventstore.Position, handle eventstore.Handler) error {
	// Listen before the first read, so that no append between the two goes unnoticed.
	if err := s.listen.join(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("eventstore/postgres: subscribe: %w", err)
	}
	defer s.listen.leave()

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
		if announced, err = s.listen.next(ctx, wait, pos, announced); err != nil {
			return err
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
