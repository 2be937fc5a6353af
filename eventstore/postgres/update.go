package postgres

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
	"selfreset/eventstore/chain"
)

// lockStreamsSQL takes the stream locks of a group of Updates in one statement, in the
// order of their keys, so that two transactions needing the same keys (streams whose
// names hash alike) take them in the same order and cannot deadlock.
var lockStreamsSQL = `SELECT pg_advisory_xact_lock(` + strconv.Itoa(streamLockClass) + `, l.h)
	FROM (SELECT DISTINCT hashtext(s) AS h FROM unnest($1::text[]) AS s ORDER BY 1) AS l`

// updateIn runs a group of Updates (group.go) in the two round trips of an Append: the
// first begins, takes the streams' locks and reads each Update's head, its stream from
// its revision on and the other streams it asked for; each decision runs; the second
// inserts what they decided, moves the heads and commits. A decision that would read,
// then append under an expected revision, costs one round trip less and cannot conflict.
// As for every append, the locks come before anything that could assign a transaction
// id and are held until the transaction ends (see the package comment); while the
// decisions run it has no id yet. On success each Update's outcome is in its out; the
// caller rolls back a transaction left open.
func updateIn(ctx context.Context, conn *pgx.Conn, what string, group []*update) (eventstore.AppendResult, bool, error) {
	streams := make([]string, len(group))
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(planSQL)
	for i, u := range group {
		streams[i] = u.stream
	}
	b.Queue(lockStreamsSQL, streams)
	for _, u := range group {
		queueUpdateReads(b, u)
	}
	br := conn.SendBatch(ctx, b)
	heads, tails, err := readGroup(br, group)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return eventstore.AppendResult{}, false, wrapErr(what, err)
	}
	b = &pgx.Batch{}
	var writers []*update
	for i, u := range group {
		if u.decided(heads[i], tails[i]) {
			queueInsert(b, u.stream, u.first, u.events)
			writers = append(writers, u)
		}
	}
	if len(writers) == 0 {
		return eventstore.AppendResult{}, false, nil
	}
	ctxs := make([]context.Context, len(writers))
	for i, u := range writers {
		ctxs[i] = u.ctx
	}
	queueCommit(b, ctxs...)
	br = conn.SendBatch(ctx, b)
	var last eventstore.AppendResult
	for _, u := range writers {
		if last, err = readInsert(br, u.first, len(u.events)); err != nil {
			break
		}
		u.out = updated{res: last}
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return eventstore.AppendResult{}, false, wrapErr(what, err)
	}
	return last, true, nil
}

// decided runs u's decision on what was read, and reports whether it has events to
// insert (u.events, from revision u.first, linked to the stream's chain). Otherwise u.out
// is its outcome: decide's refusal, or nothing written.
func (u *update) decided(head streamHead, tails []eventstore.StreamTail) bool {
	u.out, u.events = updated{}, nil
	events, err := u.decideSafely(tails[0], tails[1:])
	if err == nil && len(events) > 0 {
		err = eventstore.ValidateAppend(u.stream, events)
	}
	if err != nil || len(events) == 0 {
		u.out = updated{err: err}
		return false
	}
	u.first = head.revision + 1
	if !head.exists {
		u.first = 0
	}
	u.events = append([]eventstore.EventData(nil), events...) // the caller's slice stays as given
	if _, err := chain.Link(u.stream, uint64(u.first), head.chain, u.events); err != nil {
		u.out = updated{err: fmt.Errorf("eventstore/postgres: update %s: %w", quote(u.stream), err)}
		return false
	}
	return true
}

// decideSafely is decide, with a panic turned into u's error: the decision runs on the
// group's goroutine, where a panic would end the process rather than the caller's
// command.
func (u *update) decideSafely(tail eventstore.StreamTail, also []eventstore.StreamTail) (events []eventstore.EventData, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("eventstore/postgres: update %s: decide panicked: %v\n%s", quote(u.stream), r, debug.Stack())
		}
	}()
	return u.decide(tail, also)
}

// readGroup reads the results of updateIn's first batch: each Update's head and tails
// (its stream's, then those it asked for).
func readGroup(br pgx.BatchResults, group []*update) ([]streamHead, [][]eventstore.StreamTail, error) {
	for _, step := range []string{"begin", "planner settings", "lock streams"} {
		if _, err := br.Exec(); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", step, err)
		}
	}
	heads := make([]streamHead, len(group))
	tails := make([][]eventstore.StreamTail, len(group))
	for i, u := range group {
		rows, err := br.Query()
		if err == nil {
			heads[i], tails[i], err = scanUpdateReads(rows, len(u.also)+1)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", quote(u.stream), err)
		}
	}
	return heads, tails, nil
}

// updateReadsSQL reads what an Update decides on, in one statement (and one snapshot):
// its stream's head, and the tail of each stream of $1 (its own first) from the revision
// in $2 on, at most $3 events (0: all). A stream found comes back as a row per event, or
// as one row with no event when it has none there; the head (the last revision and its
// chain value) is on the first stream's rows. The head and the tails used to be a
// statement each: three per Forgot Password decision, where the statements' fixed cost
// is most of what reading an empty tail costs the server.
var updateReadsSQL = `SELECT r.ord, s.revision, h.metadata->>'chain', ` + streamEventColumns + `
	FROM unnest($1::text[], $2::bigint[], $3::int[]) WITH ORDINALITY AS r(stream, from_revision, max_events, ord)
	JOIN streams s ON s.stream = r.stream
	LEFT JOIN events h ON r.ord = 1 AND h.stream = s.stream AND h.revision = s.revision
	LEFT JOIN LATERAL (SELECT * FROM events x WHERE x.stream = s.stream AND x.revision >= r.from_revision
		ORDER BY x.revision LIMIT nullif(r.max_events, 0)) e ON true
	ORDER BY r.ord, e.revision`

// queueUpdateReads queues updateReadsSQL for u: its stream from u.from on, then u.also.
func queueUpdateReads(b *pgx.Batch, u *update) {
	n := len(u.also) + 1
	streams, froms, maxes := make([]string, 0, n), make([]int64, 0, n), make([]int32, 0, n)
	for _, r := range append([]eventstore.StreamRead{{Stream: u.stream, From: u.from}}, u.also...) {
		streams = append(streams, r.Stream)
		froms = append(froms, clampInt64(r.From))
		maxes = append(maxes, int32(min(max(r.Max, 0), math.MaxInt32)))
	}
	b.Queue(updateReadsSQL, streams, froms, maxes)
}

// scanUpdateReads reads and closes the rows of updateReadsSQL for n streams.
func scanUpdateReads(rows pgx.Rows, n int) (streamHead, []eventstore.StreamTail, error) {
	defer rows.Close()
	var head streamHead
	tails := make([]eventstore.StreamTail, n)
	for rows.Next() {
		var (
			ord, revision int64
			chain         *string
		)
		lead := []any{&ord, &revision, &chain}
		var e *eventstore.RecordedEvent
		if rows.RawValues()[len(lead)] == nil { // the stream's row alone: no event
			if err := rows.Scan(append(lead, make([]any, len(rows.RawValues())-len(lead))...)...); err != nil {
				return streamHead{}, nil, err
			}
		} else {
			ev, err := scanEventAfter(rows, lead...)
			if err != nil {
				return streamHead{}, nil, err
			}
			e = &ev
		}
		if ord < 1 || ord > int64(n) {
			return streamHead{}, nil, fmt.Errorf("a row for stream %d of %d", ord, n)
		}
		tail := &tails[ord-1]
		tail.Found = true
		if e != nil {
			tail.Events = append(tail.Events, *e)
		}
		if ord == 1 {
			head = streamHead{exists: true, revision: revision}
			if chain != nil {
				head.chain = *chain
			}
		}
	}
	return head, tails, rows.Err()
}
