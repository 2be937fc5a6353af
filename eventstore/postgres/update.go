package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
	"selfreset/eventstore/chain"
)

// Update implements eventstore.Updater in the two round trips of an Append: the first
// begins, takes the stream lock and reads the head, the stream from from and the other
// streams asked for; decide runs; the second inserts, moves the head and commits. A
// decision that would read, then append under an expected revision, costs one round
// trip less and cannot conflict. As for every append, the lock is the transaction's
// first statement and is held until it ends (see the package comment); while decide
// runs the transaction has no id yet.
func (s *Store) Update(ctx context.Context, stream string, from uint64, also []eventstore.StreamRead,
	decide func(tail eventstore.StreamTail, also []eventstore.StreamTail) ([]eventstore.EventData, error)) (eventstore.AppendResult, error) {
	return s.write(ctx, "update "+quote(stream), func(conn *pgx.Conn) (eventstore.AppendResult, bool, error) {
		return updateIn(ctx, conn, stream, from, also, decide)
	})
}

// updateIn does Update's work on conn; the caller rolls back a transaction left open.
func updateIn(ctx context.Context, conn *pgx.Conn, stream string, from uint64, also []eventstore.StreamRead,
	decide func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error)) (eventstore.AppendResult, bool, error) {
	what := "update " + quote(stream)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(planSQL)
	b.Queue(lockStreamSQL, stream)
	b.Queue(headSQL, stream)
	queueReads(b, append([]eventstore.StreamRead{{Stream: stream, From: from}}, also...))
	br := conn.SendBatch(ctx, b)
	head, tail, others, err := readUpdate(br, len(also))
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return eventstore.AppendResult{}, false, wrapErr(what, err)
	}
	events, err := decide(tail, others)
	if err != nil || len(events) == 0 {
		return eventstore.AppendResult{}, false, err
	}
	if err := eventstore.ValidateAppend(stream, events); err != nil {
		return eventstore.AppendResult{}, false, err
	}
	next := head.revision + 1
	if !head.exists {
		next = 0
	}
	events = append([]eventstore.EventData(nil), events...) // the caller's slice stays as given
	if _, err := chain.Link(stream, uint64(next), head.chain, events); err != nil {
		return eventstore.AppendResult{}, false, fmt.Errorf("eventstore/postgres: %s: %w", what, err)
	}
	res, err := insertEvents(ctx, conn, stream, next, events, true)
	if err != nil {
		return eventstore.AppendResult{}, false, wrapErr(what, err)
	}
	return res, true, nil
}

// readUpdate reads the results of updateIn's first batch.
func readUpdate(br pgx.BatchResults, others int) (streamHead, eventstore.StreamTail, []eventstore.StreamTail, error) {
	for _, step := range []string{"begin", "planner settings", "lock stream"} {
		if _, err := br.Exec(); err != nil {
			return streamHead{}, eventstore.StreamTail{}, nil, fmt.Errorf("%s: %w", step, err)
		}
	}
	head, err := scanHead(br.QueryRow())
	if err != nil {
		return streamHead{}, eventstore.StreamTail{}, nil, err
	}
	tails, err := readTails(br, others+1)
	if err != nil {
		return streamHead{}, eventstore.StreamTail{}, nil, err
	}
	return head, tails[0], tails[1:], nil
}
