// Package audit is the auditors' side of the event store: signed seals over the global
// feed (Sealer), verification of the hash chains and seals (Verify), the filtered and
// redacted view of a provider's history shared by the CLI and the audit API (Query,
// Record), and the state of a user or provider folded as of a past time (StateAt).
package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"

	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/chain"
)

// sealTag opens the encodings of seal digests and signatures.
const sealTag = "selfreset-seal-v1"

// Key is a seal key and the id seals name it by.
type Key struct {
	ID     string
	Secret []byte
}

// Keys are the seal keys a verifier knows, by id.
type Keys map[string][]byte

// feedHash is the running digest of a range of the feed.
type feedHash struct {
	digest string
	count  int64
}

// add folds one event into the digest: SHA-256 over the previous digest, the stream, the
// revision and the event's hash, each length-prefixed.
func (f *feedHash) add(stream string, revision uint64, eventHash string) {
	h := sha256.New()
	for _, part := range []string{sealTag, f.digest, stream, strconv.FormatUint(revision, 10), eventHash} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	f.digest = hex.EncodeToString(h.Sum(nil))
	f.count++
}

// EventHash is what a seal covers of an event: its chain value, or for an event stored
// before chaining began, the hash of its content alone.
func EventHash(e eventstore.RecordedEvent) (string, error) {
	if e.Metadata.Chain != "" {
		return e.Metadata.Chain, nil
	}
	return chain.Hash(chain.OfRecorded(e), "")
}

// sealed reports whether e is outside what seals cover: the seals themselves, which are
// chained in their own stream and signed.
func sealed(e eventstore.RecordedEvent) bool { return e.Stream == domain.SealStream }

// Sign returns the hex HMAC-SHA256 of s's fields other than the signature.
func Sign(key []byte, s domain.AuditSealed) string {
	mac := hmac.New(sha256.New, key)
	for _, part := range []string{sealTag, pos(s.After), pos(s.Through), strconv.FormatInt(s.Count, 10), s.Digest, s.KeyID} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		mac.Write(n[:])
		mac.Write([]byte(part))
	}
	return hex.EncodeToString(mac.Sum(nil))
}

func pos(p domain.FeedPosition) string { return fmt.Sprintf("%d/%d", p.Commit, p.Prepare) }

func toFeed(p eventstore.Position) domain.FeedPosition {
	return domain.FeedPosition{Commit: p.Commit, Prepare: p.Prepare}
}

func fromFeed(p domain.FeedPosition) eventstore.Position {
	return eventstore.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// DefaultSealInterval is how often serve seals the feed when nothing else is configured.
const DefaultSealInterval = time.Minute

// Sealer appends a seal over the events of the global feed since the last seal. Any number
// of replicas may run one: a seal is appended at the seal stream's exact next revision, so
// when two race, one seal is kept and the other replica finds the range sealed next time.
type Sealer struct {
	Store eventstore.Store
	Codec *domain.Codec
	Key   Key
	Clock domain.Clock // stamps the seals
	// Interval between seals (DefaultSealInterval when zero).
	Interval time.Duration
	// MaxEvents bounds one seal's range, so a first seal over a long history is cut into
	// several (default 100000).
	MaxEvents int64
	Log       *slog.Logger

	// last is the newest seal seen, so each round reads only the seals after it. A Sealer
	// is run by one goroutine.
	last *storedSeal
}

const sealPageSize = 2000

// Run seals every Interval until ctx ends.
func (s *Sealer) Run(ctx context.Context) error {
	every := s.Interval
	if every <= 0 {
		every = DefaultSealInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.SealOnce(ctx); err != nil && ctx.Err() == nil && s.Log != nil {
			s.Log.Error("audit seal failed; retrying at the next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// lastSeal returns the newest seal and its revision (ok false when none exists yet).
func (s *Sealer) lastSeal(ctx context.Context) (domain.AuditSealed, uint64, bool, error) {
	from := uint64(0)
	if s.last != nil {
		from = s.last.event.Revision + 1
	}
	seals, err := readSeals(ctx, s.Store, s.Codec, from)
	if err != nil {
		return domain.AuditSealed{}, 0, false, err
	}
	if len(seals) > 0 {
		s.last = &seals[len(seals)-1]
	}
	if s.last == nil {
		return domain.AuditSealed{}, 0, false, nil
	}
	return s.last.seal, s.last.event.Revision, true, nil
}

type storedSeal struct {
	event eventstore.RecordedEvent
	seal  domain.AuditSealed
}

// readSeals reads the seal stream in order from revision from on.
func readSeals(ctx context.Context, store eventstore.Store, codec *domain.Codec, from uint64) ([]storedSeal, error) {
	events, err := store.ReadStream(ctx, domain.SealStream, from)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read seals: %w", err)
	}
	out := make([]storedSeal, 0, len(events))
	for _, e := range events {
		v, err := codec.DecodeRecorded(e)
		if err != nil {
			return nil, fmt.Errorf("audit: seal %s@%d: %w", e.Stream, e.Revision, err)
		}
		seal, ok := v.(domain.AuditSealed)
		if !ok {
			return nil, fmt.Errorf("audit: %s@%d is a %s, not a seal", e.Stream, e.Revision, e.Type)
		}
		out = append(out, storedSeal{event: e, seal: seal})
	}
	return out, nil
}

// SealOnce appends one seal over the feed since the last seal, if any event came since.
// It reports whether it appended one.
func (s *Sealer) SealOnce(ctx context.Context) (bool, error) {
	prev, rev, exists, err := s.lastSeal(ctx)
	if err != nil {
		return false, err
	}
	limit := s.MaxEvents
	if limit <= 0 {
		limit = 100000
	}
	fh := feedHash{digest: prev.Digest}
	after := fromFeed(prev.Through)
	through := after
	for fh.count < limit {
		page, err := s.Store.ReadAll(ctx, after, int(min(sealPageSize, limit-fh.count)))
		if err != nil {
			return false, fmt.Errorf("audit: seal: read the feed: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			after = e.Position
			if sealed(e) {
				continue
			}
			h, err := EventHash(e)
			if err != nil {
				return false, fmt.Errorf("audit: seal: %w", err)
			}
			fh.add(e.Stream, e.Revision, h)
			through = e.Position
		}
	}
	if fh.count == 0 {
		return false, nil
	}
	seal := domain.AuditSealed{After: prev.Through, Through: toFeed(through), Count: fh.count, Digest: fh.digest, KeyID: s.Key.ID}
	seal.Signature = Sign(s.Key.Secret, seal)
	typ, version, data, err := s.Codec.Encode(seal)
	if err != nil {
		return false, err
	}
	expected := eventstore.NoStream
	if exists {
		expected = eventstore.Exact(rev)
	}
	_, err = s.Store.Append(ctx, domain.SealStream, expected, eventstore.EventData{
		ID: uuid.New(), Type: typ, SchemaVersion: version, OccurredAt: s.Clock.Now(), Data: json.RawMessage(data),
		Metadata: eventstore.Metadata{Actor: domain.SystemActorID("audit-sealer")},
	})
	if errors.Is(err, eventstore.ErrConflict) {
		return false, nil // another replica sealed first
	}
	if err != nil {
		return false, fmt.Errorf("audit: append seal: %w", err)
	}
	if s.Log != nil {
		s.Log.Debug("audit seal appended", "events", fh.count, "through", pos(seal.Through))
	}
	return true, nil
}
