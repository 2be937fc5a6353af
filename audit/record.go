package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"selfreset/domain"
	"selfreset/eventstore"
)

// redactedFields print as Redacted: even hashes of passwords, tokens and codes stay in the
// event store, whoever reads the history.
var redactedFields = map[string]bool{"password_hash": true, "token_hash": true, "code_hash": true}

// Redacted stands in for a redacted value.
const Redacted = "[redacted]"

// Record is one event as auditors see it, on the command line and through the API alike.
// Every metadata field is always present, so that tools reading it need no defaults; the
// chain value is left out (audit verify checks it).
type Record struct {
	Position      eventstore.Position `json:"position"`
	Stream        string              `json:"stream"`
	Revision      uint64              `json:"revision"`
	EventID       string              `json:"event_id"`
	Type          string              `json:"type"`
	SchemaVersion int                 `json:"schema_version"`
	OccurredAt    time.Time           `json:"occurred_at"`
	Metadata      RecordMetadata      `json:"metadata"`
	Data          Object              `json:"data"`
	// DecodeError is set when this binary cannot decode the event (a newer schema);
	// Data is then the stored JSON, still redacted.
	DecodeError string `json:"decode_error,omitempty"`
}

// RecordMetadata is an event's metadata as auditors see it.
type RecordMetadata struct {
	Actor         string `json:"actor"`
	CorrelationID string `json:"correlation_id"`
	CausationID   string `json:"causation_id"`
	ClientIP      string `json:"client_ip"`
	UserAgent     string `json:"user_agent"`
}

// NewRecord decodes e (upcasting old schema versions, as every reader does) and redacts
// its hashes. An event this binary cannot decode is shown as stored, flagged.
func NewRecord(codec *domain.Codec, e eventstore.RecordedEvent) Record {
	r := Record{
		Position: e.Position, Stream: e.Stream, Revision: e.Revision, EventID: e.ID.String(),
		Type: e.Type, SchemaVersion: e.SchemaVersion, OccurredAt: e.OccurredAt.UTC(),
		Metadata: RecordMetadata{Actor: e.Metadata.Actor, CorrelationID: e.Metadata.CorrelationID,
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
	obj, err := ParseObject(data)
	if err != nil {
		// Not an object: show nothing of it rather than risk showing a secret.
		if r.DecodeError == "" {
			r.DecodeError = "data is not a JSON object"
		}
		return r
	}
	r.Data = Redact(obj)
	return r
}

// Redact replaces the values of the hash fields of obj.
func Redact(obj Object) Object {
	for i, f := range obj {
		if redactedFields[f.Key] {
			obj[i].Value = json.RawMessage(`"` + Redacted + `"`)
		}
	}
	return obj
}

// String returns the value of the top-level string field key ("" when absent or not a string).
func (o Object) String(key string) string {
	for _, f := range o {
		var s string
		if f.Key == key && json.Unmarshal(f.Value, &s) == nil {
			return s
		}
	}
	return ""
}

// Field is one member of an Object.
type Field struct {
	Key   string
	Value json.RawMessage
}

// Object is a JSON object that keeps its keys in the order given.
type Object []Field

// MarshalJSON writes the members in order.
func (o Object) MarshalJSON() ([]byte, error) {
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

// UnmarshalJSON reads an object, keeping its members' order.
func (o *Object) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*o = nil
		return nil
	}
	obj, err := ParseObject(b)
	if err != nil {
		return err
	}
	*o = obj
	return nil
}

// ParseObject splits a JSON object into its top-level members, in order.
func ParseObject(data []byte) (Object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	obj := Object{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad object key")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, v); err != nil {
			return nil, err
		}
		obj = append(obj, Field{Key: key, Value: compact.Bytes()})
	}
	return obj, nil
}
