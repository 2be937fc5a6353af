package commands

import (
	"context"
	"errors"
	"maps"
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
		return un.h.loadUser(ctx, stream)
	})
}

// provider is the provider's fold, from this command's view or the handler's cache.
func (un *unit) provider(ctx context.Context, code string) (domain.Provider, loaded, error) {
	if !domain.ValidProviderCode(domain.NormalizeProviderCode(code)) {
		return domain.Provider{}, loaded{}, nil
	}
	return un.providers.get(domain.ProviderStream(code), func(stream string) (domain.Provider, loaded, error) {
		return un.h.provs.load(ctx, un.h, stream)
	})
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
		p.UserAdmins = maps.Clone(p.UserAdmins) // the fold may share it with the handler's cache
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

// userFolds is the handler's memory of the accounts it loaded last: each one's fold, its
// revision and the ids of its last events. A load then reads only the events after it
// (usually none or one), as current as a full fold whatever other replicas appended, as
// the provider cache does: without it every command read the stored snapshot and decoded
// its JSON before reading the same tail. The snapshot store stays the durable cache, for
// accounts not held here and for other processes.
type userFolds struct {
	mu       sync.Mutex
	byStream map[string]userFold
}

// userFold is one remembered account. Its user is never handed out: get clones it.
type userFold struct {
	user     domain.User
	l        loaded
	recent   []uuid.UUID // the last recentIDsKept event ids, for the command-id check
	snapshot int         // events folded beyond the newest snapshot written
}

// maxRememberedUsers bounds the memory (a fold with its ids is 2–3 KB); past it an
// account is forgotten to make room, and its next load reads its snapshot again.
const maxRememberedUsers = 512

func newUserFolds() *userFolds { return &userFolds{byStream: map[string]userFold{}} }

func (c *userFolds) get(stream string) (userFold, bool) {
	c.mu.Lock()
	f, ok := c.byStream[stream]
	c.mu.Unlock()
	f.user = f.user.Clone()
	return f, ok
}

// put remembers a fold unless a newer one of the stream is remembered already.
func (c *userFolds) put(stream string, u domain.User, l loaded, ids []uuid.UUID, snapshot int) {
	if len(ids) > recentIDsKept {
		ids = ids[len(ids)-recentIDsKept:]
	}
	f := userFold{user: u.Clone(), l: l, recent: slices.Clone(ids), snapshot: snapshot}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.byStream[stream]
	if ok && cur.l.revision >= l.revision {
		return
	}
	if !ok && len(c.byStream) >= maxRememberedUsers {
		for k := range c.byStream { // an arbitrary one: map order is random
			delete(c.byStream, k)
			break
		}
	}
	c.byStream[stream] = f
}

func (c *userFolds) forget(stream string) {
	c.mu.Lock()
	delete(c.byStream, stream)
	c.mu.Unlock()
}

// loadUser folds the account: from userFolds when it remembers it, else from its stored
// snapshot (or in full); then only the events after that.
func (h *Handler) loadUser(ctx context.Context, stream string) (domain.User, loaded, error) {
	if f, ok := h.users.get(stream); ok {
		u := f.user
		l, ids, err := h.foldFrom(ctx, stream, f.l.revision+1, f.recent, u.Apply)
		if err != nil {
			return domain.User{}, loaded{}, err
		}
		if l.exists {
			since := h.snaps.maybeWrite(ctx, stream, u, l, ids, f.snapshot+len(ids)-len(f.recent))
			h.users.put(stream, u, l, ids, since)
			return u, l, nil
		}
		h.users.forget(stream) // the stream is gone: fold what there is
	}
	u, l, ids, since, err := h.snaps.loadUser(ctx, h, stream)
	if err == nil && l.exists && u.Registered {
		h.users.put(stream, u, l, ids, since)
	}
	return u, l, err
}

// providerCache keeps each provider's latest fold and its revision, shared by the
// handler's commands. A load reads only the stream's events after the cached revision
// (usually none), so it is as current as a full fold, whatever other replicas appended,
// at the cost of one read of the stream's tail instead of the whole stream.
type providerCache struct {
	mu   sync.Mutex
	byID map[string]view[domain.Provider]
}

// maxCachedProviders bounds the cache; providers are few (operators register them).
const maxCachedProviders = 1024

func newProviderCache() *providerCache {
	return &providerCache{byID: map[string]view[domain.Provider]{}}
}

func (c *providerCache) load(ctx context.Context, h *Handler, stream string) (domain.Provider, loaded, error) {
	c.mu.Lock()
	v, ok := c.byID[stream]
	c.mu.Unlock()
	p, from := domain.Provider{}, uint64(0)
	if ok {
		p, from = v.s, v.l.revision+1
		p.UserAdmins = maps.Clone(p.UserAdmins) // the cached fold stays as it was
	}
	l, _, err := h.foldFrom(ctx, stream, from, nil, p.Apply)
	if err != nil || !l.exists {
		return domain.Provider{}, loaded{}, err
	}
	c.mu.Lock()
	if cur, ok := c.byID[stream]; !ok || cur.l.revision < l.revision {
		if !ok && len(c.byID) >= maxCachedProviders {
			clear(c.byID)
		}
		keep := p
		keep.UserAdmins = maps.Clone(p.UserAdmins)
		c.byID[stream] = view[domain.Provider]{s: keep, l: l}
	}
	c.mu.Unlock()
	return p, l, nil
}
