package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"selfreset/config"
	"selfreset/domain"
	"selfreset/eventstore"
)

var auditGroup = group{
	name:    "audit",
	summary: "print a provider's (or one user's) event history with its metadata, from the event store",
	run:     runAudit,
}

// redactedFields print as "[redacted]": even hashes of passwords, tokens and codes stay
// in the event store.
var redactedFields = map[string]bool{"password_hash": true, "token_hash": true, "code_hash": true}

const redacted = "[redacted]"

// auditPageSize is how many events of the global feed one read asks for.
const auditPageSize = 1000

// auditQuery selects events: a provider's streams, or one user's, plus the unmatched
// requests that named them, from Since on.
type auditQuery struct {
	Provider string
	Login    string // "" for the whole provider
	Since    time.Time
}

func runAudit(ctx context.Context, c *cli, args []string) error {
	const cmd = "audit"
	fs := newFlagSet(cmd, "selfreset audit --provider C [--login L] [--since RFC3339] [--format text|jsonl]")
	provider := fs.String("provider", "", "provider code (required)")
	login := fs.String("login", "", "only this user's history (and unmatched requests naming this login)")
	since := fs.String("since", "", "only events that occurred at or after this time, e.g. 2026-01-31T00:00:00Z")
	format := fs.String("format", "text", "text (one line per event) or jsonl (one JSON object per line)")
	if err := c.parseAll(fs, args); err != nil {
		return err
	}
	var q auditQuery
	var err error
	if q.Provider, err = providerCode(cmd, "provider", *provider); err != nil {
		return err
	}
	if *login != "" {
		if q.Login, err = loginName(cmd, *login); err != nil {
			return err
		}
	}
	if *since != "" {
		if q.Since, err = time.Parse(time.RFC3339, *since); err != nil {
			return usagef("%s: --since %q is not an RFC 3339 time such as 2026-01-31T00:00:00Z", cmd, *since)
		}
	}
	var write func(w io.Writer, r auditRecord) error
	switch *format {
	case "text":
		write = writeAuditText
	case "jsonl":
		write = writeAuditJSON
	default:
		return usagef("%s: --format %q: use text or jsonl", cmd, *format)
	}

	// Auditors read the history without the server key: nothing here derives a token.
	a, err := c.open(ctx, config.SecretOptional())
	if err != nil {
		return err
	}
	defer a.Close()
	out := bufio.NewWriter(c.stdout)
	n, err := audit(ctx, a.store, a.codec, q, func(r auditRecord) error { return write(out, r) })
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if n == 0 {
		who := "provider " + q.Provider
		if q.Login != "" {
			who = "user " + q.Provider + "/" + q.Login
		}
		fmt.Fprintf(c.stderr, "selfreset: audit: no events for %s\n", who)
	}
	return nil
}

// auditRecord is one event as auditors see it. Every metadata field is always present,
// so that tools reading jsonl need no defaults.
type auditRecord struct {
	Position      eventstore.Position `json:"position"`
	Stream        string              `json:"stream"`
	Revision      uint64              `json:"revision"`
	EventID       string              `json:"event_id"`
	Type          string              `json:"type"`
	SchemaVersion int                 `json:"schema_version"`
	OccurredAt    time.Time           `json:"occurred_at"`
	Metadata      auditMetadata       `json:"metadata"`
	Data          orderedObject       `json:"data"`
	// DecodeError is set when this binary cannot decode the event (a newer schema);
	// Data is then the stored JSON, still redacted.
	DecodeError string `json:"decode_error,omitempty"`
}

type auditMetadata struct {
	Actor         string `json:"actor"`
	CorrelationID string `json:"correlation_id"`
	CausationID   string `json:"causation_id"`
	ClientIP      string `json:"client_ip"`
	UserAgent     string `json:"user_agent"`
}

// audit hands emit every event the query selects, in feed order, and returns how many.
// It reads the event store itself, never a read model: the streams it can name (the
// provider's, the user's, and every unmatched-requests stream: the legacy one and its
// shards, domain.UnmatchedStreams) are read directly, and a provider's user
// streams are found by scanning the global feed for "user-<CODE>-" streams and then read
// in full. (On PostgreSQL the feed holds back events while an older append is still open;
// reading the streams themselves keeps those moments from hiding events of streams
// already known.)
func audit(ctx context.Context, store eventstore.Store, codec *eventstore.Codec, q auditQuery, emit func(auditRecord) error) (int, error) {
	var streams []string
	if q.Login != "" {
		streams = []string{domain.UserStream(q.Provider, q.Login)}
	} else {
		users, err := userStreams(ctx, store, q.Provider)
		if err != nil {
			return 0, err
		}
		streams = append([]string{domain.ProviderStream(q.Provider)}, users...)
	}
	var records []auditRecord
	for _, stream := range append(streams, domain.UnmatchedStreams()...) {
		events, err := store.ReadStream(ctx, stream, 0)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("audit: read %s: %w", stream, err)
		}
		for _, e := range events {
			if !q.Since.IsZero() && e.OccurredAt.Before(q.Since) {
				continue
			}
			r := newAuditRecord(codec, e)
			if domain.IsUnmatchedStream(stream) && !r.names(q) {
				continue
			}
			records = append(records, r)
		}
	}
	sortFeedOrder(records)
	for i, r := range records {
		if err := emit(r); err != nil {
			return i, err
		}
	}
	return len(records), nil
}

// userStreams scans the global feed for the user streams of provider, in order of creation.
func userStreams(ctx context.Context, store eventstore.Store, provider string) ([]string, error) {
	prefix := domain.UserStreamPrefix + provider + "-"
	seen := map[string]bool{}
	var out []string
	after := eventstore.Start
	for {
		page, err := store.ReadAll(ctx, after, auditPageSize)
		if err != nil {
			return nil, fmt.Errorf("audit: read the event feed: %w", err)
		}
		if len(page) == 0 {
			return out, nil
		}
		for _, e := range page {
			after = e.Position
			if seen[e.Stream] || !strings.HasPrefix(e.Stream, prefix) {
				continue
			}
			// Codes have no '-', so the prefix cannot match another provider's streams;
			// the parse also drops names this service would never write.
			if code, _, err := domain.ParseUserStream(e.Stream); err == nil && code == provider {
				seen[e.Stream] = true
				out = append(out, e.Stream)
			}
		}
	}
}

// sortFeedOrder puts records from several streams into global-feed order. Servers that
// report no feed position on stream reads (EventStoreDB before 22.x) fall back to the
// time of the decision, then stream and revision.
func sortFeedOrder(records []auditRecord) {
	positioned := true
	for _, r := range records {
		if r.Position == eventstore.Start {
			positioned = false
			break
		}
	}
	sort.SliceStable(records, func(i, j int) bool {
		a, b := records[i], records[j]
		if positioned {
			return a.Position.Less(b.Position)
		}
		if !a.OccurredAt.Equal(b.OccurredAt) {
			return a.OccurredAt.Before(b.OccurredAt)
		}
		if a.Stream != b.Stream {
			return a.Stream < b.Stream
		}
		return a.Revision < b.Revision
	})
}

// names reports whether an unmatched request's data names the queried provider (and login).
func (r auditRecord) names(q auditQuery) bool {
	var who struct {
		Provider string
		Login    string
	}
	for _, f := range r.Data {
		var s string
		if json.Unmarshal(f.Value, &s) != nil {
			continue
		}
		switch f.Key {
		case "provider":
			who.Provider = domain.NormalizeProviderCode(s)
		case "login":
			who.Login = domain.NormalizeLogin(s)
		}
	}
	return who.Provider == q.Provider && (q.Login == "" || who.Login == q.Login)
}

// newAuditRecord decodes e (upcasting old schema versions, as every reader does) and
// redacts its hashes. An event this binary cannot decode is shown as stored, flagged.
func newAuditRecord(codec *eventstore.Codec, e eventstore.RecordedEvent) auditRecord {
	r := auditRecord{
		Position: e.Position, Stream: e.Stream, Revision: e.Revision, EventID: e.ID.String(),
		Type: e.Type, SchemaVersion: e.SchemaVersion, OccurredAt: e.OccurredAt.UTC(),
		Metadata: auditMetadata{Actor: e.Metadata.Actor, CorrelationID: e.Metadata.CorrelationID,
			CausationID: e.Metadata.CausationID, ClientIP: e.Metadata.ClientIP, UserAgent: e.Metadata.UserAgent},
	}
	data := []byte(e.Data)
	if v, err := codec.DecodeRecorded(e); err != nil {
		r.DecodeError = err.Error()
	} else if b, err := json.Marshal(v); err != nil {
		r.DecodeError = err.Error()
	} else {
		data = b // the current shape, in declaration order
	}
	obj, err := parseObject(data)
	if err != nil {
		// Not an object: show nothing of it rather than risk showing a secret.
		if r.DecodeError == "" {
			r.DecodeError = "data is not a JSON object"
		}
		return r
	}
	for i, f := range obj {
		if redactedFields[f.Key] {
			obj[i].Value = json.RawMessage(`"` + redacted + `"`)
		}
	}
	r.Data = obj
	return r
}

// ---- output ----

func writeAuditJSON(w io.Writer, r auditRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeAuditText writes one line: when, stream@revision, type, who/where, then the data.
//
//	2026-01-31T09:00:00.123Z user-ACME-bob@1 AccountAdminLocked actor=system:cli corr=… | by=system:cli
func writeAuditText(w io.Writer, r auditRecord) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s@%d %s actor=%s", r.OccurredAt.Format(time.RFC3339Nano), r.Stream, r.Revision, r.Type, textValue(r.Metadata.Actor))
	if r.Metadata.ClientIP != "" {
		fmt.Fprintf(&b, " ip=%s", textValue(r.Metadata.ClientIP))
	}
	if r.Metadata.UserAgent != "" {
		fmt.Fprintf(&b, " ua=%s", textValue(r.Metadata.UserAgent))
	}
	if r.Metadata.CorrelationID != "" {
		fmt.Fprintf(&b, " corr=%s", textValue(r.Metadata.CorrelationID))
	}
	if r.Metadata.CausationID != "" && r.Metadata.CausationID != r.Metadata.CorrelationID {
		fmt.Fprintf(&b, " cause=%s", textValue(r.Metadata.CausationID))
	}
	if len(r.Data) > 0 {
		b.WriteString(" |")
		for _, f := range r.Data {
			var s string
			if json.Unmarshal(f.Value, &s) == nil {
				fmt.Fprintf(&b, " %s=%s", f.Key, textValue(s))
			} else {
				fmt.Fprintf(&b, " %s=%s", f.Key, f.Value)
			}
		}
	}
	if r.DecodeError != "" {
		fmt.Fprintf(&b, " decode_error=%s", textValue(r.DecodeError))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// textValue leaves plain words bare and quotes anything else (spaces, quotes, '=', '|',
// control characters), so one event stays one line that splits unambiguously.
func textValue(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '=' || r == '|' || r == '\\' || r == 0x7f || r > 0x7e {
			b, _ := json.Marshal(s)
			return string(b)
		}
	}
	return s
}

// ---- an ordered JSON object ----

type field struct {
	Key   string
	Value json.RawMessage
}

// orderedObject is a JSON object that keeps its keys in the order given.
type orderedObject []field

func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(f.Key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(f.Value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// parseObject splits a JSON object into its top-level fields, in order.
func parseObject(data []byte) (orderedObject, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	obj := orderedObject{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("bad object key")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, v); err != nil {
			return nil, err
		}
		obj = append(obj, field{Key: key, Value: compact.Bytes()})
	}
	return obj, nil
}
