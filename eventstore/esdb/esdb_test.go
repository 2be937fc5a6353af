package esdb

import (
	"context"
	"os"
	"testing"
	"time"

	"selfreset/eventstore"
	"selfreset/eventstore/storetest"
)

// TestContract runs the shared event store contract suite against a real EventStoreDB,
// once with the default $all filter (every non-system stream, a server-side stream-name
// regex) and once with a stream-prefix filter (server-side prefixes). The suite keeps to
// streams of its own and reads the feed from the head it saw first, so the database need
// not be empty.
func TestContract(t *testing.T) {
	url := os.Getenv("SELFRESET_EVENTSTORE_URL")
	if url == "" {
		t.Skip("EventStoreDB contract suite: set SELFRESET_EVENTSTORE_URL=esdb://127.0.0.1:2113?tls=false (e.g. from docker compose up eventstoredb) to run it")
	}
	// One connection check first, so that a wrong URL fails once, not in every subtest.
	openForTest(t, url)
	t.Run("non-system streams", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) eventstore.Store {
			return openForTest(t, url)
		})
	})
	t.Run("stream prefixes", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) eventstore.Store {
			// Every stream of the suite is named "sttest<random>-...".
			return openForTest(t, url, WithStreamPrefixes("sttest"))
		})
	})
}

func openForTest(t *testing.T, url string, opts ...Option) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts = append([]Option{WithPageSize(64), WithLogger(testLogger(t))}, opts...)
	s, err := Open(ctx, url, opts...)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(s.Close)
	return s
}

// testLogger passes the client's warnings and errors to the test log, except the error it
// logs for every subscription that ends, cancelled ones included.
func testLogger(t *testing.T) func(level, format string, args ...any) {
	return func(level, format string, args ...any) {
		if (level == "error" || level == "warn") && format != "subscription has dropped. Reason: %v" {
			t.Logf("esdb client [%s] "+format, append([]any{level}, args...)...)
		}
	}
}
