package audit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/chain"
	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
)

var (
	sealKey = Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}
	t0      = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
)

// world is a PostgreSQL event store on a database of its own, with a clock and a sealer.
type world struct {
	t      testing.TB
	ctx    context.Context
	store  *postgres.Store
	pool   *pgxpool.Pool
	codec  *domain.Codec
	clock  *testkit.Clock
	sealer *Sealer
	last   eventstore.Position // where the newest append landed
}

// settledFeed reads the feed as if no append were still in flight: a page that ends short of
// the newest append is read again. PostgreSQL's feed may trail an append that has ended
// (its watermark can err low while transactions of other databases end); the sealer
// then seals fewer events, which is right but would make these tests' counts vary.
type settledFeed struct {
	eventstore.Store
	w *world
}

func (f *settledFeed) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	for {
		page, err := f.Store.ReadAll(ctx, after, limit)
		if err != nil || len(page) == limit || !after.Less(f.w.last) ||
			(len(page) > 0 && !page[len(page)-1].Position.Less(f.w.last)) {
			return page, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func newWorld(t testing.TB) *world {
	t.Helper()
	timeout := 60 * time.Second
	if _, ok := t.(*testing.B); ok {
		timeout = time.Hour // a million events take minutes on a busy machine
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	s, err := postgres.Open(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, ctx: ctx, store: s, pool: s.Pool(), codec: domain.NewCodec(), clock: testkit.NewClock(t0)}
	w.sealer = &Sealer{Store: &settledFeed{Store: s, w: w}, Codec: w.codec, Key: sealKey, Clock: w.clock}
	return w
}

// given appends events to stream, one append each, a minute apart on the clock.
func (w *world) given(stream string, events ...domain.Event) {
	w.t.Helper()
	for _, e := range events {
		typ, v, data, err := w.codec.Encode(e)
		if err != nil {
			w.t.Fatal(err)
		}
		w.clock.Add(time.Minute)
		res, err := w.store.Append(w.ctx, stream, eventstore.Any, eventstore.EventData{
			ID: uuid.New(), Type: typ, SchemaVersion: v, OccurredAt: w.clock.Now(), Data: data,
			Metadata: eventstore.Metadata{Actor: "system:test", ClientIP: "192.0.2.1"},
		})
		if err != nil {
			w.t.Fatal(err)
		}
		w.last = res.Position
	}
}

func (w *world) seal() {
	w.t.Helper()
	if _, err := w.sealer.SealOnce(w.ctx); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) exec(sql string, args ...any) {
	w.t.Helper()
	if _, err := w.pool.Exec(w.ctx, sql, args...); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
}

func (w *world) verify(opts VerifyOptions) Report {
	w.t.Helper()
	if opts.Keys == nil {
		opts.Keys = Keys{sealKey.ID: sealKey.Secret}
	}
	rep, err := Verify(w.ctx, &settledFeed{Store: w.store, w: w}, w.codec, opts)
	if err != nil {
		w.t.Fatal(err)
	}
	return rep
}

const (
	acmeStream = "provider-ACME"
	bob        = "user-ACME-bob"
	eve        = "user-ACME-eve"
)

// history writes a small history over three streams: a first part sealed, then more.
func (w *world) history() {
	w.given(acmeStream, domain.ProviderRegistered{Code: "ACME", Name: "Acme"})
	w.given(bob, domain.UserRegistered{Provider: "ACME", Login: "bob", DisplayName: "Bob", PasswordHash: "$argon2id$x"})
	w.given(eve, domain.UserRegistered{Provider: "ACME", Login: "eve", DisplayName: "Eve", PasswordHash: "$argon2id$y"})
	w.given(bob, domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1},
		domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 2})
	w.given(eve, domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1})
	w.seal()
	w.given(bob, domain.LoginSucceeded{}, domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1})
	w.seal()
	w.given(eve, domain.LoginSucceeded{})
}

func TestVerifyUntouched(t *testing.T) {
	w := newWorld(t)
	w.history()
	rep := w.verify(VerifyOptions{})
	if rep.Break != nil {
		t.Fatalf("untouched history: break %s", rep.Break)
	}
	// 9 events + 2 seals read; the seals cover the 8 events before them; 1 unsealed.
	if rep.Events != 11 || rep.Checked != 11 || rep.Seals != 2 || rep.SealedEvents != 8 || rep.Unsealed != 1 || rep.BeforeChaining != 0 {
		t.Errorf("report %+v", rep)
	}
	if !rep.SignaturesChecked {
		t.Error("signatures not checked although a key was given")
	}
	if sealedAgain, err := w.sealer.SealOnce(w.ctx); err != nil || !sealedAgain {
		t.Fatalf("SealOnce over one new event = %v, %v", sealedAgain, err)
	}
	if sealedAgain, err := w.sealer.SealOnce(w.ctx); err != nil || sealedAgain {
		t.Fatalf("SealOnce with only seals since = %v, %v; want no seal", sealedAgain, err)
	}
	if rep := w.verify(VerifyOptions{}); rep.Break != nil || rep.Unsealed != 0 || rep.Seals != 3 {
		t.Errorf("after the last seal: %+v", rep)
	}
}

// TestVerifyNamesTheFirstBreak tampers with the history in PostgreSQL as someone with
// write access to the database would, and checks that verify names the place.
func TestVerifyNamesTheFirstBreak(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(w *world)
		stream string
		rev    uint64
		what   string
	}{
		{
			name: "a refusal's reason edited",
			tamper: func(w *world) {
				w.exec(`UPDATE events SET data = jsonb_set(data, '{reason}', '"locked"') WHERE stream = $1 AND revision = 2`, bob)
			},
			stream: bob, rev: 2, what: "does not match its chain value",
		},
		{
			name: "metadata edited",
			tamper: func(w *world) {
				w.exec(`UPDATE events SET metadata = jsonb_set(metadata, '{client_ip}', '"203.0.113.9"') WHERE stream = $1 AND revision = 1`, eve)
			},
			stream: eve, rev: 1, what: "does not match its chain value",
		},
		{
			name: "occurred-at moved",
			tamper: func(w *world) {
				w.exec(`UPDATE events SET occurred_at = occurred_at - interval '1 day' WHERE stream = $1 AND revision = 1`, bob)
			},
			stream: bob, rev: 1, what: "does not match its chain value",
		},
		{
			name:   "an event in the middle of a stream deleted",
			tamper: func(w *world) { w.exec(`DELETE FROM events WHERE stream = $1 AND revision = 1`, bob) },
			stream: bob, rev: 2, what: "revision 1 is missing",
		},
		{
			name: "the last sealed event of a stream deleted",
			tamper: func(w *world) {
				w.exec(`DELETE FROM events WHERE stream = $1 AND revision = 1`, eve) // the stream's chain still looks whole
			},
			stream: domain.SealStream, rev: 0, what: "counted 6 events, the feed now holds 5",
		},
		{
			name: "two events of a stream swapped in the feed",
			tamper: func(w *world) {
				swapFeedPlaces(w, bob, 1, bob, 2)
			},
			stream: bob, rev: 2, what: "revision 1 is missing",
		},
		{
			name:   "events of two streams swapped in the feed",
			tamper: func(w *world) { swapFeedPlaces(w, bob, 0, eve, 0) },
			stream: domain.SealStream, rev: 0, what: "has digest",
		},
		{
			name: "an event edited and its chain recomputed",
			tamper: func(w *world) {
				w.exec(`UPDATE events SET data = jsonb_set(data, '{reason}', '"locked"') WHERE stream = $1 AND revision = 2`, bob)
				rechain(w, bob)
			},
			stream: domain.SealStream, rev: 0, what: "has digest",
		},
		{
			name: "a seal edited",
			tamper: func(w *world) {
				w.exec(`UPDATE events SET data = jsonb_set(data, '{count}', '5') WHERE stream = $1 AND revision = 0`, domain.SealStream)
			},
			stream: domain.SealStream, rev: 0, what: "signature is not valid",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.history()
			tc.tamper(w)
			rep := w.verify(VerifyOptions{})
			if rep.Break == nil {
				t.Fatalf("no break found; report %+v", rep)
			}
			if rep.Break.Stream != tc.stream || rep.Break.Revision != tc.rev || !strings.Contains(rep.Break.What, tc.what) {
				t.Fatalf("break %s; want %s@%d: …%s…", rep.Break, tc.stream, tc.rev, tc.what)
			}
		})
	}
}

// swapFeedPlaces swaps the feed positions of two events, leaving all else as it was.
func swapFeedPlaces(w *world, s1 string, r1 uint64, s2 string, r2 uint64) {
	w.t.Helper()
	type place struct {
		seq  int64
		txID string
	}
	get := func(s string, r uint64) place {
		var p place
		if err := w.pool.QueryRow(w.ctx, `SELECT seq, tx_id::text FROM events WHERE stream = $1 AND revision = $2`, s, r).Scan(&p.seq, &p.txID); err != nil {
			w.t.Fatal(err)
		}
		return p
	}
	a, b := get(s1, r1), get(s2, r2)
	w.exec(`UPDATE events SET seq = -1 WHERE seq = $1`, a.seq)
	w.exec(`UPDATE events SET seq = $1, tx_id = $2::xid8 WHERE seq = $3`, a.seq, a.txID, b.seq)
	w.exec(`UPDATE events SET seq = $1, tx_id = $2::xid8 WHERE seq = -1`, b.seq, b.txID)
}

// rechain recomputes and stores the chain values of stream, as a forger without the seal
// key would after editing an event.
func rechain(w *world, stream string) {
	w.t.Helper()
	events, err := w.store.ReadStream(w.ctx, stream, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	prev := ""
	for _, e := range events {
		h, err := chain.Hash(chain.OfRecorded(e), prev)
		if err != nil {
			w.t.Fatal(err)
		}
		w.exec(`UPDATE events SET metadata = jsonb_set(metadata, '{chain}', to_jsonb($1::text)) WHERE stream = $2 AND revision = $3`, h, stream, e.Revision)
		prev = h
	}
}

func TestVerifyBeforeChaining(t *testing.T) {
	w := newWorld(t)
	w.given(acmeStream, domain.ProviderRegistered{Code: "ACME", Name: "Acme"})
	w.given(bob, domain.UserRegistered{Provider: "ACME", Login: "bob", DisplayName: "Bob", PasswordHash: "$argon2id$x"},
		domain.LoginSucceeded{})
	// What a store written before chaining holds: no chain values at all.
	w.exec(`UPDATE events SET metadata = metadata - 'chain'`)
	w.given(bob, domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1})
	w.seal()
	w.given(eve, domain.UserRegistered{Provider: "ACME", Login: "eve", DisplayName: "Eve", PasswordHash: "$argon2id$y"})

	rep := w.verify(VerifyOptions{})
	if rep.Break != nil {
		t.Fatalf("history begun before chaining reported as tampered: %s", rep.Break)
	}
	if rep.BeforeChaining != 3 || rep.Checked != 3 || rep.Seals != 1 || rep.SealedEvents != 4 || rep.Unsealed != 1 {
		t.Errorf("report %+v", rep)
	}

	t.Run("an unchained event after chained ones is a break", func(t *testing.T) {
		w.given(bob, domain.LoginSucceeded{})
		w.exec(`UPDATE events SET metadata = metadata - 'chain' WHERE stream = $1 AND revision = 3`, bob)
		rep := w.verify(VerifyOptions{})
		if rep.Break == nil || rep.Break.Stream != bob || rep.Break.Revision != 3 {
			t.Fatalf("break %v, want %s@3; %+v", rep.Break, bob, rep)
		}
	})
}

func TestVerifyKeysAndScope(t *testing.T) {
	w := newWorld(t)
	w.history()
	w.given("user-OTHER-zed", domain.UserRegistered{Provider: "OTHER", Login: "zed", DisplayName: "Zed", PasswordHash: "$argon2id$z"})
	w.exec(`UPDATE events SET data = jsonb_set(data, '{display_name}', '"Zorro"') WHERE stream = 'user-OTHER-zed'`)

	if rep := w.verify(VerifyOptions{Provider: "ACME"}); rep.Break != nil {
		t.Errorf("ACME's history reported broken by another provider's edit: %s", rep.Break)
	}
	if rep := w.verify(VerifyOptions{Provider: "OTHER"}); rep.Break == nil || rep.Break.Stream != "user-OTHER-zed" {
		t.Errorf("OTHER: break %v, want user-OTHER-zed", rep.Break)
	}
	if rep := w.verify(VerifyOptions{Since: w.clock.Now().Add(time.Minute)}); rep.Break != nil {
		t.Errorf("an edit before --since reported: %s", rep.Break)
	}
	rep := w.verify(VerifyOptions{Keys: Keys{"k2": []byte("another key of thirty-two bytes!!")}})
	if rep.Break == nil || !strings.Contains(rep.Break.What, `key "k1"`) {
		t.Errorf("seal under an unknown key: break %v", rep.Break)
	}
	forger := Key{ID: sealKey.ID, Secret: []byte("not the real key, but as long...")}
	rep = w.verify(VerifyOptions{Provider: "ACME", Keys: Keys{forger.ID: forger.Secret}})
	if rep.Break == nil || !strings.Contains(rep.Break.What, "signature is not valid") {
		t.Errorf("seal checked with the wrong key: break %v", rep.Break)
	}
}

func TestSealerCutsLongRanges(t *testing.T) {
	w := newWorld(t)
	w.history()
	w.sealer = &Sealer{Store: &settledFeed{Store: w.store, w: w}, Codec: w.codec, Key: sealKey, Clock: w.clock, MaxEvents: 2}
	w.given("user-ACME-amy", domain.UserRegistered{Provider: "ACME", Login: "amy", DisplayName: "Amy", PasswordHash: "$argon2id$a"},
		domain.LoginSucceeded{}, domain.LoginSucceeded{})
	n := 0
	for {
		ok, err := w.sealer.SealOnce(w.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		n++
	}
	if n != 2 { // 4 unsealed events, 2 per seal
		t.Errorf("%d seals appended, want 2", n)
	}
	if rep := w.verify(VerifyOptions{}); rep.Break != nil || rep.Unsealed != 0 || rep.Seals != 4 {
		t.Errorf("report %+v", rep)
	}
}

// stallingFeed answers ReadAll with nothing, stalls times, once the reader is past from.
type stallingFeed struct {
	eventstore.Store
	from   eventstore.Position
	stalls int
}

func (f *stallingFeed) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	if f.stalls > 0 && f.from.Less(after) {
		f.stalls--
		return nil, nil
	}
	return f.Store.ReadAll(ctx, after, limit)
}

// TestVerifyWaitsForASealedRange: a feed that trails for a moment inside a sealed range is
// not a deletion; one that stays short is.
func TestVerifyWaitsForASealedRange(t *testing.T) {
	w := newWorld(t)
	w.history()
	first, err := w.store.ReadAll(w.ctx, eventstore.Start, 1)
	if err != nil || len(first) != 1 {
		t.Fatal(first, err)
	}
	opts := VerifyOptions{Keys: Keys{sealKey.ID: sealKey.Secret}, PageSize: 2}
	rep, err := Verify(w.ctx, &stallingFeed{Store: &settledFeed{Store: w.store, w: w}, from: first[0].Position, stalls: 3}, w.codec, opts)
	if err != nil || rep.Break != nil || rep.Seals != 2 {
		t.Errorf("a feed trailing three reads: %+v %v", rep, err)
	}
	rep, err = Verify(w.ctx, &stallingFeed{Store: w.store, from: first[0].Position, stalls: 1000}, w.codec, opts)
	if err != nil || rep.Break == nil || rep.Break.Stream != domain.SealStream {
		t.Errorf("a feed that stays short of the sealed range: %+v %v", rep, err)
	}
}
