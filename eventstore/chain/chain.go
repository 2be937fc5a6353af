// Package chain links the events of a stream into a hash chain: every event's metadata
// carries the SHA-256 of its canonical encoding, which includes the hash of the event
// before it in the same stream. Editing, deleting or reordering an event of a stream then
// breaks the chain from that event on. Every event-store adapter computes the link inside
// Append, under the same concurrency control that orders the stream, and readers
// (selfreset audit verify) recompute it.
//
// The canonical encoding (docs/auditing.md describes it for auditors) is the concatenation
// of these fields, each as a 4-byte big-endian length followed by the bytes:
//
//	"selfreset-chain-v1", stream, revision (decimal), event id (lower-case UUID), type,
//	schema version (decimal), occurred-at (RFC 3339 with nanoseconds, UTC, truncated to
//	whole microseconds), canonical JSON of data, canonical JSON of metadata without the
//	chain field, previous hash (hex; empty for revision 0)
//
// Canonical JSON is RFC 8785's JSON Canonicalization Scheme (object keys sorted, no
// insignificant white space, minimal string escapes, numbers in their shortest IEEE 754
// double form), so the same event hashes the same whether its JSON comes back from
// PostgreSQL's jsonb (which reorders keys and rewrites numbers) or from EventStoreDB.
package chain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"selfreset/eventstore"
)

// tag opens every encoding, so a chain hash can never be confused with another SHA-256.
const tag = "selfreset-chain-v1"

// HashLen is the length of a hash in hex.
const HashLen = 2 * sha256.Size

// Precision is the resolution occurred-at is hashed at: PostgreSQL keeps microseconds.
const Precision = time.Microsecond

// Fields is what the hash covers: an event as stored, apart from its chain value.
type Fields struct {
	Stream        string
	Revision      uint64
	ID            uuid.UUID
	Type          string
	SchemaVersion int
	OccurredAt    time.Time
	Data          json.RawMessage
	Metadata      eventstore.Metadata
}

// OfRecorded returns the fields of a stored event.
func OfRecorded(e eventstore.RecordedEvent) Fields {
	return Fields{Stream: e.Stream, Revision: e.Revision, ID: e.ID, Type: e.Type,
		SchemaVersion: e.SchemaVersion, OccurredAt: e.OccurredAt, Data: e.Data, Metadata: e.Metadata}
}

// OfData returns the fields of an event about to be stored at stream@revision.
func OfData(stream string, revision uint64, e eventstore.EventData) Fields {
	return Fields{Stream: stream, Revision: revision, ID: e.ID, Type: e.Type,
		SchemaVersion: e.SchemaVersion, OccurredAt: e.OccurredAt, Data: e.Data, Metadata: e.Metadata}
}

// Hash returns the hex SHA-256 of f's canonical encoding chained to prev (the previous
// event's hash, "" for the first event of a stream). It fails only for data that is not JSON.
func Hash(f Fields, prev string) (string, error) {
	data, err := Canonical(f.Data)
	if err != nil {
		return "", fmt.Errorf("chain: %s@%d: data: %w", f.Stream, f.Revision, err)
	}
	m := f.Metadata
	m.Chain = ""
	meta, err := json.Marshal(m)
	if err == nil {
		meta, err = Canonical(meta)
	}
	if err != nil {
		return "", fmt.Errorf("chain: %s@%d: metadata: %w", f.Stream, f.Revision, err)
	}
	h := sha256.New()
	for _, part := range [][]byte{
		[]byte(tag),
		[]byte(f.Stream),
		[]byte(strconv.FormatUint(f.Revision, 10)),
		[]byte(f.ID.String()),
		[]byte(f.Type),
		[]byte(strconv.Itoa(f.SchemaVersion)),
		[]byte(f.OccurredAt.UTC().Truncate(Precision).Format(time.RFC3339Nano)),
		data,
		meta,
		[]byte(prev),
	} {
		writePart(h, part)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writePart(h hash.Hash, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// Link sets the chain value of each event, the first following prev, as they will be
// stored from revision first on. It returns the hash of the last one.
func Link(stream string, first uint64, prev string, events []eventstore.EventData) (string, error) {
	for i := range events {
		// Hash what the store will give back: PostgreSQL keeps only microseconds.
		events[i].OccurredAt = events[i].OccurredAt.Truncate(Precision)
		h, err := Hash(OfData(stream, first+uint64(i), events[i]), prev)
		if err != nil {
			return "", err
		}
		events[i].Metadata.Chain = h
		prev = h
	}
	return prev, nil
}

// Canonical returns the canonical JSON of data (RFC 8785; empty data is null).
func Canonical(data json.RawMessage) ([]byte, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return []byte("null"), nil
	}
	v := jsontext.Value(bytes.Clone(data))
	if err := v.Canonicalize(); err != nil {
		return nil, err
	}
	return v, nil
}
