// Package teststore gives the command, read-side, mailer and http tests the event store to
// run against: in memory under `go test -short`, PostgreSQL in the full run, or the
// EventStoreDB server named by SELFRESET_EVENTSTORE_URL when that is set, so that every
// adapter goes through the same tests (the order is below).
//
// Postgres and EventStoreDB differ in one way the tests must respect. Each test gets a Postgres event store
// of its own (the database internal/testdb made for it), but an EventStoreDB server is
// shared by every test and package running at the same time and is never wiped: its
// streams and its global feed also hold other tests' events and those of earlier runs.
// So on EventStoreDB a test must
//
//   - use provider codes of its own (ProviderCode), which makes its provider and user
//     streams its own too;
//   - keep, from the shared unmatched-requests stream, only the requests for the codes it
//     attempted (EventProvider);
//   - when it reads the global feed, or read models fed from it, look only at its own
//     providers' events and rows (EventProvider), and expect other events before, between
//     and after its own.
//
// On Postgres ProviderCode returns its argument, so every test there sees exactly what it
// saw before this package existed.
//
// Which store, in order:
//
//  1. SELFRESET_TEST_EVENTSTORE=memory (EnvKind): the in-memory adapter (eventstore/memory),
//     whatever else is set.
//  2. SELFRESET_EVENTSTORE_URL (EnvURL) set: that EventStoreDB server, -short or not.
//  3. `go test -short`: the in-memory adapter. This is the tier without any database: the
//     command tests (and the http handler tests, see http/env_test.go) run on it, and the
//     tests that need PostgreSQL for anything else skip (internal/testdb.New).
//  4. Otherwise PostgreSQL, in the test's own database: the full run (`make test`) takes
//     the same tests through the Postgres adapter, so both adapters go through them. The
//     memory adapter also passes the whole contract suite (eventstore/storetest) that the
//     Postgres one does, so the -short tier checks the same behaviour, minus PostgreSQL.
//
// The memory store is fresh and private per test, so the tests behave as on Postgres.
// Open is for tests that need nothing of PostgreSQL but the event store; New for those
// that keep read models in a Postgres database of their own as well.
package teststore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/esdb"
	"selfreset/eventstore/memory"
	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
)

// EnvURL names the variable holding the EventStoreDB connection string, e.g.
// esdb://127.0.0.1:2113?tls=false. The EventStoreDB contract suite reads the same one.
const EnvURL = "SELFRESET_EVENTSTORE_URL"

// EnvKind names the variable that picks a store other than the default; its one value
// is KindMemory.
const EnvKind = "SELFRESET_TEST_EVENTSTORE"

// KindMemory is the value of EnvKind that selects the in-memory event store.
const KindMemory = "memory"

// Kind names the event store the tests run against (see the package comment): "memory"
// when EnvKind says so, else "esdb" when EnvURL is set, else "memory" under -short, else
// "postgres". For messages, and for the few assertions that only hold on a private store.
func Kind() string {
	if k := envKind(); k != "" {
		return k
	}
	if testing.Short() {
		return KindMemory
	}
	return "postgres"
}

// envKind is the kind the environment variables choose, "" when they leave it to -short.
// It is safe before the test flags are parsed (package init), which testing.Short is not.
func envKind() string {
	switch {
	case os.Getenv(EnvKind) == KindMemory:
		return KindMemory
	case os.Getenv(EnvURL) != "":
		return "esdb"
	}
	return ""
}

// Shared reports whether the event store is shared with other tests and earlier runs
// (EventStoreDB) rather than private to the test (Postgres, memory). Unlike Kind it may be
// called from a test package's init.
func Shared() bool { return envKind() == "esdb" }

// Open returns the event store for a test that needs no other PostgreSQL table: the one
// Kind names, closed when t ends. On PostgreSQL it is in a new database of the test's own
// (internal/testdb); the other kinds need no database, so Open never skips under -short.
func Open(t *testing.T) eventstore.Store {
	t.Helper()
	if Kind() == "postgres" {
		return New(t, testdb.New(t))
	}
	return New(t, "")
}

// New returns the event store for t, closed when t ends, by Kind: the Postgres event
// store in the database at pgURL (migrated, polling every 50ms so that subscriptions in
// tests never wait long for a missed notification); the EventStoreDB server EnvURL names,
// its feed narrowed to this service's streams (domain.StreamPrefixes); or a new in-memory
// store. pgURL is unused by the last two: read models still live in Postgres, in whatever
// database the test opens itself.
func New(t *testing.T, pgURL string) eventstore.Store {
	t.Helper()
	if v := os.Getenv(EnvKind); v != "" && v != KindMemory {
		t.Fatalf("teststore: %s=%q: the only value is %q (unset: PostgreSQL, EventStoreDB with %s, memory under -short)", EnvKind, v, KindMemory, EnvURL)
	}
	if Kind() == KindMemory {
		s := memory.New()
		t.Cleanup(s.Close)
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if url := os.Getenv(EnvURL); url != "" {
		s, err := esdb.Open(ctx, url, esdb.WithStreamPrefixes(domain.StreamPrefixes...), esdb.WithLogger(testLogger(t)))
		if err != nil {
			// The URL may hold a password: name the variable, not its value.
			t.Fatalf("teststore: cannot open the EventStoreDB server in %s: %v\n"+
				"Start one (docker compose up -d eventstoredb) or unset %s to run on PostgreSQL.", EnvURL, err, EnvURL)
		}
		t.Cleanup(s.Close)
		return s
	}
	s, err := postgres.Open(ctx, pgURL, postgres.WithPollInterval(50*time.Millisecond))
	if err != nil {
		t.Fatalf("teststore: open the Postgres event store: %v", err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("teststore: migrate the Postgres event store: %v", err)
	}
	return s
}

// suffixLen is how many random characters ProviderCode appends on EventStoreDB: 40 bits,
// so that codes of tests running at once or in earlier runs do not meet.
const suffixLen = 8

// ProviderCode returns the provider code a test should use where it would use base: base
// itself on Postgres (each test has a database of its own), and base followed by random
// upper-case letters and digits on EventStoreDB (the server is shared and never wiped, so
// every test needs providers, and hence user streams, of its own). base must leave room
// for the suffix: at most 24 characters of [A-Z0-9], and at least 2 on Postgres.
func ProviderCode(t *testing.T, base string) string {
	t.Helper()
	code := base
	if Shared() {
		code += rand.Text()[:suffixLen] // RFC 4648 base32: A-Z and 2-7
	}
	if !domain.ValidProviderCode(code) {
		t.Fatalf("teststore: provider code %q (from %q) is not 2 to 32 characters of [A-Z0-9]", code, base)
	}
	return code
}

// StreamProvider is the provider code in the name of a provider or user stream, and ""
// for any other stream (unmatched-requests among them: see EventProvider).
func StreamProvider(stream string) string {
	if code, ok := strings.CutPrefix(stream, domain.ProviderStreamPrefix); ok {
		return code
	}
	if rest, ok := strings.CutPrefix(stream, domain.UserStreamPrefix); ok {
		code, _, _ := strings.Cut(rest, "-")
		return code
	}
	return ""
}

// EventProvider is the provider an event belongs to: the one its stream is named after,
// or, for a request on an unmatched-requests stream, the (normalized) code it attempted.
// It is "" when there is none. A test on the shared EventStoreDB keeps the events whose
// provider is one of its own codes.
func EventProvider(r eventstore.RecordedEvent) string {
	if domain.IsUnmatchedStream(r.Stream) {
		// ResetRequestRejected and LoginFailed both say what was attempted in "provider".
		var d struct {
			Provider string `json:"provider"`
		}
		if json.Unmarshal(r.Data, &d) != nil {
			return ""
		}
		return domain.NormalizeProviderCode(d.Provider)
	}
	return StreamProvider(r.Stream)
}

// testLogger passes the EventStoreDB client's warnings and errors to the test log, except
// the error it logs each time a subscription ends (cancelled ones included). Lines logged
// after t has ended (the client's goroutines may outlive it briefly) are dropped: t.Logf
// would panic.
func testLogger(t *testing.T) func(level, format string, args ...any) {
	var (
		mu    sync.Mutex
		ended bool
	)
	// Registered before the store's Close, so it runs after it (clean-ups run last first):
	// what Close logs still reaches the test log.
	t.Cleanup(func() {
		mu.Lock()
		ended = true
		mu.Unlock()
	})
	return func(level, format string, args ...any) {
		if (level != "error" && level != "warn") || format == "subscription has dropped. Reason: %v" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !ended {
			t.Logf("esdb client [%s] "+format, append([]any{level}, args...)...)
		}
	}
}

// ReadUnmatched reads every stream that holds unmatched requests (domain.UnmatchedStreams:
// the legacy stream and its shards), merged in feed order.
func ReadUnmatched(ctx context.Context, store eventstore.Store) ([]eventstore.RecordedEvent, error) {
	var out []eventstore.RecordedEvent
	for _, stream := range domain.UnmatchedStreams() {
		recs, err := store.ReadStream(ctx, stream, 0)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Position.Less(out[j].Position) })
	return out, nil
}
