package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
func updateIn(ctx context.Context, conn *pgx.Conn, what string, group []*update, seen *headCache) (eventstore.AppendResult, bool, error) {
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
	rememberReads(seen, group, heads, tails)
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
	rememberWrites(seen, writers)
	return last, true, nil
}

// expectHeadsSQL fails the transaction unless each stream of $1 is at the revision beside
// it in $2: run under the stream locks, before the inserts of a group decided at once.
// It fails by casting its message to an integer, the one way a plain statement can raise
// an error of its own choosing at run time (a constant error in a CASE arm would be
// raised when the statement is planned); a function in PL/pgSQL that raised it cost the
// server 61 µs a call, as much as the reads it spares, against 17 µs for this one.
const expectHeadsSQL = `SELECT (CASE WHEN count(*) = cardinality($1::text[]) THEN '0'
		ELSE 'eventstore/postgres: a remembered stream head has moved' END)::int
	FROM unnest($1::text[], $2::bigint[]) AS x(stream, revision)
	JOIN streams s ON s.stream = x.stream AND s.revision = x.revision`

// expectedHeads is what a group decided at once relies on: each Update's stream's
// remembered head, and every stream the group reads (its own and those beside them) at
// the revision expected of it.
type expectedHeads struct {
	own       []head
	streams   []string
	revisions []int64
}

// rememberedHeads gives the heads a group can be decided at once on (updateAtOnce): when
// every stream it reads has a remembered head before the revision its Update reads from,
// so that the tail it would read is empty (and its own stream's chain value is known). A
// blind append (from past any revision) reads nothing and only needs its head.
func rememberedHeads(seen *headCache, group []*update) (expectedHeads, bool) {
	x := expectedHeads{own: make([]head, len(group))}
	for i, u := range group {
		h, ok := seen.get(u.stream)
		if !ok || !h.chainKnown || clampInt64(u.from)-1 < h.revision {
			return expectedHeads{}, false
		}
		x.own[i] = h
		x.streams, x.revisions = append(x.streams, u.stream), append(x.revisions, h.revision)
		for _, a := range u.also {
			h, ok := seen.get(a.Stream)
			if !ok || clampInt64(a.From)-1 < h.revision {
				return expectedHeads{}, false
			}
			x.streams, x.revisions = append(x.streams, a.Stream), append(x.revisions, h.revision)
		}
	}
	return x, true
}

// updateAtOnce is updateIn in one round trip for a group whose heads are remembered
// (rememberedHeads, heads.go): each decision runs first, on its stream's remembered head
// and empty tails; then one batch begins, takes the stream locks, checks every head the
// decisions relied on (expectHeadsSQL), inserts and commits. stale reports that nothing
// was written and the group must be read and decided the usual way: a decision that
// wrote nothing or failed (it may have been so only on what was remembered), or a
// statement the server refused (a head that moved, an event id stored already), after
// which the caller rolls back. Any other error is the group's.
func updateAtOnce(ctx context.Context, conn *pgx.Conn, what string, group []*update, x expectedHeads, seen *headCache) (res eventstore.AppendResult, stale bool, err error) {
	locks := make([]string, len(group))
	ctxs := make([]context.Context, len(group))
	for i, u := range group {
		tails := make([]eventstore.StreamTail, len(u.also)+1)
		for j := range tails {
			tails[j].Found = true
		}
		if !u.decided(streamHead{exists: true, revision: x.own[i].revision, chain: x.own[i].chain}, tails) {
			return eventstore.AppendResult{}, true, nil
		}
		locks[i], ctxs[i] = u.stream, u.ctx
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(planSQL)
	b.Queue(lockStreamsSQL, locks)
	b.Queue(expectHeadsSQL, x.streams, x.revisions)
	for _, u := range group {
		queueInsert(b, u.stream, u.first, u.events)
	}
	queueCommit(b, ctxs...)
	br := conn.SendBatch(ctx, b)
	for _, step := range []string{"begin", "planner settings", "lock streams", "expect heads"} {
		if _, err = br.Exec(); err != nil {
			err = fmt.Errorf("%s: %w", step, err)
			break
		}
	}
	for _, u := range group {
		if err != nil {
			break
		}
		if res, err = readInsert(br, u.first, len(u.events)); err == nil {
			u.out = updated{res: res}
		}
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return eventstore.AppendResult{}, true, nil
		}
		return eventstore.AppendResult{}, false, wrapErr(what, err)
	}
	rememberWrites(seen, group)
	return res, false, nil
}

// rememberReads remembers the heads updateIn read: each Update's stream's (with its chain
// value), and each stream it read beside it, at its last event or, when it had none past
// where it was read from, just before there.
func rememberReads(seen *headCache, group []*update, heads []streamHead, tails [][]eventstore.StreamTail) {
	for i, u := range group {
		if heads[i].exists {
			seen.put(u.stream, head{revision: heads[i].revision, chain: heads[i].chain, chainKnown: true})
		}
		for j, a := range u.also {
			switch t := tails[i][j+1]; {
			case !t.Found:
				seen.forget(a.Stream)
			case len(t.Events) > 0:
				last := t.Events[len(t.Events)-1]
				seen.put(a.Stream, head{revision: clampInt64(last.Revision), chain: last.Metadata.Chain, chainKnown: true})
			case a.From > 0:
				seen.put(a.Stream, head{revision: clampInt64(a.From) - 1})
			}
		}
	}
}

// rememberWrites remembers the heads the writers of a committed group left.
func rememberWrites(seen *headCache, writers []*update) {
	for _, u := range writers {
		last := u.events[len(u.events)-1]
		seen.put(u.stream, head{revision: u.first + int64(len(u.events)) - 1, chain: last.Metadata.Chain, chainKnown: true})
	}
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
