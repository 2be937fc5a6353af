// Package commands is the write side: one handler per command. Each loads the aggregates
// it needs by folding their streams (a user's from its snapshot on, see snapshot.go),
// asks the domain to decide, and appends the resulting events with the expected
// revision, retrying a bounded number of times on conflict.
// It never consults a read model for a security decision.
package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"selfreset/domain"
	"selfreset/eventstore"
)

// PasswordHasher hashes and verifies passwords (argon2id through password.Bounded in
// production). Both may wait for a free slot; when ctx ends first they return an error
// wrapping ctx.Err().
type PasswordHasher interface {
	Hash(ctx context.Context, password string) (string, error)
	// Verify reports whether password matches hash; an empty hash must still cost a
	// full verification so that unknown accounts are not faster to reject.
	Verify(ctx context.Context, password, hash string) (bool, error)
}

// Secrets derives tokens and codes (secret.Keyring in production).
type Secrets interface {
	Issue(kind string) (domain.Secret, error)
	Matcher(kind string) domain.SecretMatcher
	HashEmail(email string) string
}

// CommonPasswords recognises passwords from a common-password list.
type CommonPasswords interface {
	IsCommon(password string) bool
}

// Config wires a Handler.
type Config struct {
	Store   eventstore.Store
	Clock   domain.Clock
	Hasher  PasswordHasher
	Secrets Secrets
	Common  CommonPasswords
	Policy  domain.Policy
	Logger  *slog.Logger
	// MaxAttempts bounds load-decide-append rounds when another writer got there first.
	MaxAttempts int
	// Observer, when set, is told each command's outcome and duration (metrics).
	Observer Observer
	// Snapshots caches folded user states (see snapshot.go). Nil means the Store's own
	// when it implements eventstore.SnapshotStore; without one every load folds in full.
	Snapshots eventstore.SnapshotStore
}

// Handler runs commands.
type Handler struct {
	store   eventstore.Store
	codec   *domain.Codec
	clock   domain.Clock
	hasher  PasswordHasher
	secrets Secrets
	common  CommonPasswords
	policy  domain.Policy
	log     *slog.Logger
	tries   int
	obs     Observer
	snaps   *snapshots
	provs   *memory[domain.Provider]
	users   *memory[userFold]
}

// ErrTooMuchContention means every attempt lost the optimistic-concurrency race.
var ErrTooMuchContention = errors.New("commands: too much contention on the stream; try again")

// New builds a Handler.
func New(c Config) *Handler {
	if c.Clock == nil {
		c.Clock = domain.SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.Snapshots == nil {
		c.Snapshots, _ = c.Store.(eventstore.SnapshotStore)
	}
	return &Handler{store: c.Store, codec: domain.NewCodec(), clock: c.Clock, hasher: c.Hasher, secrets: c.Secrets,
		common: c.Common, policy: c.Policy, log: c.Logger, tries: c.MaxAttempts, obs: c.Observer,
		snaps: newSnapshots(c.Snapshots, c.Logger), provs: newProviderMemory(), users: newUserMemory()}
}

// Codec is the handler's codec (for readers of the same store).
func (h *Handler) Codec() *domain.Codec { return h.codec }

// Policy is the rules the handler enforces.
func (h *Handler) Policy() domain.Policy { return h.policy }

// Now is the handler's clock reading.
func (h *Handler) Now() time.Time { return h.clock.Now() }

// ---- request metadata ----

type metaKey struct{}

// WithMetadata attaches request metadata (correlation id, client IP, user agent) to ctx;
// every event appended under ctx carries it.
func WithMetadata(ctx context.Context, md eventstore.Metadata) context.Context {
	return context.WithValue(ctx, metaKey{}, md)
}

// RequestMetadata is the metadata WithMetadata attached to ctx (zero if none).
func RequestMetadata(ctx context.Context) eventstore.Metadata {
	md, _ := ctx.Value(metaKey{}).(eventstore.Metadata)
	return md
}

func metadataFrom(ctx context.Context, actor string) eventstore.Metadata {
	md, _ := ctx.Value(metaKey{}).(eventstore.Metadata)
	md.Actor = actor
	if md.CorrelationID == "" {
		md.CorrelationID = uuid.NewString()
	}
	if md.CausationID == "" {
		md.CausationID = md.CorrelationID
	}
	return md
}

// ---- command ids (redelivered intake messages) ----

type commandIDKey struct{}

// WithCommandID makes the events appended under ctx take ids derived from id (an intake
// message's id) instead of random ones. A redelivered command then finds its decision
// already on the user stream and stops (ErrAlreadyDecided), and an append it repeats
// elsewhere carries the same ids, which the store's idempotent append drops.
func WithCommandID(ctx context.Context, id uuid.UUID) context.Context {
	return context.WithValue(ctx, commandIDKey{}, id)
}

func commandID(ctx context.Context) (uuid.UUID, bool) {
	id, ok := ctx.Value(commandIDKey{}).(uuid.UUID)
	return id, ok
}

// EventID is the id of the i-th event a command with id cmd appends to stream.
func EventID(cmd uuid.UUID, stream string, i int) uuid.UUID {
	return uuid.NewSHA1(cmd, []byte(stream+"/"+strconv.Itoa(i)))
}

// ErrAlreadyDecided means the command under WithCommandID was decided before: its first
// event is on the stream already. Nothing was appended; the delivery is a duplicate.
var ErrAlreadyDecided = errors.New("commands: this command was already decided")

// ---- loading and appending ----

// loaded is an aggregate's state plus the revision it was folded up to.
type loaded struct {
	exists   bool
	revision uint64
	decided  bool // the stream holds the first event of ctx's command id
}

func (l loaded) expected() eventstore.ExpectedRevision {
	if !l.exists {
		return eventstore.NoStream
	}
	return eventstore.Exact(l.revision)
}

// streamReader reads a stream from a revision on, and tells whether it has read a whole
// stream already (a unit, unit.readAhead), so that folding it from the start costs no read.
type streamReader interface {
	ReadStream(ctx context.Context, stream string, from uint64) ([]eventstore.RecordedEvent, error)
	readWhole(stream string) bool
}

// foldFrom applies the events of stream from revision from on, read with r. seen are the
// ids of the events before from that a snapshot remembers (for the command-id check); the
// ids of the events read are returned after them.
func (h *Handler) foldFrom(ctx context.Context, r streamReader, stream string, from uint64, seen []uuid.UUID, apply func(domain.Event)) (l loaded, ids []uuid.UUID, err error) {
	recs, err := r.ReadStream(ctx, stream, from)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return loaded{}, nil, nil
	}
	if err != nil {
		return loaded{}, nil, fmt.Errorf("read %s: %w", stream, err)
	}
	return h.foldRecords(ctx, stream, from, seen, recs, apply)
}

// foldRecords is foldFrom on events read already: recs, those of a stream that exists
// from revision from on.
func (h *Handler) foldRecords(ctx context.Context, stream string, from uint64, seen []uuid.UUID, recs []eventstore.RecordedEvent, apply func(domain.Event)) (l loaded, ids []uuid.UUID, err error) {
	cmd, hasCmd := commandID(ctx)
	first := EventID(cmd, stream, 0)
	decided := hasCmd && slices.Contains(seen, first)
	ids = slices.Grow(slices.Clip(seen), len(recs))
	for _, r := range recs {
		decided = decided || (hasCmd && r.ID == first)
		v, err := h.codec.DecodeRecorded(r)
		if err != nil {
			return loaded{}, nil, fmt.Errorf("read %s at revision %d: %w", stream, r.Revision, err)
		}
		apply(v)
		ids = append(ids, r.ID)
	}
	l = loaded{exists: from > 0 || len(recs) > 0, decided: decided}
	switch {
	case len(recs) > 0:
		l.revision = recs[len(recs)-1].Revision
	case from > 0:
		l.revision = from - 1
	}
	return l, ids, nil
}

// LoadProvider folds a provider's stream (from the handler's memory, reading only the
// events after it).
func (h *Handler) LoadProvider(ctx context.Context, code string) (domain.Provider, error) {
	p, _, err := h.unit().provider(ctx, code)
	return p, err
}

// LoadUser folds a user's stream; Registered is false when there is no such user.
func (h *Handler) LoadUser(ctx context.Context, code, login string) (domain.User, error) {
	u, _, err := h.unit().user(ctx, code, login)
	return u, err
}

// append encodes events and appends them to stream under expected.
func (h *Handler) append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, actor string, events []domain.Event) error {
	_, err := h.appendResult(ctx, stream, expected, actor, events)
	return err
}

// appendResult is append, telling where the events landed (zero when there were none).
func (h *Handler) appendResult(ctx context.Context, stream string, expected eventstore.ExpectedRevision, actor string, events []domain.Event) (eventstore.AppendResult, error) {
	if len(events) == 0 {
		return eventstore.AppendResult{}, nil
	}
	data, err := h.encode(ctx, stream, actor, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	res, err := h.write(ctx, stream, expected, data)
	if err != nil {
		return res, fmt.Errorf("append to %s: %w", stream, err)
	}
	return res, nil
}

// write appends data to stream. An append that expects nothing (unmatched requests,
// failed sign-ins) goes through the store's Update when it has one, reading nothing:
// appends and decisions made at the same time then share a transaction (the Postgres
// store's group commit). A redelivered command's events are stored already: Update
// refuses their ids (ErrConflict), and Append, which skips stored ids, answers them.
func (h *Handler) write(ctx context.Context, stream string, expected eventstore.ExpectedRevision, data []eventstore.EventData) (eventstore.AppendResult, error) {
	up, ok := h.store.(eventstore.Updater)
	if !ok || !expected.IsAny() {
		return h.store.Append(ctx, stream, expected, data...)
	}
	// From past any revision: the stream's events are not read.
	res, err := up.Update(ctx, stream, math.MaxUint64, nil, func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error) {
		return data, nil
	})
	if errors.Is(err, eventstore.ErrConflict) {
		return h.store.Append(ctx, stream, expected, data...)
	}
	return res, err
}

// encode makes events ready for stream: ids (derived from ctx's command id when it has
// one), the clock's time and ctx's metadata.
func (h *Handler) encode(ctx context.Context, stream, actor string, events []domain.Event) ([]eventstore.EventData, error) {
	md := metadataFrom(ctx, actor)
	now := h.clock.Now()
	data := make([]eventstore.EventData, 0, len(events))
	cmd, hasCmd := commandID(ctx)
	for i, e := range events {
		typ, ver, raw, err := h.codec.Encode(e)
		if err != nil {
			return nil, err
		}
		id := uuid.New()
		if hasCmd {
			id = EventID(cmd, stream, i)
		}
		data = append(data, eventstore.EventData{ID: id, Type: typ, SchemaVersion: ver, OccurredAt: now, Data: raw, Metadata: md})
	}
	return data, nil
}

// userDecision decides on a user, given the provider it belongs to.
type userDecision func(u domain.User, p domain.Provider) ([]domain.Event, error)

// updateUser is load → decide → append for one user stream, retried on conflict. Events
// the decision returns are appended even when it also returns a refusal (a wrong token
// is recorded and refused); the refusal is then returned. The provider is folded once
// per command: it is read, not guarded (only the user's stream is appended to).
func (un *unit) updateUser(ctx context.Context, actor, code, login string, decide userDecision) error {
	return un.retry(func() (error, error) { return un.attemptUser(ctx, actor, code, login, decide) })
}

// attemptUser is one attempt of updateUser.
func (un *unit) attemptUser(ctx context.Context, actor, code, login string, decide userDecision) (err, refusal error) {
	if err := un.readAhead(ctx, code, login); err != nil {
		return err, nil
	}
	p, _, err := un.provider(ctx, code)
	if err != nil {
		return err, nil
	}
	u, l, err := un.user(ctx, code, login)
	if err != nil {
		return err, nil
	}
	if l.decided {
		return ErrAlreadyDecided, nil
	}
	events, refusal := decide(u, p)
	return un.appendUser(ctx, code, login, l.expected(), actor, events), refusal
}

// decideUser is updateUser for decisions that wait on nothing (no password hashing):
// on an account the handler remembers, with a store that can (eventstore.Updater), the
// first attempt reads and appends under the stream's lock, in the round trips of the
// append alone (unit.updateLocked). A decision that hashes must not hold the lock so long.
func (un *unit) decideUser(ctx context.Context, actor, code, login string, decide userDecision) error {
	locked := true
	return un.retry(func() (error, error) {
		if locked {
			locked = false
			if err, refusal, done := un.updateLocked(ctx, actor, code, login, decide); done {
				return err, refusal
			}
		}
		return un.attemptUser(ctx, actor, code, login, decide)
	})
}

// updateProvider is the same for a provider stream.
func (un *unit) updateProvider(ctx context.Context, actor, code string, decide func(p domain.Provider) ([]domain.Event, error)) error {
	return un.retry(func() (error, error) {
		p, l, err := un.provider(ctx, code)
		if err != nil {
			return err, nil
		}
		events, refusal := decide(p)
		return un.appendProvider(ctx, code, l.expected(), actor, events), refusal
	})
}

// retry runs attempt again while its append conflicts (the unit has forgotten the
// conflicting stream, so the next attempt folds it afresh), at most tries times. An
// attempt that does not conflict ends it with its error, else with the decision's refusal.
func (un *unit) retry(attempt func() (err, refusal error)) error {
	for range un.h.tries {
		err, refusal := attempt()
		if errors.Is(err, eventstore.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		return refusal
	}
	return ErrTooMuchContention
}

// recordUnmatched writes a request that matched no account (code and login, as
// attempted) to its shard of the unmatched-requests streams, chosen by a keyed hash of
// the attempt (the keyring's email hash over "code/login": any keyed hash serves), so that
// unmatched requests do not all wait for one stream's lock.
func (h *Handler) recordUnmatched(ctx context.Context, code, login string, e domain.Event) error {
	stream := domain.UnmatchedShard(h.secrets.HashEmail(code + "/" + login))
	return h.append(ctx, stream, eventstore.Any, domain.ActorAnonymous, []domain.Event{e})
}
