package eventstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

// Typed is what a codec can encode: a value that names its own event type.
type Typed interface {
	EventType() string
}

// Upcaster turns the JSON of one schema version into the JSON of the next one.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// Codec maps event values of the family E (an interface such as domain.Event) to and from
// their stored JSON. Old schema versions are upcast step by step to the current one before
// they are decoded, so aggregates and projections only ever see current shapes. Decoding
// returns E, so readers need no type assertion. A Codec is built once at start-up and then
// only read; the registry of a family lives with its events (domain.NewCodec).
type Codec[E Typed] struct {
	types     map[string]codecEntry
	upcasters map[string]map[int]Upcaster // type -> from version -> step to version+1
}

type codecEntry struct {
	version int
	typ     reflect.Type // struct type, not pointer
}

// NewCodec returns an empty codec for the event family E.
func NewCodec[E Typed]() *Codec[E] {
	return &Codec[E]{types: map[string]codecEntry{}, upcasters: map[string]map[int]Upcaster{}}
}

// Register makes the codec know example's type at the given current schema version.
// example must be a struct value (not a pointer).
func (c *Codec[E]) Register(example E, version int) {
	t := reflect.TypeOf(example)
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("eventstore: register %s: want a struct value, got %s", example.EventType(), t))
	}
	if version < 1 {
		panic(fmt.Sprintf("eventstore: register %s: schema versions start at 1", example.EventType()))
	}
	c.types[example.EventType()] = codecEntry{version: version, typ: t}
}

// RegisterUpcaster adds the step that turns version `from` of eventType into version from+1.
func (c *Codec[E]) RegisterUpcaster(eventType string, from int, up Upcaster) {
	if c.upcasters[eventType] == nil {
		c.upcasters[eventType] = map[int]Upcaster{}
	}
	c.upcasters[eventType][from] = up
}

// Known reports whether eventType is registered.
func (c *Codec[E]) Known(eventType string) bool { _, ok := c.types[eventType]; return ok }

// Types lists the registered event types.
func (c *Codec[E]) Types() []string {
	out := make([]string, 0, len(c.types))
	for t := range c.types {
		out = append(out, t)
	}
	return out
}

// Encode turns an event value into its type name, schema version and JSON.
func (c *Codec[E]) Encode(e E) (eventType string, version int, data json.RawMessage, err error) {
	entry, ok := c.types[e.EventType()]
	if !ok {
		return "", 0, nil, fmt.Errorf("encode %q: %w", e.EventType(), ErrUnknownEventType)
	}
	data, err = json.Marshal(e)
	if err != nil {
		return "", 0, nil, fmt.Errorf("encode %q: %w", e.EventType(), err)
	}
	return e.EventType(), entry.version, data, nil
}

// Decode turns stored JSON back into an event value, upcasting old versions first.
// Unknown types, versions newer than this binary knows, and fields the current shape
// does not have are errors: a projection must stop rather than silently drop data.
func (c *Codec[E]) Decode(eventType string, version int, data json.RawMessage) (E, error) {
	var zero E
	entry, ok := c.types[eventType]
	if !ok {
		return zero, fmt.Errorf("decode %q: %w", eventType, ErrUnknownEventType)
	}
	if version > entry.version {
		return zero, fmt.Errorf("decode %q: schema version %d is newer than this binary's %d", eventType, version, entry.version)
	}
	if version < 1 {
		version = 1
	}
	for v := version; v < entry.version; v++ {
		up, ok := c.upcasters[eventType][v]
		if !ok {
			return zero, fmt.Errorf("decode %q: no upcaster from schema version %d", eventType, v)
		}
		var err error
		if data, err = up(data); err != nil {
			return zero, fmt.Errorf("decode %q: upcast from version %d: %w", eventType, v, err)
		}
	}
	ptr := reflect.New(entry.typ)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(ptr.Interface()); err != nil {
		return zero, fmt.Errorf("decode %q: %w", eventType, err)
	}
	// Register only accepts values of E, so the struct type is always one of E's members.
	return ptr.Elem().Interface().(E), nil
}

// DecodeRecorded decodes a recorded event's payload.
func (c *Codec[E]) DecodeRecorded(r RecordedEvent) (E, error) {
	return c.Decode(r.Type, r.SchemaVersion, r.Data)
}
