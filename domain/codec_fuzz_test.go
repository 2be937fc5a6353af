package domain_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"selfreset/domain"
)

// FuzzEventCodec: decoding arbitrary stored bytes as any event type (or an unknown one)
// returns an event or an error, never panics; an event that decodes encodes to JSON that
// decodes to the same event again (compared through a second encoding, which is exact
// where time zones would defeat a deep comparison). Seeds: testdata/fuzz/FuzzEventCodec.
func FuzzEventCodec(f *testing.F) {
	codec := domain.NewCodec()
	events := domain.AllEvents()
	f.Add(uint8(0), 1, []byte(`{"code":"ACME","name":"Acme Care"}`))
	f.Fuzz(func(t *testing.T, which uint8, version int, data []byte) {
		eventType := "NoSuchEvent"
		if int(which) < len(events) {
			eventType = events[which].EventType()
		}
		ev, err := codec.Decode(eventType, version, data)
		if err != nil {
			if ev != nil {
				t.Fatalf("an error (%v) came with an event %#v", err, ev)
			}
			return
		}
		if ev.EventType() != eventType {
			t.Fatalf("decoded %s as %s", eventType, ev.EventType())
		}
		typ, v, j1, err := codec.Encode(ev)
		if err != nil {
			// Only values JSON cannot write (a time past year 9999) may fail here, and
			// such a time does not decode from RFC 3339 in the first place.
			t.Fatalf("encode %#v: %v", ev, err)
		}
		ev2, err := codec.Decode(typ, v, j1)
		if err != nil {
			t.Fatalf("decode own encoding %s: %v", j1, err)
		}
		_, _, j2, err := codec.Encode(ev2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(j1, j2) || !json.Valid(j1) {
			t.Fatalf("round trip changed %s into %s", j1, j2)
		}
	})
}
