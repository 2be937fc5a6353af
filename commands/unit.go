package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/uuid"

	"selfreset/domain"
	"selfreset/eventstore"
)

// unit is one command's view of the streams it touches. Each stream is folded once per
// command: later steps of the same command (the actor's refresh, a precheck, the
// provider's count, the failed-login lock) reuse the fold, and an append the unit makes
// moves its view on without reading the stream again. The view is never trusted across
// commands: a stream whose append conflicted is forgotten and folded afresh.
type unit struct {
	h         *Handler
	users     views[domain.User]
	providers views[domain.Provider]
	ahead     map[string]readAheadTail // tails read before their folds asked (readAhead)
}

// readAheadTail is a stream's tail from revision from on, read by readAhead; whole when
// it is the whole stream (or tells there is none).
type readAheadTail struct {
	from  uint64
	tail  eventstore.StreamTail
	whole bool
}

// view is the unit's fold of one stream: the state and what was read to build it.
type view[S any] struct {
	s S
	l loaded
}

// views are the unit's folds of one kind of stream, by stream name.
type views[S any] map[string]*view[S]

func (h *Handler) unit() *unit {
	return &unit{h: h, users: views[domain.User]{}, providers: views[domain.Provider]{}}
}

// user is the account's fold, from this command's view when it has one.
func (un *unit) user(ctx context.Context, code, login string) (domain.User, loaded, error) {
	code, login = domain.NormalizeProviderCode(code), domain.NormalizeLogin(login)
	if !domain.ValidProviderCode(code) || !domain.ValidLogin(login) {
		return domain.User{}, loaded{}, nil
	}
	return un.users.get(domain.UserStream(code, login), func(stream string) (domain.User, loaded, error) {
		return un.h.loadUser(ctx, un, stream)
	})
}

// provider is the provider's fold, from this command's view or the handler's cache.
func (un *unit) provider(ctx context.Context, code string) (domain.Provider, loaded, error) {
	if !domain.ValidProviderCode(domain.NormalizeProviderCode(code)) {
		return domain.Provider{}, loaded{}, nil
	}
	return un.providers.get(domain.ProviderStream(code), func(stream string) (domain.Provider, loaded, error) {
		return un.h.loadProvider(ctx, un, stream)
	})
}

// readAhead reads the provider's and the account's streams in one round trip
// (eventstore.ReadStreams), so that the two folds a decision starts with find them read:
// from the handler's memory of each on, or from the start. An account read from the
// start that turns out longer than wholeAhead events is folded from its snapshot as
// before; a shorter one, or none (an unknown login), costs no further read. Each tail is
// used once, and only by a fold from the same revision. With a store that reads one
// stream at a time it reads nothing: the folds would make the same reads.
func (un *unit) readAhead(ctx context.Context, code, login string) error {
	if _, batched := un.h.store.(eventstore.StreamsReader); !batched {
		return nil
	}
	ps, us, ok := un.unfolded(code, login)
	if !ok {
		return nil
	}
	reads := []eventstore.StreamRead{{Stream: ps}, {Stream: us, Max: wholeAhead}}
	if rev, ok := un.h.users.revision(us); ok {
		reads[1] = eventstore.StreamRead{Stream: us, From: rev + 1}
	}
	if rev, ok := un.h.provs.revision(ps); ok {
		reads[0].From = rev + 1
	}
	tails, err := eventstore.ReadStreams(ctx, un.h.store, reads)
	if err != nil {
		return fmt.Errorf("read %s and %s: %w", ps, us, err)
	}
	if un.ahead == nil {
		un.ahead = make(map[string]readAheadTail, len(reads))
	}
	for i, r := range reads {
		un.ahead[r.Stream] = readAheadTail{from: r.From, tail: tails[i], whole: r.From == 0 && (r.Max == 0 || len(tails[i].Events) < r.Max)}
	}
	return nil
}

// unfolded names the provider's and the account's streams when neither is folded in
// this unit yet (ok false when one is, or when code or login cannot name an account).
func (un *unit) unfolded(code, login string) (providerStream, userStream string, ok bool) {
	code, login = domain.NormalizeProviderCode(code), domain.NormalizeLogin(login)
	if !domain.ValidProviderCode(code) || !domain.ValidLogin(login) {
		return "", "", false
	}
	providerStream, userStream = domain.ProviderStream(code), domain.UserStream(code, login)
	_, haveP := un.providers[providerStream]
	_, haveU := un.users[userStream]
	return providerStream, userStream, !haveP && !haveU
}

// updateLocked is an attempt of decideUser inside eventstore.Updater.Update: the
// account's tail (after the handler's memory of it) and the provider's are read under the
// account's lock, folded onto the remembered folds, the decision taken on them, and its
// events appended in the same transaction. Nothing in between touches the store: the
// connections other decisions hold while they wait for the same lock could be all there
// are. done is false when it cannot be used: the store is no Updater, the account is
// not remembered (it may not exist: an unknown login records elsewhere), or this unit
// has folded either stream already. A conflict (an id stored already, after a
// redelivery older than the ids the fold keeps) is left to the next attempt, which
// appends the usual way and answers such a retry.
func (un *unit) updateLocked(ctx context.Context, actor, code, login string, decide userDecision) (err, refusal error, done bool) {
	up, ok := un.h.store.(eventstore.Updater)
	if !ok {
		return nil, nil, false
	}
	ps, us, ok := un.unfolded(code, login)
	if !ok {
		return nil, nil, false
	}
	f, rev, remembered := un.h.users.get(us)
	if !remembered {
		return nil, nil, false
	}
	prov, prev, provRemembered := un.h.provs.get(ps)
	provider := eventstore.StreamRead{Stream: ps}
	if provRemembered {
		provider.From = prev + 1
	}
	var (
		events []domain.Event
		after  userAfter // the fold the decision was taken on, and what it appended
	)
	res, err := up.Update(ctx, us, rev+1, []eventstore.StreamRead{provider},
		func(tail eventstore.StreamTail, also []eventstore.StreamTail) ([]eventstore.EventData, error) {
			if !tail.Found {
				return nil, errFoldElsewhere // the stream is gone: fold what there is
			}
			u := f.user
			l, ids, err := un.h.foldRecords(ctx, us, rev+1, f.recent, tail.Events, u.Apply)
			if err != nil {
				return nil, err
			}
			read := un.h.snaps.maybeWrite(ctx, us, u, l, ids, f.snapshot+len(ids)-len(f.recent))
			un.h.rememberUser(us, u, l, ids, read)
			after = userAfter{user: u, l: l, ids: ids, read: read}
			p, pl := domain.Provider{}, loaded{}
			if also[0].Found {
				if pl, _, err = un.h.foldRecords(ctx, ps, provider.From, nil, also[0].Events, prov.Apply); err != nil {
					return nil, err
				}
				p = prov
				un.h.provs.put(ps, p, pl.revision)
			}
			un.users[us] = &view[domain.User]{s: u, l: l}
			un.providers[ps] = &view[domain.Provider]{s: p, l: pl}
			if l.decided {
				return nil, ErrAlreadyDecided
			}
			events, refusal = decide(u, p)
			if len(events) == 0 {
				return nil, nil
			}
			after.appended, err = un.h.encode(ctx, us, actor, events)
			return after.appended, err
		})
	if errors.Is(err, errFoldElsewhere) {
		return nil, nil, false
	}
	if err != nil {
		err = fmt.Errorf("update %s: %w", us, err)
	} else {
		un.h.rememberAppended(ctx, us, after, res)
	}
	return un.users.appended(us, res, err, len(events), func(u *domain.User) {
		for _, e := range events {
			u.Apply(e)
		}
	}), refusal, true
}

// userAfter is what an Update's decision folded and appended (updateLocked).
type userAfter struct {
	user     domain.User
	l        loaded
	ids      []uuid.UUID
	read     int // events folded since the last snapshot
	appended []eventstore.EventData
}

// rememberAppended moves the handler's memory of an account past what a decision
// appended to it, when the append landed right after the fold it was decided on: the
// events are folded as a reader would fold them (decoded from the data written), so the
// next command on the account starts at the head it left, and an Update can decide it
// in one round trip (eventstore/postgres: heads.go) instead of reading that event back.
func (h *Handler) rememberAppended(ctx context.Context, stream string, a userAfter, res eventstore.AppendResult) {
	if len(a.appended) == 0 || !follows(a.l, res, len(a.appended)) {
		return
	}
	first := res.NextRevision + 1 - uint64(len(a.appended))
	recs := make([]eventstore.RecordedEvent, len(a.appended))
	for i, e := range a.appended {
		recs[i] = eventstore.RecordedEvent{ID: e.ID, Type: e.Type, SchemaVersion: e.SchemaVersion, Stream: stream,
			Revision: first + uint64(i), OccurredAt: e.OccurredAt, Data: e.Data, Metadata: e.Metadata}
	}
	u := a.user.Clone()
	l, ids, err := h.foldRecords(ctx, stream, first, a.ids, recs, u.Apply)
	if err != nil {
		h.users.forget(stream) // not reached: these events were just encoded
		return
	}
	h.rememberUser(stream, u, l, ids, a.read+len(recs))
}

// errFoldElsewhere ends an updateLocked whose account cannot be folded under the lock.
var errFoldElsewhere = errors.New("commands: fold the account the usual way")

// wholeAhead is how many events of an account not remembered readAhead reads from the
// start. An account with fewer is folded from them; a longer one from its snapshot and at
// most as many events again (snapshotEvery), which then spares decoding the rest.
const wholeAhead = snapshotEvery

// readWhole is streamReader: whether readAhead read all of stream, and the tail waits.
func (un *unit) readWhole(stream string) bool {
	a, ok := un.ahead[stream]
	return ok && a.whole
}

// ReadStream is streamReader: the tail readAhead read for the same revision, once, else
// the store's.
func (un *unit) ReadStream(ctx context.Context, stream string, from uint64) ([]eventstore.RecordedEvent, error) {
	if a, ok := un.ahead[stream]; ok {
		delete(un.ahead, stream)
		if a.from == from {
			if !a.tail.Found {
				return nil, fmt.Errorf("read %s: %w", stream, eventstore.ErrStreamNotFound)
			}
			return a.tail.Events, nil
		}
	}
	return un.h.store.ReadStream(ctx, stream, from)
}

// get is stream's fold from the view, or load's, which the view then keeps.
func (vs views[S]) get(stream string, load func(stream string) (S, loaded, error)) (S, loaded, error) {
	if v, ok := vs[stream]; ok {
		return v.s, v.l, nil
	}
	s, l, err := load(stream)
	if err != nil {
		var zero S
		return zero, loaded{}, err
	}
	vs[stream] = &view[S]{s: s, l: l}
	return s, l, nil
}

// appendUser appends events to the account's stream under expected and moves the view
// on (see views.appended).
func (un *unit) appendUser(ctx context.Context, code, login string, expected eventstore.ExpectedRevision, actor string, events []domain.Event) error {
	stream := domain.UserStream(code, login)
	res, err := un.h.appendResult(ctx, stream, expected, actor, events)
	return un.users.appended(stream, res, err, len(events), func(u *domain.User) {
		for _, e := range events {
			u.Apply(e)
		}
	})
}

// appendProvider is appendUser for a provider stream.
func (un *unit) appendProvider(ctx context.Context, code string, expected eventstore.ExpectedRevision, actor string, events []domain.Event) error {
	stream := domain.ProviderStream(code)
	res, err := un.h.appendResult(ctx, stream, expected, actor, events)
	return un.providers.appended(stream, res, err, len(events), func(p *domain.Provider) {
		for _, e := range events {
			p.Apply(e)
		}
	})
}

// appended takes in the outcome (res, err) of appending n events to stream: when it can
// tell the stream holds nothing but the view and those events, apply moves the view on;
// otherwise (a conflict, or another writer's events in between) the view is forgotten,
// so the next load folds the stream afresh. It returns err.
func (vs views[S]) appended(stream string, res eventstore.AppendResult, err error, n int, apply func(*S)) error {
	v, ok := vs[stream]
	switch {
	case err != nil || n == 0:
		if errors.Is(err, eventstore.ErrConflict) {
			delete(vs, stream)
		}
		return err
	case ok && follows(v.l, res, n):
		apply(&v.s)
		v.l = loaded{exists: true, revision: res.NextRevision}
	default:
		delete(vs, stream)
	}
	return nil
}

// follows reports whether n events appended after a fold at l landed right after it.
func follows(l loaded, res eventstore.AppendResult, n int) bool {
	if !l.exists {
		return res.NextRevision == uint64(n-1)
	}
	return res.NextRevision == l.revision+uint64(n)
}

// memory keeps the latest fold of each stream of one kind that a handler loaded, shared
// by its commands. A load then reads only the stream's events after the remembered
// revision (usually none or one), so it is as current as a full fold, whatever other
// replicas appended, at the cost of one read of the stream's tail. It is bounded: past max
// an arbitrary stream is forgotten to make room. Folds are cloned in and out, so a
// command moving its copy on never touches the remembered one.
type memory[S any] struct {
	mu       sync.Mutex
	max      int
	clone    func(S) S
	byStream map[string]remembered[S]
}

type remembered[S any] struct {
	s        S
	revision uint64
}

func newMemory[S any](max int, clone func(S) S) *memory[S] {
	return &memory[S]{max: max, clone: clone, byStream: map[string]remembered[S]{}}
}

// get returns a copy of the stream's remembered fold and its revision.
func (m *memory[S]) get(stream string) (S, uint64, bool) {
	m.mu.Lock()
	r, ok := m.byStream[stream]
	m.mu.Unlock()
	if !ok {
		return r.s, 0, false
	}
	return m.clone(r.s), r.revision, true
}

// revision returns the revision of the stream's remembered fold, without copying it.
func (m *memory[S]) revision(stream string) (uint64, bool) {
	m.mu.Lock()
	r, ok := m.byStream[stream]
	m.mu.Unlock()
	return r.revision, ok
}

// put remembers a copy of s at revision unless a newer fold of the stream is remembered.
func (m *memory[S]) put(stream string, s S, revision uint64) {
	r := remembered[S]{s: m.clone(s), revision: revision}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.byStream[stream]
	if ok && cur.revision >= revision {
		return
	}
	if !ok && len(m.byStream) >= m.max {
		for k := range m.byStream { // an arbitrary one: map order is random
			delete(m.byStream, k)
			break
		}
	}
	m.byStream[stream] = r
}

func (m *memory[S]) forget(stream string) {
	m.mu.Lock()
	delete(m.byStream, stream)
	m.mu.Unlock()
}

// The bounds of a handler's memories. A user's fold with its ids is 2–3 KB; one forgotten
// is loaded from its snapshot again. Providers are few (operators register them).
const (
	maxRememberedUsers     = 512
	maxRememberedProviders = 1024
)

// userFold is what the handler remembers of an account: besides the fold, the ids of its
// last events (for the command-id check) and how many events it holds beyond the newest
// snapshot written. Without it every command read the stored snapshot and decoded its
// JSON before reading the same tail; the snapshot store stays the durable cache, for
// accounts not remembered and for other processes.
type userFold struct {
	user     domain.User
	recent   []uuid.UUID // the last recentIDsKept event ids; never appended to in place
	snapshot int
}

func newUserMemory() *memory[userFold] {
	return newMemory(maxRememberedUsers, func(f userFold) userFold {
		f.user = f.user.Clone()
		return f
	})
}

func newProviderMemory() *memory[domain.Provider] {
	return newMemory(maxRememberedProviders, domain.Provider.Clone)
}

// rememberUser keeps the account's fold at l with the ids of its last events.
func (h *Handler) rememberUser(stream string, u domain.User, l loaded, ids []uuid.UUID, snapshot int) {
	if len(ids) > recentIDsKept {
		ids = ids[len(ids)-recentIDsKept:]
	}
	h.users.put(stream, userFold{user: u, recent: slices.Clone(ids), snapshot: snapshot}, l.revision)
}

// loadUser folds the account: from the handler's memory when it has it, else from its
// stored snapshot (or in full); then only the events after that.
func (h *Handler) loadUser(ctx context.Context, r streamReader, stream string) (domain.User, loaded, error) {
	if f, revision, ok := h.users.get(stream); ok {
		u := f.user
		l, ids, err := h.foldFrom(ctx, r, stream, revision+1, f.recent, u.Apply)
		if err != nil {
			return domain.User{}, loaded{}, err
		}
		if l.exists {
			h.rememberUser(stream, u, l, ids, h.snaps.maybeWrite(ctx, stream, u, l, ids, f.snapshot+len(ids)-len(f.recent)))
			return u, l, nil
		}
		h.users.forget(stream) // the stream is gone: fold what there is
	}
	var (
		u     domain.User
		l     loaded
		ids   []uuid.UUID
		since int
		err   error
	)
	if r.readWhole(stream) { // no snapshot to read: the whole stream is here
		if l, ids, err = h.foldFrom(ctx, r, stream, 0, nil, u.Apply); err == nil {
			since = h.snaps.maybeWrite(ctx, stream, u, l, ids, len(ids))
		}
	} else {
		u, l, ids, since, err = h.snaps.loadUser(ctx, h, r, stream)
	}
	if err == nil && l.exists && u.Registered {
		h.rememberUser(stream, u, l, ids, since)
	}
	return u, l, err
}

// loadProvider folds the provider from the handler's memory on, or in full.
func (h *Handler) loadProvider(ctx context.Context, r streamReader, stream string) (domain.Provider, loaded, error) {
	p, revision, ok := h.provs.get(stream)
	from := uint64(0)
	if ok {
		from = revision + 1
	}
	l, _, err := h.foldFrom(ctx, r, stream, from, nil, p.Apply)
	if err != nil || !l.exists {
		return domain.Provider{}, loaded{}, err
	}
	h.provs.put(stream, p, l.revision)
	return p, l, nil
}
