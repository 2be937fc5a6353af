package projections

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
)

// ConsumerStatus is where one consumer stands.
type ConsumerStatus struct {
	Name string
	// Configured is false for a checkpoint row no configured projection owns (another
	// process's consumer, such as the mailer seen from the CLI, or a retired one).
	Configured bool
	// Checkpoint is the position of the last event applied, skipped or parked; UpdatedAt
	// is when it last moved (zero when the consumer has never run).
	Checkpoint eventstore.Position
	UpdatedAt  time.Time
	// Head is the newest position of the feed.
	Head eventstore.Position
	// ReadAt is when Checkpoint was read (the query had returned). A lag told as an age
	// is as of then: counting Behind reads the feed afterwards, which under load takes
	// long enough to add its own time to an age measured when Status returns.
	ReadAt time.Time
	// Behind counts events after the checkpoint, up to the runner's LagCap; Capped says
	// the count stopped there ("at least Behind").
	Behind int
	Capped bool
	// Parked counts the consumer's rows in parked_events.
	Parked int
}

// CaughtUp reports whether the consumer has seen the whole feed.
func (s ConsumerStatus) CaughtUp() bool { return s.Behind == 0 }

// BehindText is Behind for people: "≥ 100000" when capped.
func (s ConsumerStatus) BehindText() string {
	if s.Capped {
		return "≥ " + strconv.Itoa(s.Behind)
	}
	return strconv.Itoa(s.Behind)
}

// Status reports every configured consumer and every other checkpoint row: checkpoint,
// head, how many events behind (counted by reading the feed from the checkpoint, up to
// LagCap) and how many events it parked.
func (r *Runner) Status(ctx context.Context) ([]ConsumerStatus, error) {
	head, err := r.cfg.Store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("projections: status: head: %w", err)
	}
	byName := map[string]*ConsumerStatus{}
	for _, p := range r.cfg.Projections {
		byName[p.Name()] = &ConsumerStatus{Name: p.Name(), Configured: true, Head: head}
	}
	rows, err := r.cfg.Pool.Query(ctx, `SELECT consumer, commit, prepare, updated_at FROM projection_checkpoints`)
	if err != nil {
		return nil, fmt.Errorf("projections: status: %w", err)
	}
	var (
		name       string
		c, p       int64
		updatedAt  time.Time
		parked     int
		parkedRows pgx.Rows
	)
	if _, err := pgx.ForEachRow(rows, []any{&name, &c, &p, &updatedAt}, func() error {
		s := byName[name]
		if s == nil {
			s = &ConsumerStatus{Name: name, Head: head}
			byName[name] = s
		}
		s.Checkpoint, s.UpdatedAt = posFromDB(c, p), updatedAt
		return nil
	}); err != nil {
		return nil, fmt.Errorf("projections: status: %w", err)
	}
	readAt := time.Now()
	for _, s := range byName {
		s.ReadAt = readAt
	}
	parkedRows, err = r.cfg.Pool.Query(ctx, `SELECT consumer, count(*) FROM parked_events GROUP BY consumer`)
	if err != nil {
		return nil, fmt.Errorf("projections: status: %w", err)
	}
	if _, err := pgx.ForEachRow(parkedRows, []any{&name, &parked}, func() error {
		s := byName[name]
		if s == nil {
			s = &ConsumerStatus{Name: name, Head: head}
			byName[name] = s
		}
		s.Parked = parked
		return nil
	}); err != nil {
		return nil, fmt.Errorf("projections: status: %w", err)
	}

	out := make([]ConsumerStatus, 0, len(byName))
	// The consumers of one process share a session and mostly stand at one checkpoint:
	// the feed is counted once per checkpoint, not once per consumer.
	type count struct {
		n      int
		capped bool
	}
	counted := make(map[eventstore.Position]count, len(byName))
	for _, s := range byName {
		if s.Checkpoint.Less(head) {
			c, ok := counted[s.Checkpoint]
			if !ok {
				if c.n, c.capped, err = r.countAfter(ctx, s.Checkpoint); err != nil {
					return nil, err
				}
				counted[s.Checkpoint] = c
			}
			s.Behind, s.Capped = c.n, c.capped
		}
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b ConsumerStatus) int {
		if a.Configured != b.Configured {
			if a.Configured {
				return -1
			}
			return 1
		}
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// countAfter counts feed events after pos, paging through ReadAll, up to LagCap.
func (r *Runner) countAfter(ctx context.Context, pos eventstore.Position) (n int, capped bool, err error) {
	const page = 1000
	for n < r.cfg.LagCap {
		limit := min(page, r.cfg.LagCap-n)
		events, err := r.cfg.Store.ReadAll(ctx, pos, limit)
		if err != nil {
			return n, false, fmt.Errorf("projections: status: read feed: %w", err)
		}
		n += len(events)
		if len(events) < limit { // a short page is the end of the feed
			return n, false, nil
		}
		pos = events[len(events)-1].Position
	}
	// Exactly at the cap: capped only if there is more.
	more, err := r.cfg.Store.ReadAll(ctx, pos, 1)
	if err != nil {
		return n, false, fmt.Errorf("projections: status: read feed: %w", err)
	}
	return n, len(more) > 0, nil
}

// ParkedEvents lists the events consumer gave up on (every consumer's when consumer is
// ""), oldest first.
func (r *Runner) ParkedEvents(ctx context.Context, consumer string) ([]ParkedEvent, error) {
	rows, err := r.cfg.Pool.Query(ctx, `SELECT consumer, event_id::text, stream, revision, commit, prepare,
			event_type, error, attempts, parked_at
		FROM parked_events WHERE $1 = '' OR consumer = $1
		ORDER BY parked_at, consumer, commit, prepare`, consumer)
	if err != nil {
		return nil, fmt.Errorf("projections: parked events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ParkedEvent, error) {
		var (
			p         ParkedEvent
			rev, c, q int64
		)
		err := row.Scan(&p.Consumer, &p.EventID, &p.Stream, &rev, &c, &q, &p.EventType, &p.Error, &p.Attempts, &p.ParkedAt)
		p.Revision, p.Position = uint64(max(rev, 0)), posFromDB(c, q)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("projections: parked events: %w", err)
	}
	return out, nil
}
