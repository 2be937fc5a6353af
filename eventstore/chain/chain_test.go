package chain

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"selfreset/eventstore"
)

func TestCanonical(t *testing.T) {
	// Each pair is one value as Go writes it and as PostgreSQL's jsonb gives it back.
	cases := []struct{ name, a, b string }{
		{"key order and space", `{"b":1,"a":[true,null]}`, `{"a": [true, null], "b": 1}`},
		{"html escapes", `{"s":"\u003cb\u003e \u0026"}`, `{"s": "<b> &"}`},
		{"unicode escapes", `{"s":"x\u00e9y"}`, `{"s": "xéy"}`},
		{"float forms", `{"f":1e+21,"g":2.5}`, `{"f": 1000000000000000000000, "g": 2.50}`},
		{"empty is null", ``, `null`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Canonical(json.RawMessage(tc.a))
			if err != nil {
				t.Fatal(err)
			}
			b, err := Canonical(json.RawMessage(tc.b))
			if err != nil {
				t.Fatal(err)
			}
			if string(a) != string(b) {
				t.Errorf("Canonical(%s) = %s, Canonical(%s) = %s", tc.a, a, tc.b, b)
			}
		})
	}
	if _, err := Canonical(json.RawMessage(`{"a":`)); err == nil {
		t.Error("Canonical of broken JSON succeeded")
	}
}

func TestHashCoversEveryField(t *testing.T) {
	base := Fields{
		Stream: "user-ACME-bob", Revision: 3, ID: uuid.MustParse("0b7e3e4c-1f7a-4d6e-9c1e-0d1c2b3a4f5e"),
		Type: "LoginFailed", SchemaVersion: 1, OccurredAt: time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC),
		Data:     json.RawMessage(`{"reason":"wrong_password"}`),
		Metadata: eventstore.Metadata{Actor: "user:bob", ClientIP: "192.0.2.1"},
	}
	h0, err := Hash(base, "prev")
	if err != nil {
		t.Fatal(err)
	}
	if len(h0) != HashLen {
		t.Fatalf("hash %q has length %d, want %d", h0, len(h0), HashLen)
	}
	same := base
	same.OccurredAt = base.OccurredAt.In(time.FixedZone("x", 3600)).Truncate(time.Microsecond)
	same.Data = json.RawMessage(`{"reason": "wrong_password"}`)
	same.Metadata.Chain = "ignored"
	if h, _ := Hash(same, "prev"); h != h0 {
		t.Errorf("hash changed with zone, sub-microsecond digits, JSON spacing or the chain field")
	}
	edits := map[string]func(f *Fields){
		"stream":         func(f *Fields) { f.Stream = "user-ACME-eve" },
		"revision":       func(f *Fields) { f.Revision = 4 },
		"id":             func(f *Fields) { f.ID = uuid.New() },
		"type":           func(f *Fields) { f.Type = "LoginSucceeded" },
		"schema version": func(f *Fields) { f.SchemaVersion = 2 },
		"occurred at":    func(f *Fields) { f.OccurredAt = f.OccurredAt.Add(time.Microsecond) },
		"data":           func(f *Fields) { f.Data = json.RawMessage(`{"reason":"locked"}`) },
		"metadata":       func(f *Fields) { f.Metadata.ClientIP = "192.0.2.2" },
	}
	for name, edit := range edits {
		f := base
		edit(&f)
		if h, _ := Hash(f, "prev"); h == h0 {
			t.Errorf("editing the %s leaves the hash unchanged", name)
		}
	}
	if h, _ := Hash(base, "other"); h == h0 {
		t.Error("the previous hash is not covered")
	}
}

func TestLink(t *testing.T) {
	events := []eventstore.EventData{
		{ID: uuid.New(), Type: "A", SchemaVersion: 1, OccurredAt: time.Now(), Data: json.RawMessage(`{}`)},
		{ID: uuid.New(), Type: "B", SchemaVersion: 1, OccurredAt: time.Now(), Data: json.RawMessage(`{}`)},
	}
	last, err := Link("s", 5, "p", events)
	if err != nil {
		t.Fatal(err)
	}
	h0, _ := Hash(OfData("s", 5, events[0]), "p")
	h1, _ := Hash(OfData("s", 6, events[1]), h0)
	if events[0].Metadata.Chain != h0 || events[1].Metadata.Chain != h1 || last != h1 {
		t.Errorf("Link set %q, %q (last %q), want %q, %q", events[0].Metadata.Chain, events[1].Metadata.Chain, last, h0, h1)
	}
	if events[0].OccurredAt.Nanosecond()%1000 != 0 {
		t.Error("Link left sub-microsecond digits, which PostgreSQL would drop")
	}
}

func BenchmarkHash(b *testing.B) {
	f := Fields{
		Stream: "user-ACME-bob", Revision: 3, ID: uuid.New(), Type: "ResetRequestRejected", SchemaVersion: 1,
		OccurredAt: time.Now(),
		Data:       json.RawMessage(`{"reason":"admin_locked","provider":"ACME","login":"bob","email_masked":"b***b@e***e.org","email_hash":"3eb1bd43:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}`),
		Metadata:   eventstore.Metadata{Actor: "anonymous", CorrelationID: uuid.NewString(), CausationID: uuid.NewString(), ClientIP: "203.0.113.7", UserAgent: "Mozilla/5.0"},
	}
	for b.Loop() {
		if _, err := Hash(f, "prev"); err != nil {
			b.Fatal(err)
		}
	}
}
