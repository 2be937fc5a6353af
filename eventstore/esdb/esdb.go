// Package esdb implements eventstore.Store over EventStoreDB, through EventStore-Client-Go v4.
//
// Streams map one to one; an event's id, type and JSON data are EventStoreDB's own, and its
// schema version, occurred-at and Metadata travel in the event's user metadata. The global
// feed is $all, narrowed to this service's streams: those with one of the configured
// prefixes (WithStreamPrefixes), or every non-system stream when none is configured.
// System events (types starting with "$") never reach the port.
package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	esdbc "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"selfreset/eventstore"
	"selfreset/eventstore/chain"
)

// DefaultPageSize is how many events one read request asks for.
const DefaultPageSize = 512

// Option configures a Store.
type Option func(*options)

type options struct {
	prefixes []string
	pageSize uint64
	logger   esdbc.LoggingFunc
}

// WithStreamPrefixes sets the stream-name prefixes that belong to this service (for
// selfreset: "provider-", "user-" and so on). ReadAll, SubscribeAll and Head see only events
// of those streams. Without it they see every stream whose name does not start with "$".
func WithStreamPrefixes(prefixes ...string) Option {
	return func(o *options) {
		o.prefixes = nil
		for _, p := range prefixes {
			if p != "" {
				o.prefixes = append(o.prefixes, p)
			}
		}
	}
}

// WithPageSize sets how many events one read request asks for (at least 2).
func WithPageSize(n int) Option {
	return func(o *options) {
		if n < 2 {
			n = 2
		}
		o.pageSize = uint64(n)
	}
}

// WithLogger replaces the client's logger (by default it prints to the standard logger,
// including an error line each time a subscription ends, even by cancellation).
// esdb.NoopLogging() from the client package silences it.
func WithLogger(l esdbc.LoggingFunc) Option {
	return func(o *options) { o.logger = l }
}

// Store is an eventstore.Store backed by EventStoreDB. It is safe for concurrent use.
type Store struct {
	conf     *esdbc.Configuration
	filter   streamFilter
	pageSize uint64

	mu     sync.Mutex
	client *esdbc.Client
	closed bool
}

var _ eventstore.Store = (*Store)(nil)

// Open parses an esdb:// (or esdb+discover://) connection string, creates the client and
// checks that the server answers a read of $all before ctx ends.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{pageSize: DefaultPageSize}
	for _, opt := range opts {
		opt(&o)
	}
	conf, err := esdbc.ParseConnectionString(url)
	if err != nil {
		return nil, fmt.Errorf("esdb: connection string: %w", err)
	}
	if o.logger != nil {
		conf.Logger = o.logger
	}
	client, err := esdbc.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("esdb: new client: %w", err)
	}
	s := &Store{conf: conf, filter: streamFilter{prefixes: o.prefixes}, pageSize: o.pageSize, client: client}

	// The client connects on first use, and that first connection does not watch any
	// context (it runs the node discovery to the end), so wait for it here under ctx.
	done := make(chan error, 1)
	go func() { done <- s.ping(ctx) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("esdb: connect: %w", err)
	}
	return s, nil
}

// ping reads the newest record of $all: it needs a connection and the right to read $all,
// as the Store does, but unlike Head it never walks the log.
func (s *Store) ping(ctx context.Context) error {
	c := s.conn()
	rs, err := c.ReadAll(ctx, esdbc.ReadAllOptions{Direction: esdbc.Backwards, From: esdbc.End{}}, 1)
	if err != nil {
		return err
	}
	defer rs.Close()
	if _, err := rs.Recv(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Close releases the client. The Store is unusable afterwards; closing twice is harmless.
// The client is closed after the mutex is released: closing drains its gRPC connection,
// and callers of client and noteErr should not wait on that.
func (s *Store) Close() {
	s.mu.Lock()
	c, already := s.client, s.closed
	s.closed = true
	s.mu.Unlock()
	if !already {
		_ = c.Close()
	}
}

// conn returns the current client.
func (s *Store) conn() *esdbc.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

// noteErr replaces c after it failed with ConnectionClosed though we never closed it. The
// v4 client closes itself for good when a node discovery fails (the connection state
// machine in impl.go sets its close flag and exits), e.g. when the server was down for a
// few seconds; without this a long-running process would need a restart. The failed call
// still returns its error; the next one uses a fresh client.
func (s *Store) noteErr(c *esdbc.Client, err error) {
	if !isErrorCode(err, esdbc.ErrorCodeConnectionClosed) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.client != c {
		return
	}
	fresh, nerr := esdbc.NewClient(s.conf)
	if nerr != nil {
		return
	}
	_ = c.Close()
	s.client = fresh
}

// maxChainAttempts bounds how often an append with a loose expectation (Any, StreamExists)
// re-reads the stream's last event after another writer got in first.
const maxChainAttempts = 64

// Append implements eventstore.Store. Each event is linked to the stream's hash chain
// (eventstore/chain), which needs the hash of the stream's last event: it is read first and
// the events are appended at exactly that revision, so a writer that got in between makes
// the append fail rather than fork the chain. An append whose own expectation was loose
// (Any, StreamExists) then reads again and retries; an exact one reports the conflict.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppend(stream, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	if len(events) == 0 {
		return s.appendNothing(ctx, stream, expected)
	}
	for _, e := range events {
		if _, err := toEventData(e); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("esdb: append to %q: %w", stream, err)
		}
	}
	for attempt := 1; ; attempt++ {
		c := s.conn()
		tail, err := s.tailOfStream(ctx, c, stream, len(events))
		if err != nil {
			return eventstore.AppendResult{}, withCtx(ctx, fmt.Errorf("esdb: append to %q: %w", stream, err))
		}
		if res, ok := retried(tail, events); ok {
			return res, nil // a retry of an append that succeeded
		}
		send, first, prev := expected, uint64(0), ""
		exists := len(tail) > 0
		if exists {
			first, prev = tail[0].Revision+1, tail[0].Metadata.Chain
		}
		if expected.Check(first-1, exists) {
			send = eventstore.NoStream
			if exists {
				send = eventstore.Exact(first - 1)
			}
		} // else the server refuses it (or, for a retry, answers as the first time)
		linked := append([]eventstore.EventData(nil), events...)
		if _, err := chain.Link(stream, first, prev, linked); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("esdb: append to %q: %w", stream, err)
		}
		data := make([]esdbc.EventData, len(linked))
		for i, e := range linked {
			if data[i], err = toEventData(e); err != nil {
				return eventstore.AppendResult{}, fmt.Errorf("esdb: append to %q: %w", stream, err)
			}
		}
		res, err := c.AppendToStream(ctx, stream, esdbc.AppendToStreamOptions{ExpectedRevision: expectedRevision(send)}, data...)
		if err != nil {
			s.noteErr(c, err)
			if send != expected && attempt < maxChainAttempts && errors.Is(mapAppendError(stream, send, err), eventstore.ErrConflict) && ctx.Err() == nil {
				continue // another writer appended first: link to its event instead
			}
			return eventstore.AppendResult{}, withCtx(ctx, mapAppendError(stream, expected, err))
		}
		out := appendResult(res)
		if out.Position == eventstore.Start {
			// The server reports no position for an idempotent retry; the stored event knows it.
			if last, ok, err := s.lastOfStream(ctx, c, stream); err == nil && ok && last.Revision == out.NextRevision {
				out.Position = last.Position
			}
		}
		return out, nil
	}
}

// retried reports whether every event is among tail (the stream's last events, newest
// first), and if so the result the first append gave.
func retried(tail []eventstore.RecordedEvent, events []eventstore.EventData) (eventstore.AppendResult, bool) {
	if len(tail) < len(events) {
		return eventstore.AppendResult{}, false
	}
	var last *eventstore.RecordedEvent
	for _, e := range events {
		found := false
		for i := range tail {
			if tail[i].ID == e.ID {
				found = true
				if last == nil || tail[i].Revision > last.Revision {
					last = &tail[i]
				}
				break
			}
		}
		if !found {
			return eventstore.AppendResult{}, false
		}
	}
	return eventstore.AppendResult{NextRevision: last.Revision, Position: last.Position}, true
}

// tailOfStream reads the last n events of stream, newest first (none when it has no events).
func (s *Store) tailOfStream(ctx context.Context, c *esdbc.Client, stream string, n int) ([]eventstore.RecordedEvent, error) {
	rs, err := c.ReadStream(ctx, stream, esdbc.ReadStreamOptions{Direction: esdbc.Backwards, From: esdbc.End{}}, uint64(n))
	if err != nil {
		s.noteErr(c, err)
		return nil, err
	}
	defer rs.Close()
	var out []eventstore.RecordedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			if errors.Is(mapReadError(stream, err), eventstore.ErrStreamNotFound) {
				return nil, nil
			}
			s.noteErr(c, err)
			return nil, err
		}
		rec, err := toRecorded(ev.OriginalEvent())
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
}

// appendNothing answers an append of no events without writing: the client reports a
// made-up revision 1 when the server says the stream does not exist (client.go, the
// AppendResp_Success_NoStream case), so the expectation is checked against a read instead.
func (s *Store) appendNothing(ctx context.Context, stream string, expected eventstore.ExpectedRevision) (eventstore.AppendResult, error) {
	last, exists, err := s.lastOfStream(ctx, s.conn(), stream)
	if err != nil {
		return eventstore.AppendResult{}, withCtx(ctx, fmt.Errorf("esdb: append to %q: %w", stream, err))
	}
	if !expected.Check(last.Revision, exists) {
		return eventstore.AppendResult{}, fmt.Errorf("esdb: append to %q expecting %s: %w", stream, expected, eventstore.ErrConflict)
	}
	if !exists {
		return eventstore.AppendResult{}, nil
	}
	return eventstore.AppendResult{NextRevision: last.Revision, Position: last.Position}, nil
}

// lastOfStream reads the last event of stream; ok is false when the stream has none.
func (s *Store) lastOfStream(ctx context.Context, c *esdbc.Client, stream string) (eventstore.RecordedEvent, bool, error) {
	rs, err := c.ReadStream(ctx, stream, esdbc.ReadStreamOptions{Direction: esdbc.Backwards, From: esdbc.End{}}, 1)
	if err != nil {
		s.noteErr(c, err)
		return eventstore.RecordedEvent{}, false, err
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if errors.Is(err, io.EOF) {
		return eventstore.RecordedEvent{}, false, nil
	}
	if err != nil {
		if errors.Is(mapReadError(stream, err), eventstore.ErrStreamNotFound) {
			return eventstore.RecordedEvent{}, false, nil
		}
		s.noteErr(c, err)
		return eventstore.RecordedEvent{}, false, err
	}
	rec, err := toRecorded(ev.OriginalEvent())
	if err != nil {
		return eventstore.RecordedEvent{}, false, err
	}
	return rec, true, nil
}

// ReadStream implements eventstore.Store, reading forwards in pages of the page size.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) ([]eventstore.RecordedEvent, error) {
	c := s.conn()
	var out []eventstore.RecordedEvent
	next := from
	for {
		n, err := s.readStreamPage(ctx, c, stream, next, func(rec eventstore.RecordedEvent) {
			out = append(out, rec)
			next = rec.Revision + 1
		})
		if err != nil {
			return nil, withCtx(ctx, err)
		}
		if n < s.pageSize {
			return out, nil
		}
	}
}

func (s *Store) readStreamPage(ctx context.Context, c *esdbc.Client, stream string, from uint64, each func(eventstore.RecordedEvent)) (uint64, error) {
	return s.readPage(c, func() (*esdbc.ReadStream, error) {
		return c.ReadStream(ctx, stream, esdbc.ReadStreamOptions{Direction: esdbc.Forwards, From: esdbc.Revision(from)}, s.pageSize)
	}, func(err error) error { return mapReadError(stream, err) }, func(r *esdbc.RecordedEvent) (bool, error) {
		rec, err := toRecorded(r)
		if err != nil {
			return false, err
		}
		each(rec)
		return true, nil
	})
}

// readPage reads one page from the stream open opens, passing each event to visit until
// it returns false or an error, and tells how many events it read. A read error is noted
// against c and returned through fail.
func (s *Store) readPage(c *esdbc.Client, open func() (*esdbc.ReadStream, error), fail func(error) error, visit func(*esdbc.RecordedEvent) (more bool, err error)) (uint64, error) {
	rs, err := open()
	if err != nil {
		s.noteErr(c, err)
		return 0, fail(err)
	}
	defer rs.Close()
	var n uint64
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			s.noteErr(c, err)
			return n, fail(err)
		}
		n++
		if more, err := visit(ev.OriginalEvent()); err != nil || !more {
			return n, err
		}
	}
}

// ReadAll implements eventstore.Store. The v4 client has no server-side filter for reads of
// $all (ReadAllOptions has none and the request always says NoFilter), so pages of $all are
// filtered here, and a read may walk past many system events to fill limit.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	c := s.conn()
	var out []eventstore.RecordedEvent
	cursor := after
	for {
		// A read of $all from a position includes the event at that position: cursor
		// skips it (and everything not strictly after `after`).
		progressed := false
		opts := esdbc.ReadAllOptions{Direction: esdbc.Forwards, From: fromPosition(cursor)}
		n, err := s.readAllPage(ctx, c, opts, "read $all after "+after.String(), func(r *esdbc.RecordedEvent) (bool, error) {
			pos := toPosition(r.Position)
			if !cursor.Less(pos) {
				return true, nil
			}
			cursor, progressed = pos, true
			if !s.filter.match(r.StreamID, r.EventType) {
				return true, nil
			}
			rec, err := toRecorded(r)
			if err != nil {
				return false, err
			}
			out = append(out, rec)
			return len(out) < limit, nil
		})
		if err != nil {
			return nil, err
		}
		if len(out) >= limit || n < s.pageSize || !progressed {
			return out, nil
		}
	}
}

// readAllPage is readPage over a page of $all read with opts; what names the read in
// errors.
func (s *Store) readAllPage(ctx context.Context, c *esdbc.Client, opts esdbc.ReadAllOptions, what string, visit func(*esdbc.RecordedEvent) (bool, error)) (uint64, error) {
	return s.readPage(c, func() (*esdbc.ReadStream, error) { return c.ReadAll(ctx, opts, s.pageSize) },
		func(err error) error { return withCtx(ctx, fmt.Errorf("esdb: %s: %w", what, err)) }, visit)
}

// SubscribeAll implements eventstore.Store with a catch-up subscription to $all, filtered on
// the server by stream name. Checkpoint, caught-up and fell-behind notices are skipped; a
// dropped subscription is returned as an error (the caller resubscribes from its last
// position).
func (s *Store) SubscribeAll(ctx context.Context, after eventstore.Position, handle eventstore.Handler) error {
	c := s.conn()
	sub, err := c.SubscribeToAll(ctx, esdbc.SubscribeToAllOptions{
		From:   fromPosition(after),
		Filter: s.filter.subscriptionFilter(),
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.noteErr(c, err)
		return fmt.Errorf("esdb: subscribe to $all after %s: %w", after, err)
	}
	defer sub.Close()
	cursor := after
	for {
		msg := sub.Recv()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case msg.SubscriptionDropped != nil:
			err := msg.SubscriptionDropped.Error
			if err == nil {
				err = errors.New("no reason given")
			}
			return fmt.Errorf("esdb: subscription to $all dropped after %s: %w", cursor, err)
		case msg.EventAppeared != nil:
			r := msg.EventAppeared.OriginalEvent()
			if r == nil {
				continue
			}
			pos := toPosition(r.Position)
			if !cursor.Less(pos) {
				continue // at or before `after`, or a repeat
			}
			cursor = pos
			if !s.filter.match(r.StreamID, r.EventType) {
				continue
			}
			rec, err := toRecorded(r)
			if err != nil {
				return err
			}
			if err := handle(ctx, rec); err != nil {
				return err
			}
		}
	}
}

// Head implements eventstore.Store: the position of the newest event of this service's
// streams, found by reading $all backwards (filtered here, see ReadAll) from the end.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	c := s.conn()
	var from esdbc.AllPosition = esdbc.End{}
	var cursor eventstore.Position
	started := false
	for {
		progressed, found := false, false
		opts := esdbc.ReadAllOptions{Direction: esdbc.Backwards, From: from}
		n, err := s.readAllPage(ctx, c, opts, "read $all backwards", func(r *esdbc.RecordedEvent) (bool, error) {
			pos := toPosition(r.Position)
			if started && !pos.Less(cursor) {
				return true, nil // the page's first event is where the last page ended
			}
			cursor, started, progressed = pos, true, true
			found = s.filter.match(r.StreamID, r.EventType)
			return !found, nil
		})
		switch {
		case err != nil:
			return eventstore.Position{}, err
		case found:
			return cursor, nil
		case n < s.pageSize || !progressed:
			return eventstore.Start, nil
		}
		from = fromPosition(cursor)
	}
}
