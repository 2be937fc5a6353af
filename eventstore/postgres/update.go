package postgres

import (
	"context"
	"fmt"
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
		b.Queue(headSQL, u.stream)
		queueReads(b, append([]eventstore.StreamRead{{Stream: u.stream, From: u.from}}, u.also...))
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
		var err error
		if heads[i], err = scanHead(br.QueryRow()); err != nil {
			return nil, nil, err
		}
		if tails[i], err = readTails(br, len(u.also)+1); err != nil {
			return nil, nil, err
		}
	}
	return heads, tails, nil
}
