package audit

import (
	"context"
	"crypto/hmac"
	"fmt"
	"strings"
	"time"

	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/chain"
)

// VerifyOptions narrows a verification.
type VerifyOptions struct {
	// Provider, when set, limits the chain checks to that provider's streams (InProvider).
	// Seals cover the whole feed and are always checked.
	Provider string
	// Since, when set, limits the chain checks to events that occurred at or after it.
	Since time.Time
	// Keys verify the seals' signatures; without them counts and digests are still
	// compared, but a seal could have been forged along with the events.
	Keys Keys
	// PageSize is how many feed events one read asks for (default 5000).
	PageSize int
}

// Break is the first place where the stored history differs from what was chained or sealed.
type Break struct {
	Stream   string              `json:"stream"`
	Revision uint64              `json:"revision"`
	Position eventstore.Position `json:"position"`
	What     string              `json:"what"`
}

func (b Break) String() string {
	return fmt.Sprintf("%s@%d (feed position %s): %s", b.Stream, b.Revision, b.Position, b.What)
}

// Report is what Verify found.
type Report struct {
	Events         int64 `json:"events"`          // events read from the feed
	Checked        int64 `json:"checked"`         // events whose chain link was recomputed
	BeforeChaining int64 `json:"before_chaining"` // events stored before chaining began (no link)
	Seals          int   `json:"seals"`           // seals checked
	SealedEvents   int64 `json:"sealed_events"`
	// Unsealed events came after the newest seal: only their chains protect them.
	Unsealed          int64 `json:"unsealed"`
	SignaturesChecked bool  `json:"signatures_checked"`
	// Break is the first break found (nil: the history is intact). Verify stops there.
	Break *Break `json:"break,omitempty"`
}

// InProvider reports whether stream belongs to provider code's history: its provider and
// user streams, its audit-read log, the unmatched-request streams (which name providers in
// their data) and the seals.
func InProvider(code, stream string) bool {
	switch {
	case stream == domain.ProviderStream(code), stream == domain.AuditLogStream(code), stream == domain.SealStream:
		return true
	case strings.HasPrefix(stream, domain.UnmatchedStream):
		return true
	}
	c, _, err := domain.ParseUserStream(stream)
	return err == nil && c == code
}

// An empty page of the feed before the newest seal's end is read again feedRetries times,
// feedRetryWait apart, before verify takes it for the end.
const (
	feedRetries   = 20
	feedRetryWait = 50 * time.Millisecond
)

type streamState struct {
	next    uint64 // the revision expected next
	prev    string // the stored chain value of the event before
	chained bool   // an event of the stream has had a chain value
}

// Verify reads the whole feed in order and checks every event's link in its stream's
// chain (no revision missing or out of order, the stored hash equals the recomputed one)
// and every seal (its range holds as many events, with the same running digest, and its
// signature is valid). It stops at the first break and reports it; an error means the
// verification could not be done.
func Verify(ctx context.Context, store eventstore.Store, codec *domain.Codec, opts VerifyOptions) (Report, error) {
	var rep Report
	rep.SignaturesChecked = len(opts.Keys) > 0
	seals, err := readSeals(ctx, store, codec, 0)
	if err != nil {
		return rep, err
	}
	pageSize := opts.PageSize
	if pageSize <= 0 {
		pageSize = 5000
	}
	streams := map[string]*streamState{}
	next := 0 // the seal to check next
	var fh feedHash
	var prevThrough domain.FeedPosition

	// checkSeal compares seal `next` with the range hashed so far.
	checkSeal := func() *Break {
		s := seals[next]
		b := &Break{Stream: s.event.Stream, Revision: s.event.Revision, Position: s.event.Position}
		switch {
		case s.seal.After != prevThrough:
			b.What = fmt.Sprintf("seal starts after %s, but the seal before it ended at %s (a seal was removed)", pos(s.seal.After), pos(prevThrough))
		case rep.SignaturesChecked && opts.Keys[s.seal.KeyID] == nil:
			b.What = fmt.Sprintf("seal is signed with key %q, which is not among the seal keys given", s.seal.KeyID)
		case rep.SignaturesChecked && !equalHex(Sign(opts.Keys[s.seal.KeyID], s.seal), s.seal.Signature):
			b.What = "seal signature is not valid (the seal was edited or forged)"
		case s.seal.Count != fh.count:
			b.What = fmt.Sprintf("seal over feed positions (%s, %s] counted %d events, the feed now holds %d there (events deleted or inserted)",
				pos(s.seal.After), pos(s.seal.Through), s.seal.Count, fh.count)
		case !equalHex(s.seal.Digest, fh.digest):
			b.What = fmt.Sprintf("seal over feed positions (%s, %s] has digest %s, the feed now gives %s (events reordered or their chain values replaced)",
				pos(s.seal.After), pos(s.seal.Through), s.seal.Digest, fh.digest)
		default:
			rep.Seals++
			rep.SealedEvents += fh.count
			prevThrough = s.seal.Through
			fh = feedHash{digest: s.seal.Digest}
			next++
			return nil
		}
		return b
	}

	// Every event up to the newest seal's end was readable when it was sealed. The feed may
	// still hold back a moment what it showed before (PostgreSQL's watermark can err low
	// while unrelated transactions end), so an early end is read again a few times before
	// it is believed: a sealed range that stays short then is a break, not a race.
	var sealedTo eventstore.Position
	if len(seals) > 0 {
		sealedTo = fromFeed(seals[len(seals)-1].seal.Through)
	}
	after := eventstore.Start
	for retries := 0; ; {
		page, err := store.ReadAll(ctx, after, pageSize)
		if err != nil {
			return rep, fmt.Errorf("audit: verify: read the feed: %w", err)
		}
		if len(page) == 0 {
			if after.Less(sealedTo) && retries < feedRetries {
				retries++
				select {
				case <-ctx.Done():
					return rep, ctx.Err()
				case <-time.After(feedRetryWait):
				}
				continue
			}
			break
		}
		retries = 0
		for _, e := range page {
			after = e.Position
			rep.Events++
			if b := checkLink(streams, e, opts, &rep); b != nil {
				rep.Break = b
				return rep, nil
			}
			if sealed(e) {
				continue
			}
			// A seal whose last event is gone: check it before this event joins the range.
			for next < len(seals) && fromFeed(seals[next].seal.Through).Less(e.Position) {
				if b := checkSeal(); b != nil {
					rep.Break = b
					return rep, nil
				}
			}
			h, err := EventHash(e)
			if err != nil {
				return rep, fmt.Errorf("audit: verify: %w", err)
			}
			fh.add(e.Stream, e.Revision, h)
			if next < len(seals) && fromFeed(seals[next].seal.Through) == e.Position {
				if b := checkSeal(); b != nil {
					rep.Break = b
					return rep, nil
				}
			}
		}
	}
	for next < len(seals) {
		if b := checkSeal(); b != nil {
			rep.Break = b
			return rep, nil
		}
	}
	rep.Unsealed = fh.count
	return rep, nil
}

// checkLink checks e against the state of its stream and moves that state on.
func checkLink(streams map[string]*streamState, e eventstore.RecordedEvent, opts VerifyOptions, rep *Report) *Break {
	if opts.Provider != "" && !InProvider(opts.Provider, e.Stream) {
		return nil
	}
	st := streams[e.Stream]
	if st == nil {
		st = &streamState{}
		streams[e.Stream] = st
	}
	report := opts.Since.IsZero() || !e.OccurredAt.Before(opts.Since)
	brk := func(format string, args ...any) *Break {
		return &Break{Stream: e.Stream, Revision: e.Revision, Position: e.Position, What: fmt.Sprintf(format, args...)}
	}
	defer func() { st.next = e.Revision + 1 }()
	switch {
	case !report:
	case e.Revision > st.next && st.next+1 == e.Revision:
		return brk("revision %d is missing before it (deleted)", st.next)
	case e.Revision > st.next:
		return brk("revisions %d to %d are missing before it (deleted)", st.next, e.Revision-1)
	case e.Revision < st.next:
		return brk("comes after revision %d in the feed (events reordered or duplicated)", st.next-1)
	}
	if e.Metadata.Chain == "" {
		if st.chained && report {
			return brk("has no chain value, though the stream was chained before it (the chain value was removed)")
		}
		rep.BeforeChaining++
		st.prev = ""
		return nil
	}
	if report {
		want, err := chain.Hash(chain.OfRecorded(e), st.prev)
		if err != nil {
			return brk("cannot be hashed: %v", err)
		}
		rep.Checked++
		if !equalHex(want, e.Metadata.Chain) {
			return brk("%s event %s does not match its chain value: stored %s, recomputed %s (its data, metadata, type, id, time or schema version was edited, or the event before it was replaced)",
				e.Type, e.ID, short(e.Metadata.Chain), short(want))
		}
	}
	st.chained, st.prev = true, e.Metadata.Chain
	return nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// equalHex compares two hex strings in constant time.
func equalHex(a, b string) bool {
	return hmac.Equal([]byte(a), []byte(b))
}
