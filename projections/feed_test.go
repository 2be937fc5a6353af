package projections

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
)

// TestFeed follows one consumer through the feed. On the shared EventStoreDB other tests'
// events come before, between and after this test's three: the consumer acks them
// unseen (recvOwn), as a consumer that has nothing to do with them would.
func TestFeed(t *testing.T) {
	e := newEnv(t)
	stream := domain.UserStream(e.acme, "feed")
	for i := range 3 {
		_, err := e.store.Append(e.ctx, stream, eventstore.Any, eventstore.EventData{
			ID: uuid.New(), Type: "Raw", SchemaVersion: 1, OccurredAt: t0.Add(time.Duration(i) * time.Second),
			Data: json.RawMessage(`{"n":` + strconv.Itoa(i) + `}`), Metadata: eventstore.Metadata{Actor: "test"},
		})
		e.must(err)
	}
	events := e.ownEvents()
	if len(events) != 3 {
		t.Fatalf("%d events, want 3", len(events))
	}
	// The consumer has applied the first event already.
	c, p, err := dbPos(events[0].Position)
	e.must(err)
	_, err = e.pool.Exec(e.ctx, `INSERT INTO projection_checkpoints (consumer, commit, prepare) VALUES ('feedtest', $1, $2)`, c, p)
	e.must(err)

	newFeed := func() *Feed {
		return NewFeed(FeedConfig{Store: e.store, Pool: e.pool, Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
			LockPollInterval: 20 * time.Millisecond, RedeliveryDelay: time.Millisecond})
	}
	recv := func(ch <-chan *message.Message) *message.Message {
		t.Helper()
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatal("channel closed")
			}
			return m
		case <-time.After(20 * time.Second):
			t.Fatal("no message within 20s")
		}
		return nil
	}
	// recvOwn acks other tests' events (there are none on Postgres) and returns the next
	// message of this test's stream.
	recvOwn := func(ch <-chan *message.Message) *message.Message {
		t.Helper()
		for {
			m := recv(ch)
			if m.Metadata.Get(MetaStream) == stream {
				return m
			}
			if !e.shared {
				t.Fatalf("message of stream %q on a private event store", m.Metadata.Get(MetaStream))
			}
			m.Ack()
		}
	}
	check := func(m *message.Message, want eventstore.RecordedEvent) {
		t.Helper()
		if m.UUID != want.ID.String() {
			t.Fatalf("message %s, want event %s", m.UUID, want.ID)
		}
		for k, v := range map[string]string{MetaType: "Raw", MetaStream: stream,
			MetaRevision: strconv.FormatUint(want.Revision, 10), MetaPosition: want.Position.String()} {
			if got := m.Metadata.Get(k); got != v {
				t.Errorf("metadata %s = %q, want %q", k, got, v)
			}
		}
		rec, err := RecordFromMessage(m)
		e.must(err)
		if show([]eventstore.RecordedEvent{rec}) != show([]eventstore.RecordedEvent{want}) {
			t.Errorf("payload decodes to\n%s\nwant\n%s", show([]eventstore.RecordedEvent{rec}), show([]eventstore.RecordedEvent{want}))
		}
	}

	f := newFeed()
	ch, err := f.Subscribe(e.ctx, "feedtest")
	e.must(err)
	m := recvOwn(ch)
	check(m, events[1]) // starts after the checkpoint
	m.Nack()
	// Redelivered at once, whatever else the feed holds...
	again := recv(ch)
	check(again, events[1])
	if again == m {
		t.Fatal("a redelivery reused the nacked message instance")
	}
	again.Ack()
	last := recvOwn(ch)
	check(last, events[2]) // ...and only then the next one

	// A second process on the same consumer waits for the lock.
	f2 := newFeed()
	ch2, err := f2.Subscribe(e.ctx, "feedtest")
	e.must(err)
	select {
	case m := <-ch2:
		t.Fatalf("second feed delivered %v while the first holds the consumer lock", m)
	case <-time.After(200 * time.Millisecond):
	}
	last.Ack()
	e.must(f.Close())
	if _, ok := <-ch; ok {
		t.Fatal("channel still open after Close")
	}
	e.must(f.Close()) // idempotent
	if _, err := f.Subscribe(e.ctx, "feedtest"); err == nil {
		t.Fatal("Subscribe after Close succeeded")
	}
	// The second feed takes over from the stored checkpoint (the feed itself never moves it).
	m = recvOwn(ch2)
	check(m, events[1])
	m.Ack()
	e.must(f2.Close())
}

// lockHolder records, for every event, whether its transaction runs on the connection
// that holds the consumer's advisory lock, and counts the events own says are the test's.
type lockHolder struct {
	own     func(eventstore.RecordedEvent) bool
	mu      sync.Mutex
	applied int
	fenced  int
	mine    int
}

func (*lockHolder) Name() string { return "lock_holder" }

func (l *lockHolder) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	var held bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
		AND pid = pg_backend_pid() AND granted)`).Scan(&held); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applied++
	if l.own(e.Record) {
		l.mine++
	}
	if held {
		l.fenced++
	}
	return nil
}

// TestConsumerWritesOnItsLockConnection: a consumer's transactions run on the connection
// that holds its lock, so they stop the moment the lock is lost, and consumers waiting on a
// checkpoint row never take connections from the pool.
func TestConsumerWritesOnItsLockConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(e.cmd.RegisterProvider(e.ctx, commands.RegisterProvider{Actor: operator, Code: e.acme, Name: "Acme", AllowSelfReset: true}))
	l := &lockHolder{own: e.own}
	e.runToHead(e.runner([]Projection{l}))
	l.mu.Lock()
	defer l.mu.Unlock()
	// Every event counts for the fencing, other tests' on EventStoreDB too.
	if l.mine != 2 || l.fenced != l.applied || (!e.shared && l.applied != 2) {
		t.Errorf("%d of %d transactions ran on the lock's connection (%d of this test's events, want 2)", l.fenced, l.applied, l.mine)
	}
}
