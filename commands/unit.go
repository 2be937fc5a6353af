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
	users     map[string]*userView
	providers map[string]*providerView
}

type userView struct {
	u domain.User
	l loaded
}

type providerView struct {
	p domain.Provider
	l loaded
}

func (h *Handler) unit() *unit {
	return &unit{h: h, users: map[string]*userView{}, providers: map[string]*providerView{}}
}

// user is the account's fold, from this command's view when it has one.
func (un *unit) user(ctx context.Context, code, login string) (domain.User, loaded, error) {
	code, login = domain.NormalizeProviderCode(code), domain.NormalizeLogin(login)
	if !domain.ValidProviderCode(code) || !domain.ValidLogin(login) {
		return domain.User{}, loaded{}, nil
	}
	stream := domain.UserStream(code, login)
	if v, ok := un.users[stream]; ok {
		return v.u, v.l, nil
	}
	u, l, err := un.h.snaps.loadUser(ctx, un.h, stream)
	if err != nil {
		return domain.User{}, loaded{}, err
	}
	un.users[stream] = &userView{u: u, l: l}
	return u, l, nil
}

// provider is the provider's fold, from this command's view or the handler's cache.
func (un *unit) provider(ctx context.Context, code string) (domain.Provider, loaded, error) {
	if !domain.ValidProviderCode(domain.NormalizeProviderCode(code)) {
		return domain.Provider{}, loaded{}, nil
	}
	stream := domain.ProviderStream(code)
	if v, ok := un.providers[stream]; ok {
		return v.p, v.l, nil
	}
	p, l, err := un.h.provs.load(ctx, un.h, stream)
	if err != nil {
		return domain.Provider{}, loaded{}, err
	}
	un.providers[stream] = &providerView{p: p, l: l}
	return p, l, nil
}

// appendUser appends events to the account's stream under expected and moves the view
// on when it can tell the stream holds nothing but the view and these events.
func (un *unit) appendUser(ctx context.Context, code, login string, expected eventstore.ExpectedRevision, actor string, events []domain.Event) error {
	stream := domain.UserStream(code, login)
	res, err := un.h.appendResult(ctx, stream, expected, actor, events)
	v, ok := un.users[stream]
	switch {
	case err != nil || len(events) == 0:
		if errors.Is(err, eventstore.ErrConflict) {
			delete(un.users, stream)
		}
		return err
	case ok && follows(v.l, res, len(events)):
		for _, e := range events {
			v.u.Apply(e)
		}
		v.l = loaded{exists: true, revision: res.NextRevision}
	default:
		delete(un.users, stream) // another writer's events came in between: fold afresh
	}
	return nil
}

// appendProvider is appendUser for a provider stream.
func (un *unit) appendProvider(ctx context.Context, code string, expected eventstore.ExpectedRevision, actor string, events []domain.Event) error {
	stream := domain.ProviderStream(code)
	res, err := un.h.appendResult(ctx, stream, expected, actor, events)
	v, ok := un.providers[stream]
	switch {
	case err != nil || len(events) == 0:
		if errors.Is(err, eventstore.ErrConflict) {
			delete(un.providers, stream)
		}
		return err
	case ok && follows(v.l, res, len(events)):
		v.p.UserAdmins = maps.Clone(v.p.UserAdmins) // the fold may share it with the handler's cache
		for _, e := range events {
			v.p.Apply(e)
		}
		v.l = loaded{exists: true, revision: res.NextRevision}
	default:
		delete(un.providers, stream)
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
	byID map[string]providerView
}

// maxCachedProviders bounds the cache; providers are few (operators register them).
const maxCachedProviders = 1024

func newProviderCache() *providerCache { return &providerCache{byID: map[string]providerView{}} }

func (c *providerCache) load(ctx context.Context, h *Handler, stream string) (domain.Provider, loaded, error) {
	c.mu.Lock()
	v, ok := c.byID[stream]
	c.mu.Unlock()
	p, from := domain.Provider{}, uint64(0)
	if ok {
		p, from = v.p, v.l.revision+1
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
		c.byID[stream] = providerView{p: keep, l: l}
	}
	c.mu.Unlock()
	return p, l, nil
}
