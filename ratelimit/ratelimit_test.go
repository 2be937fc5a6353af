package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/ratelimit"
)

var t0 = time.Date(2030, 1, 2, 9, 0, 0, 0, time.UTC)

// newDB is a migrated database of the test's own; each call to pool opens another pool
// on it, as another replica would.
func newDB(t *testing.T) (pool func() *pgxpool.Pool) {
	t.Helper()
	url := testdb.New(t)
	pool = func() *pgxpool.Pool {
		p, err := pgxpool.New(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	if err := ratelimit.Migrate(context.Background(), pool()); err != nil {
		t.Fatal(err)
	}
	// Migrating again is a no-op.
	if err := ratelimit.Migrate(context.Background(), pool()); err != nil {
		t.Fatal(err)
	}
	return pool
}

// allower is what the HTTP side needs of a limiter (http.RateLimiter).
type allower interface {
	Allow(ctx context.Context, key string, l ratelimit.Limit) (ratelimit.Decision, error)
}

// eachLimiter runs test, in parallel, on the two limiters that keep the budget rule:
// ratelimit.Limiter over PostgreSQL (skipped under -short) and testkit.RateLimiter in
// memory, which the http tests use without a database. replicas(n) returns n limiters
// spending one budget store, as n replicas do.
func eachLimiter(t *testing.T, test func(t *testing.T, clock *testkit.Clock, replicas func(n int) []allower)) {
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		open := newDB(t)
		clock := testkit.NewClock(t0)
		test(t, clock, func(n int) []allower {
			out := make([]allower, n)
			for i := range out {
				out[i] = ratelimit.New(open(), clock)
			}
			return out
		})
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		clock := testkit.NewClock(t0)
		lim := testkit.NewRateLimiter(clock)
		test(t, clock, func(n int) []allower {
			out := make([]allower, n)
			for i := range out {
				out[i] = lim
			}
			return out
		})
	})
}

type step struct {
	advance time.Duration // move the clock first
	key     string
	allowed bool
	retry   time.Duration // for refusals
}

func TestGCRA(t *testing.T) {
	t.Parallel()
	eachLimiter(t, testGCRA)
}

func testGCRA(t *testing.T, clock *testkit.Clock, replicas func(int) []allower) {
	lim := replicas(1)[0]
	ok := func(key string) step { return step{key: key, allowed: true} }
	// A Burst of 0 or less is 1: one request, then one every 12 s.
	burstOfOne := []step{
		ok("a"),
		{key: "a", retry: 12 * time.Second},
		{advance: 12 * time.Second, key: "a", allowed: true},
		{key: "a", retry: 12 * time.Second},
		// Idle for a long time: still only one at once.
		{advance: time.Hour, key: "a", allowed: true},
		{key: "a", retry: 12 * time.Second},
	}
	for _, tc := range []struct {
		name  string
		limit ratelimit.Limit
		steps []step
	}{{
		name:  "burst of the whole rate",
		limit: ratelimit.Limit{Rate: 5, Period: time.Minute, Burst: 5}, // a token every 12 s
		steps: []step{
			// A new key has a full bucket: five at once, then refusals until a token is back.
			ok("a"), ok("a"), ok("a"), ok("a"), ok("a"),
			{key: "a", retry: 12 * time.Second},
			{advance: 5 * time.Second, key: "a", retry: 7 * time.Second},
			// Another key has a budget of its own.
			ok("b"),
			// Steady rate: one token every 12 s.
			{advance: 7 * time.Second, key: "a", allowed: true},
			{key: "a", retry: 12 * time.Second},
			{advance: 12*time.Second - time.Millisecond, key: "a", retry: time.Millisecond},
			{advance: time.Millisecond, key: "a", allowed: true},
			// Refusals spend nothing: after 12 s exactly one token is back.
			{key: "a", retry: 12 * time.Second},
			{key: "a", retry: 12 * time.Second},
			{advance: 12 * time.Second, key: "a", allowed: true},
			{key: "a", retry: 12 * time.Second},
			// Idle for a whole period: the bucket is full again, five at once.
			{advance: time.Minute, key: "a", allowed: true}, ok("a"), ok("a"), ok("a"), ok("a"),
			{key: "a", retry: 12 * time.Second},
			// Idle for a long time: still only five (the bucket does not overfill).
			{advance: time.Hour, key: "a", allowed: true}, ok("a"), ok("a"), ok("a"), ok("a"),
			{key: "a", retry: 12 * time.Second},
		},
	}, {
		name:  "PerMinute(30): a burst of 3",
		limit: ratelimit.PerMinute(30), // a token every 2 s
		steps: []step{
			ok("a"), ok("a"), ok("a"),
			{key: "a", retry: 2 * time.Second},
			{advance: time.Second, key: "a", retry: time.Second},
			ok("b"),
			{advance: time.Second, key: "a", allowed: true},
			{key: "a", retry: 2 * time.Second},
			// Idle for three intervals (6 s): the bucket is full again, three at once.
			{advance: 6 * time.Second, key: "a", allowed: true}, ok("a"), ok("a"),
			{key: "a", retry: 2 * time.Second},
			// Idle for two intervals: two tokens back, not three.
			{advance: 4 * time.Second, key: "a", allowed: true}, ok("a"),
			{key: "a", retry: 2 * time.Second},
			// Idle for a long time: still only three.
			{advance: time.Hour, key: "a", allowed: true}, ok("a"), ok("a"),
			{key: "a", retry: 2 * time.Second},
		},
	}, {
		name:  "zero burst",
		limit: ratelimit.Limit{Rate: 5, Period: time.Minute},
		steps: burstOfOne,
	}, {
		name:  "negative burst",
		limit: ratelimit.Limit{Rate: 5, Period: time.Minute, Burst: -2},
		steps: burstOfOne,
	}} {
		// The cases share the clock; a key of each case's own starts with a full bucket.
		for i, s := range tc.steps {
			clock.Add(s.advance)
			d, err := lim.Allow(t.Context(), tc.name+"|"+s.key, tc.limit)
			if err != nil {
				t.Fatalf("%s, step %d: %v", tc.name, i, err)
			}
			if d.Allowed != s.allowed || (!s.allowed && d.RetryAfter != s.retry) {
				t.Fatalf("%s, step %d (%s): got allowed=%v retry=%v, want allowed=%v retry=%v",
					tc.name, i, s.key, d.Allowed, d.RetryAfter, s.allowed, s.retry)
			}
		}
	}
}

func TestPerMinuteBurstIsATenth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ n, burst int }{{1, 1}, {9, 1}, {10, 1}, {19, 1}, {20, 2}, {30, 3}, {1000, 100}} {
		if l := ratelimit.PerMinute(tc.n); l.Rate != tc.n || l.Period != time.Minute || l.Burst != tc.burst {
			t.Errorf("PerMinute(%d) = %+v, want burst %d", tc.n, l, tc.burst)
		}
	}
}

func TestFirstMinuteAndAfter(t *testing.T) {
	t.Parallel()
	eachLimiter(t, testFirstMinuteAndAfter)
}

func testFirstMinuteAndAfter(t *testing.T, clock *testkit.Clock, replicas func(int) []allower) {
	lim := replicas(1)[0]
	// A client asking every 500 ms for five minutes: the first minute also spends the
	// burst it started with (less the one token the minute's rate would have given
	// anyway), every later minute gets the rate.
	for _, tc := range []struct {
		name  string
		limit ratelimit.Limit
		first int
	}{
		{"PerMinute(30)", ratelimit.PerMinute(30), 3 + 29}, // the burst, then one every 2 s
		{"PerMinute(10)", ratelimit.PerMinute(10), 1 + 9},  // a burst of 1 is the plain rate
		{"burst of the rate", ratelimit.Limit{Rate: 30, Period: time.Minute, Burst: 30}, 30 + 29},
	} {
		perMinute := make([]int, 5)
		for i := range 5 * 120 {
			d, err := lim.Allow(t.Context(), tc.name, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				perMinute[i/120]++
			}
			clock.Add(500 * time.Millisecond)
		}
		t.Logf("%s: allowed per minute: %v", tc.name, perMinute)
		if perMinute[0] != tc.first {
			t.Errorf("%s: first minute %d, want %d", tc.name, perMinute[0], tc.first)
		}
		for m, n := range perMinute[1:] {
			if n != tc.limit.Rate {
				t.Errorf("%s, minute %d: %d allowed, want %d", tc.name, m+2, n, tc.limit.Rate)
			}
		}
	}
}

func TestZeroRateAllowsWithoutTheDatabase(t *testing.T) {
	t.Parallel()
	lim := ratelimit.New(nil, testkit.NewClock(t0)) // a nil DB would panic if used
	for _, l := range []ratelimit.Limit{{}, ratelimit.PerMinute(0), ratelimit.PerMinute(-3), {Rate: 5}} {
		if d, err := lim.Allow(t.Context(), "k", l); err != nil || !d.Allowed {
			t.Errorf("%+v: %+v, %v", l, d, err)
		}
	}
}

// TestRacersNeverExceedTheBudget: many goroutines over several pools (replicas) spend one
// key at the same instant; exactly the burst gets through.
func TestRacersNeverExceedTheBudget(t *testing.T) {
	t.Parallel()
	eachLimiter(t, testRacersNeverExceedTheBudget)
}

func testRacersNeverExceedTheBudget(t *testing.T, _ *testkit.Clock, open func(int) []allower) {
	replicas := open(3)
	const budget, racers = 10, 60
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			d, err := replicas[i%len(replicas)].Allow(context.Background(), "hot", ratelimit.Limit{Rate: 60, Period: time.Minute, Burst: budget})
			if err != nil {
				t.Error(err)
				return
			}
			if d.Allowed {
				allowed.Add(1)
			} else {
				refused.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if allowed.Load() != budget || refused.Load() != racers-budget {
		t.Errorf("%d allowed, %d refused; want %d and %d", allowed.Load(), refused.Load(), budget, racers-budget)
	}
}

func TestKeysAreHashedAndFullBucketsCleanedUp(t *testing.T) {
	t.Parallel()
	pool := newDB(t)()
	clock := testkit.NewClock(t0)
	lim := ratelimit.New(pool, clock)
	ctx := t.Context()
	fiveAtOnce := ratelimit.Limit{Rate: 5, Period: time.Minute, Burst: 5}
	spend := func(key string, n int) {
		t.Helper()
		for range n {
			if _, err := lim.Allow(ctx, key, fiveAtOnce); err != nil {
				t.Fatal(err)
			}
		}
	}
	spend("login|acct|ACME/jane@example.org", 1) // full again at +12 s
	spend("login|ip|192.0.2.7", 5)               // full again at +60 s
	var plain int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM rate_limits WHERE position('jane' in encode(key, 'escape')) > 0
		OR position('192.0.2.7' in encode(key, 'escape')) > 0 OR length(key) <> 32`).Scan(&plain); err != nil {
		t.Fatal(err)
	}
	if plain != 0 {
		t.Errorf("%d keys stored in clear or not as a 32-byte hash", plain)
	}

	count := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM rate_limits`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	clock.Add(30 * time.Second)
	if n, err := lim.Cleanup(ctx); err != nil || n != 1 || count() != 1 {
		t.Fatalf("cleanup at +30 s: deleted %d (%v), %d left; want 1 deleted, 1 left", n, err, count())
	}
	// The IP's bucket is still half empty: cleanup must not have refilled it.
	for i := range 3 {
		d, err := lim.Allow(ctx, "login|ip|192.0.2.7", fiveAtOnce)
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 2; d.Allowed != want {
			t.Fatalf("request %d at +30 s: allowed=%v, want %v", i, d.Allowed, want)
		}
	}
	clock.Add(time.Hour)
	if n, err := lim.Cleanup(ctx); err != nil || n != 1 || count() != 0 {
		t.Fatalf("cleanup an hour later: deleted %d (%v), %d left", n, err, count())
	}
}

func TestCleanupIsBatched(t *testing.T) {
	t.Parallel()
	pool := newDB(t)()
	ctx := t.Context()
	// 2,500 stale rows: more than two batches.
	if _, err := pool.Exec(ctx, `INSERT INTO rate_limits (key, full_at, last_allowed)
		SELECT sha256(i::text::bytea), $1, true FROM generate_series(1, 2500) i`, t0); err != nil {
		t.Fatal(err)
	}
	lim := ratelimit.New(pool, testkit.NewClock(t0.Add(time.Second)))
	if n, err := lim.Cleanup(ctx); err != nil || n != 2500 {
		t.Fatalf("deleted %d, %v; want 2500", n, err)
	}
}

// TestUnreachableDatabase: no answer means no decision, reported as ErrUnavailable (the
// HTTP side answers 503), and promptly.
func TestUnreachableDatabase(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: nothing listens there, so connecting fails at once.
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	lim := ratelimit.New(pool, testkit.NewClock(t0))
	d, err := lim.Allow(t.Context(), "k", ratelimit.PerMinute(5))
	if !errors.Is(err, ratelimit.ErrUnavailable) || d.Allowed {
		t.Errorf("got %+v, %v; want a refusal to decide wrapping ErrUnavailable", d, err)
	}
	if _, err := lim.Cleanup(t.Context()); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Errorf("cleanup: %v", err)
	}
}
