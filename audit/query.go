package audit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"selfreset/domain"
	"selfreset/eventstore"
)

// Filter selects the events of one provider's history. Empty fields select everything.
type Filter struct {
	Provider string // required, normalized
	Login    string // one user's stream, and the unmatched requests naming that login
	Type     string // the event type
	Actor    string // the metadata actor, e.g. user:ACME/ada or system:cli
	ClientIP string // the metadata client IP (compared as an address: 2001:db8::1 = 2001:DB8:0::1)
	Since    time.Time
	Until    time.Time // inclusive
}

// Params lists the filter as name=value pairs (those that are set), for the record of who
// read what.
func (f Filter) Params() map[string]string {
	out := map[string]string{"provider": f.Provider}
	for k, v := range map[string]string{"login": f.Login, "type": f.Type, "actor": f.Actor, "client_ip": f.ClientIP} {
		if v != "" {
			out[k] = v
		}
	}
	if !f.Since.IsZero() {
		out["since"] = f.Since.UTC().Format(time.RFC3339Nano)
	}
	if !f.Until.IsZero() {
		out["until"] = f.Until.UTC().Format(time.RFC3339Nano)
	}
	return out
}

// isUnmatched reports whether stream records requests that matched no account: they may
// name any provider, so Match looks at their data.
func isUnmatched(stream string) bool { return strings.HasPrefix(stream, domain.UnmatchedStream) }

// inHistory reports whether stream can hold events of f's provider (and login).
func (f Filter) inHistory(stream string) bool {
	if isUnmatched(stream) {
		return true
	}
	if f.Login != "" {
		return stream == domain.UserStream(f.Provider, f.Login)
	}
	if stream == domain.ProviderStream(f.Provider) || stream == domain.AuditLogStream(f.Provider) {
		return true
	}
	// Codes have no '-', so the prefix cannot match another provider's streams; the parse
	// also drops names this service would never write.
	code, _, err := domain.ParseUserStream(stream)
	return err == nil && code == f.Provider
}

// matchEnvelope applies the filters that need no decoding.
func (f Filter) matchEnvelope(e eventstore.RecordedEvent) bool {
	switch {
	case !f.inHistory(e.Stream),
		f.Type != "" && e.Type != f.Type,
		f.Actor != "" && e.Metadata.Actor != f.Actor,
		f.ClientIP != "" && !sameIP(e.Metadata.ClientIP, f.ClientIP),
		!f.Since.IsZero() && e.OccurredAt.Before(f.Since),
		!f.Until.IsZero() && e.OccurredAt.After(f.Until):
		return false
	}
	return true
}

func sameIP(a, b string) bool {
	x, errA := netip.ParseAddr(a)
	y, errB := netip.ParseAddr(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return x.Unmap() == y.Unmap()
}

// names reports whether an unmatched request's record names f's provider (and login).
func (f Filter) names(r Record) bool {
	return domain.NormalizeProviderCode(r.Data.String("provider")) == f.Provider &&
		(f.Login == "" || domain.NormalizeLogin(r.Data.String("login")) == f.Login)
}

// QueryPageSize is how many events of the global feed one read asks for.
const QueryPageSize = 1000

// Query hands emit the records f selects, in feed order, from after `after` on, and stops
// once it has emitted limit of them (limit 0: no limit). It reads the global feed page by
// page, so it holds one page in memory whatever the history's size. It returns the
// position to resume from and whether it stopped at the limit rather than at the feed's end.
func Query(ctx context.Context, store eventstore.Store, codec *domain.Codec, f Filter, after eventstore.Position, limit int, emit func(Record) error) (next eventstore.Position, more bool, err error) {
	if f.Provider == "" {
		return after, false, errors.New("audit: query: no provider")
	}
	n := 0
	for {
		page, err := store.ReadAll(ctx, after, QueryPageSize)
		if err != nil {
			return after, false, fmt.Errorf("audit: read the event feed: %w", err)
		}
		if len(page) == 0 {
			return after, false, nil
		}
		for _, e := range page {
			after = e.Position
			if !f.matchEnvelope(e) {
				continue
			}
			r := NewRecord(codec, e)
			if isUnmatched(e.Stream) && !f.names(r) {
				continue
			}
			if err := emit(r); err != nil {
				return after, false, err
			}
			if n++; limit > 0 && n == limit {
				return after, true, nil
			}
		}
	}
}

// FormatCursor turns a feed position into a paging cursor.
func FormatCursor(p eventstore.Position) string {
	return strconv.FormatUint(p.Commit, 10) + "." + strconv.FormatUint(p.Prepare, 10)
}

// ParseCursor reads a cursor made by FormatCursor.
func ParseCursor(s string) (eventstore.Position, error) {
	c, p, ok := strings.Cut(s, ".")
	commit, err1 := strconv.ParseUint(c, 10, 64)
	prepare, err2 := strconv.ParseUint(p, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return eventstore.Start, fmt.Errorf("cursor %q is not one this service gave out", s)
	}
	return eventstore.Position{Commit: commit, Prepare: prepare}, nil
}
