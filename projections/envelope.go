// Package projections is the read side (DESIGN §2, §5): a Runner that feeds consumers from
// the event store's global feed, and the Postgres read models the admin list, token checks
// and analysts use.
//
// # Consumers
//
// Each consumer runs in one goroutine of its own (Runner.consume). A session takes the
// consumer's Postgres advisory lock on a connection of its own, outside the pool, so that
// one replica feeds each consumer and the others wait to take over; it reads the
// checkpoint, follows the feed from there, and passes that connection explicitly to every
// step that writes (processBatch, process, park all take it as a parameter). Nothing else
// uses the connection: writes stop the moment the lock is lost, and the session pings it
// while the feed is quiet.
//
// watermill is used where it carries weight: its Retry and Recoverer middlewares, with
// this package's attempt counting and parking, are composed per session around a closure
// over the connection (Runner.eventHandler), and a batch is retried with the same Retry.
// There is no Router or Subscriber here: a Subscriber hands messages to the Router's
// goroutine, so the lock's connection would have to travel with each message and be
// handed back after its ack, which is the hidden ownership this layout removes. What a
// Router would add beyond the middlewares (fan-out to subscribers, acks, publishing)
// nothing here uses. The command intake (package reset) does use a Router: there watermill
// owns the queue.
//
// # Exactly once
//
// Each consumer has a checkpoint row in projection_checkpoints. For every batch of events
// (up to FeedConfig.BatchSize, what has arrived) the Runner opens a transaction, locks that
// row (SELECT … FOR UPDATE), skips the events the checkpoint already covers, calls the
// consumer's Apply with the transaction for the others and moves the checkpoint
// (compare-and-set on the previous position) before committing. A crash, a retry, a
// redelivery or a replay therefore never applies an event twice, and never skips one: the
// checkpoint and the read-model change commit together or not at all.
//
// # Failures
//
// A batch that fails is rolled back and its events are applied one at a time. A failing
// Apply is retried with jittered exponential backoff. After the last attempt, or at once
// for an event the codec cannot decode, the event is parked: recorded in parked_events,
// logged, counted, and the checkpoint moves past it in the same transaction, so one bad
// event never stalls a read model. Parked events are for an operator to look at; a Rebuild
// after the fix applies them. Failures that are not the event's (the database, the
// connection) are never parked: the event is tried again after FeedConfig.RedeliveryDelay.
//
// # Rebuild
//
// Rebuild replays the whole history into shadow copies of a read model's tables in a schema
// of its own while the service keeps serving, then, holding the live consumer's checkpoint
// row, applies the last few events, replaces the live tables' contents and sets the
// checkpoint, all in one transaction. The live consumer then skips what the rebuild applied.
package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"selfreset/domain"
	"selfreset/eventstore"
)

// Envelope is one decoded event from the feed.
type Envelope struct {
	Record eventstore.RecordedEvent
	Event  domain.Event
}

// Projection is a consumer that applies events inside the runner's transaction.
type Projection interface {
	Name() string // consumer name: checkpoint key and advisory-lock key
	Apply(ctx context.Context, tx pgx.Tx, e Envelope) error
}

// ReadModel is a Projection whose whole state lives in its own tables, so it can be
// rebuilt from the history. Apply must name its tables unqualified (Rebuild points the
// search_path at the shadow schema), touch no other tables, and be deterministic: the rows
// it writes depend only on the events (domain times, never now()), so that a rebuild
// reproduces the live tables row for row. Its Exec calls may be pipelined: Apply must not
// rely on their command tags (rows affected), and a failed write may surface at a later
// call. Consumers with effects outside the database (the mailer) are Projections, never
// ReadModels: Rebuild refuses them.
type ReadModel interface {
	Projection
	// Tables lists the tables the model owns (unqualified names).
	Tables() []string
}

// WriteOnly is a Projection whose Apply, like a ReadModel's, only writes and never relies
// on its Exec calls' command tags (a failed write may surface at a later call), so the
// Runner pipelines its writes too. The mailer's intake is one: its cap on error mails is
// decided by the INSERT itself.
type WriteOnly interface {
	Projection
	WritesOnly()
}

// Metadata keys set on every message of the feed.
const (
	MetaType     = "type"
	MetaStream   = "stream"
	MetaRevision = "revision"
	MetaPosition = "position" // "commit/prepare"
)

// NewMessage turns a recorded event into a watermill message: UUID is the event id, the
// payload is the JSON of the record (eventstore.RecordedEvent as encoding/json writes it;
// only RecordFromMessage reads it), and the metadata names type, stream, revision and
// position. Each call returns a new message instance (a redelivery needs a fresh one).
func NewMessage(r eventstore.RecordedEvent) (*message.Message, error) {
	payload, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("projections: encode event %s: %w", r.ID, err)
	}
	msg := message.NewMessage(r.ID.String(), payload)
	msg.Metadata.Set(MetaType, r.Type)
	msg.Metadata.Set(MetaStream, r.Stream)
	msg.Metadata.Set(MetaRevision, strconv.FormatUint(r.Revision, 10))
	msg.Metadata.Set(MetaPosition, r.Position.String())
	return msg, nil
}

// RecordFromMessage reads the recorded event back out of a feed message.
func RecordFromMessage(msg *message.Message) (eventstore.RecordedEvent, error) {
	var r eventstore.RecordedEvent
	if err := json.Unmarshal(msg.Payload, &r); err != nil {
		return eventstore.RecordedEvent{}, fmt.Errorf("projections: message %s: %w", msg.UUID, err)
	}
	return r, nil
}
