package commands

import (
	"context"
	"errors"
	"maps"
	"sync"

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
		return un.h.snaps.loadUser(ctx, un.h, stream)
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
