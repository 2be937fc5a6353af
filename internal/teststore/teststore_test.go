package teststore

import (
	"encoding/json"
	"strings"
	"testing"

	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/memory"
)

func TestProviderCode(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		t.Setenv(EnvKind, "")
		t.Setenv(EnvURL, "")
		want := "postgres"
		if testing.Short() {
			want = KindMemory // the tier without a database
		}
		if Kind() != want || Shared() {
			t.Fatalf("Kind() = %q without %s, want %q", Kind(), EnvURL, want)
		}
		if got := ProviderCode(t, "ACME"); got != "ACME" {
			t.Errorf("ProviderCode(ACME) = %q on %s, want ACME", got, want)
		}
	})
	t.Run("esdb", func(t *testing.T) {
		// Only the variable is looked at here (it wins over -short): no server is contacted.
		t.Setenv(EnvKind, "")
		t.Setenv(EnvURL, "esdb://127.0.0.1:2113?tls=false")
		if Kind() != "esdb" || !Shared() {
			t.Fatalf("Kind() = %q with %s set", Kind(), EnvURL)
		}
		seen := map[string]bool{}
		for range 100 {
			code := ProviderCode(t, "ACME")
			if !strings.HasPrefix(code, "ACME") || len(code) != 4+suffixLen || !domain.ValidProviderCode(code) {
				t.Fatalf("ProviderCode(ACME) = %q", code)
			}
			if seen[code] {
				t.Fatalf("ProviderCode(ACME) returned %q twice", code)
			}
			seen[code] = true
		}
		if code := ProviderCode(t, strings.Repeat("X", 24)); len(code) != 32 || !domain.ValidProviderCode(code) {
			t.Errorf("ProviderCode of a 24-character base = %q", code)
		}
	})
}

func TestMemory(t *testing.T) {
	// The memory store wins over an EventStoreDB URL, and is private like Postgres.
	t.Setenv(EnvKind, KindMemory)
	t.Setenv(EnvURL, "esdb://127.0.0.1:2113?tls=false")
	if Kind() != KindMemory || Shared() {
		t.Fatalf("Kind() = %q, Shared() = %v with %s=%s", Kind(), Shared(), EnvKind, KindMemory)
	}
	if got := ProviderCode(t, "ACME"); got != "ACME" {
		t.Errorf("ProviderCode(ACME) = %q on the memory store, want ACME", got)
	}
	a, b := New(t, ""), New(t, "")
	if _, ok := a.(*memory.Store); !ok {
		t.Fatalf("New returned a %T, want *memory.Store", a)
	}
	if a == b {
		t.Error("two calls to New share one store; each test needs its own")
	}
	if c := Open(t); c == a || c == b {
		t.Error("Open returned a store New had returned")
	} else if _, ok := c.(*memory.Store); !ok {
		t.Errorf("Open returned a %T, want *memory.Store", c)
	}
}

func TestEventProvider(t *testing.T) {
	data := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		rec  eventstore.RecordedEvent
		want string
	}{
		{eventstore.RecordedEvent{Stream: domain.ProviderStream("ACME12AB")}, "ACME12AB"},
		{eventstore.RecordedEvent{Stream: domain.UserStream("ACME12AB", "jane.doe@x")}, "ACME12AB"},
		{eventstore.RecordedEvent{Stream: "user-NOPE-feed"}, "NOPE"},
		{eventstore.RecordedEvent{Stream: domain.UnmatchedStream,
			Data: data(domain.ResetRequestRejected{Reason: "unknown_account", Provider: "ACME12AB", Login: "nobody"})}, "ACME12AB"},
		{eventstore.RecordedEvent{Stream: domain.UnmatchedStream,
			Data: data(domain.LoginFailed{Reason: "unknown_account", Provider: "acme12ab", Login: "ghost"})}, "ACME12AB"},
		{eventstore.RecordedEvent{Stream: domain.UnmatchedStream, Data: json.RawMessage(`not json`)}, ""},
		{eventstore.RecordedEvent{Stream: "sttest0123-a"}, ""},
	} {
		if got := EventProvider(c.rec); got != c.want {
			t.Errorf("EventProvider(%s %s) = %q, want %q", c.rec.Stream, c.rec.Data, got, c.want)
		}
	}
}
