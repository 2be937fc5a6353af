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
	v := &verifier{opts: opts, streams: map[string]*streamState{}}
	v.rep.SignaturesChecked = len(opts.Keys) > 0
	var err error
	if v.seals, err = readSeals(ctx, store, codec, 0); err != nil {
		return v.rep, err
	}
	b, err := v.feed(ctx, store)
	if err != nil {
		return v.rep, err
	}
	// Seals whose ranges end after the last event read: their events are gone.
	for b == nil && v.next < len(v.seals) {
		b = v.checkSeal()
	}
	if b != nil {
		v.rep.Break = b
		return v.rep, nil
	}
	v.rep.Unsealed = v.fh.count
	return v.rep, nil
}

// verifier is one run of Verify: the report so far, the chain state of every stream
// and where the seals stand.
type verifier struct {
	opts    VerifyOptions
	rep     Report
	streams map[string]*streamState
	seals   []storedSeal
	next    int      // the seal to check next
	fh      feedHash // the range hashed since the last seal checked
	// prevThrough is where the last seal checked ended.
	prevThrough domain.FeedPosition
}

// feed reads the feed page by page and checks each event, up to the first break.
func (v *verifier) feed(ctx context.Context, store eventstore.Store) (*Break, error) {
	pageSize := v.opts.PageSize
	if pageSize <= 0 {
		pageSize = 5000
	}
	// Every event up to the newest seal's end was readable when it was sealed. The feed may
	// still hold back a moment what it showed before (PostgreSQL's watermark can err low
	// while unrelated transactions end), so an early end is read again a few times before
	// it is believed: a sealed range that stays short then is a break, not a race.
	var sealedTo eventstore.Position
	if len(v.seals) > 0 {
		sealedTo = fromFeed(v.seals[len(v.seals)-1].seal.Through)
	}
	after := eventstore.Start
	for retries := 0; ; {
		page, err := store.ReadAll(ctx, after, pageSize)
		if err != nil {
			return nil, fmt.Errorf("audit: verify: read the feed: %w", err)
		}
		if len(page) == 0 {
			if !after.Less(sealedTo) || retries >= feedRetries {
				return nil, nil
			}
			retries++
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(feedRetryWait):
			}
			continue
		}
		retries = 0
		for _, e := range page {
			after = e.Position
			if b, err := v.event(e); b != nil || err != nil {
				return b, err
			}
		}
	}
}

// event checks e's chain link and adds it to the sealed range it belongs to, checking
// the seals that range completes.
func (v *verifier) event(e eventstore.RecordedEvent) (*Break, error) {
	v.rep.Events++
	if b := checkLink(v.streams, e, v.opts, &v.rep); b != nil {
		return b, nil
	}
	if sealed(e) {
		return nil, nil
	}
	// A seal whose last event is gone: check it before this event joins the range.
	for v.next < len(v.seals) && fromFeed(v.seals[v.next].seal.Through).Less(e.Position) {
		if b := v.checkSeal(); b != nil {
			return b, nil
		}
	}
	h, err := EventHash(e)
	if err != nil {
		return nil, fmt.Errorf("audit: verify: %w", err)
	}
	v.fh.add(e.Stream, e.Revision, h)
	if v.next < len(v.seals) && fromFeed(v.seals[v.next].seal.Through) == e.Position {
		return v.checkSeal(), nil
	}
	return nil, nil
}

// checkSeal compares the next seal with the range hashed so far and, if they agree,
// starts the next range.
func (v *verifier) checkSeal() *Break {
	s, keys := v.seals[v.next], v.opts.Keys
	b := &Break{Stream: s.event.Stream, Revision: s.event.Revision, Position: s.event.Position}
	switch {
	case s.seal.After != v.prevThrough:
		b.What = fmt.Sprintf("seal starts after %s, but the seal before it ended at %s (a seal was removed)", pos(s.seal.After), pos(v.prevThrough))
	case v.rep.SignaturesChecked && keys[s.seal.KeyID] == nil:
		b.What = fmt.Sprintf("seal is signed with key %q, which is not among the seal keys given", s.seal.KeyID)
	case v.rep.SignaturesChecked && !equalHex(Sign(keys[s.seal.KeyID], s.seal), s.seal.Signature):
		b.What = "seal signature is not valid (the seal was edited or forged)"
	case s.seal.Count != v.fh.count:
		b.What = fmt.Sprintf("seal over feed positions (%s, %s] counted %d events, the feed now holds %d there (events deleted or inserted)",
			pos(s.seal.After), pos(s.seal.Through), s.seal.Count, v.fh.count)
	case !equalHex(s.seal.Digest, v.fh.digest):
		b.What = fmt.Sprintf("seal over feed positions (%s, %s] has digest %s, the feed now gives %s (events reordered or their chain values replaced)",
			pos(s.seal.After), pos(s.seal.Through), s.seal.Digest, v.fh.digest)
	default:
		v.rep.Seals++
		v.rep.SealedEvents += v.fh.count
		v.prevThrough = s.seal.Through
		v.fh = feedHash{digest: s.seal.Digest}
		v.next++
		return nil
	}
	return b
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
