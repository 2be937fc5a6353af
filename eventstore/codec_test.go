package eventstore_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"selfreset/eventstore"
)

// A two-member event family, so the generic codec is tested apart from the domain's.
type shape interface{ eventstore.Typed }

type circle struct {
	Radius int `json:"radius"`
}

type square struct {
	Side int `json:"side"`
}

func (circle) EventType() string { return "Circle" }
func (square) EventType() string { return "Square" }

// newShapes knows Circle at version 2: version 1 called the field "r".
func newShapes() *eventstore.Codec[shape] {
	c := eventstore.NewCodec[shape]()
	c.Register(circle{}, 2)
	c.Register(square{}, 1)
	c.RegisterUpcaster("Circle", 1, func(data json.RawMessage) (json.RawMessage, error) {
		var v1 struct {
			R int `json:"r"`
		}
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(circle{Radius: v1.R})
	})
	return c
}

func TestCodecDecode(t *testing.T) {
	c := newShapes()
	for _, tc := range []struct {
		name, typ, data string
		version         int
		want            shape
		err             string
	}{
		{name: "current", typ: "Circle", version: 2, data: `{"radius":3}`, want: circle{Radius: 3}},
		{name: "upcast from 1", typ: "Circle", version: 1, data: `{"r":4}`, want: circle{Radius: 4}},
		{name: "missing version means 1", typ: "Circle", version: 0, data: `{"r":5}`, want: circle{Radius: 5}},
		{name: "other member", typ: "Square", version: 1, data: `{"side":2}`, want: square{Side: 2}},
		{name: "unknown type", typ: "Triangle", version: 1, data: `{}`, err: "unknown event type"},
		{name: "newer than binary", typ: "Square", version: 2, data: `{"side":2}`, err: "newer than this binary"},
		{name: "unknown field", typ: "Square", version: 1, data: `{"side":2,"colour":"red"}`, err: "unknown field"},
		{name: "not json", typ: "Square", version: 1, data: `{`, err: "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Decode(tc.typ, tc.version, json.RawMessage(tc.data))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || got != nil {
					t.Fatalf("got %#v, %v; want no event and an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %#v, %v; want %#v", got, err, tc.want)
			}
		})
	}
	if _, err := c.Decode("Triangle", 1, nil); !errors.Is(err, eventstore.ErrUnknownEventType) {
		t.Fatalf("unknown type: %v, want ErrUnknownEventType", err)
	}
}

func TestCodecEncodeRoundTrip(t *testing.T) {
	c := newShapes()
	typ, version, data, err := c.Encode(circle{Radius: 7})
	if err != nil || typ != "Circle" || version != 2 || string(data) != `{"radius":7}` {
		t.Fatalf("encode: %s v%d %s %v", typ, version, data, err)
	}
	got, err := c.DecodeRecorded(eventstore.RecordedEvent{Type: typ, SchemaVersion: version, Data: data})
	if err != nil || got != (circle{Radius: 7}) {
		t.Fatalf("decode own encoding: %#v, %v", got, err)
	}
	if _, _, _, err := eventstore.NewCodec[shape]().Encode(square{}); !errors.Is(err, eventstore.ErrUnknownEventType) {
		t.Fatalf("encode unregistered: %v, want ErrUnknownEventType", err)
	}
}

func TestCodecMissingUpcaster(t *testing.T) {
	c := eventstore.NewCodec[shape]()
	c.Register(circle{}, 3)
	c.RegisterUpcaster("Circle", 2, func(d json.RawMessage) (json.RawMessage, error) { return d, nil })
	if _, err := c.Decode("Circle", 1, json.RawMessage(`{"radius":1}`)); err == nil || !strings.Contains(err.Error(), "no upcaster from schema version 1") {
		t.Fatalf("got %v, want the missing step named", err)
	}
}
