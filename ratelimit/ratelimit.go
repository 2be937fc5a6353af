// Package ratelimit keeps request budgets in PostgreSQL, so that every replica of the web
// tier spends from the same budget: three replicas with a limit of 30 a minute let one
// client through 30 times a minute, not 90.
//
// Each key is one row holding a GCRA state (the generic cell rate algorithm, a token
// bucket of Burst tokens refilled at Rate, kept as one timestamp): the moment its
// bucket is full again. One statement (INSERT … ON CONFLICT DO UPDATE … RETURNING)
// reads, decides and writes it, so racing requests on any number of replicas are
// serialised by the row lock and never spend the same token twice.
//
// Wiring, for `selfreset serve`:
//
//	if err := ratelimit.Migrate(ctx, pool); err != nil { … }
//	lim := ratelimit.New(pool, clock)
//	d, err := lim.Allow(ctx, "login|ip|192.0.2.7", ratelimit.PerMinute(30))
//	… every minute or so: lim.Cleanup(ctx)
package ratelimit

import (
	"context"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/domain"
	"selfreset/internal/pgmigrate"
)

// DB is what the limiter needs of PostgreSQL; *pgxpool.Pool satisfies it.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Limit is a budget: Rate requests per Period, one every Period/Rate (the interval), of
// which up to Burst may come at once from a key that has been idle. A Rate of 0 or less
// allows everything. A Burst of 0 or less means 1 (no request ahead of the rate), so a
// Limit that leaves the field out is the strictest budget, not a larger one.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// PerMinute is n requests a minute with bursts of a tenth of n, at least 1: a client
// asking steadily gets about n + n/10 in its first minute and n in every later one
// (a burst of n would let it have 2n in the first).
func PerMinute(n int) Limit { return Limit{Rate: n, Period: time.Minute, Burst: max(n/10, 1)} }

// Interval is the time one token takes to come back (the GCRA's emission interval),
// truncated to PostgreSQL's resolution, the microsecond. Rate must be positive.
func (l Limit) Interval() time.Duration {
	return (l.Period / time.Duration(l.Rate)).Truncate(time.Microsecond)
}

// Tolerance is how far ahead of the rate a key may run (the GCRA's τ): Burst intervals.
func (l Limit) Tolerance() time.Duration { return time.Duration(max(l.Burst, 1)) * l.Interval() }

// Decision is the outcome of one Allow.
type Decision struct {
	Allowed bool
	// RetryAfter is, for a refusal, how long until one more request would be allowed.
	RetryAfter time.Duration
}

// Limiter spends budgets kept in PostgreSQL. It is safe for concurrent use.
type Limiter struct {
	db      DB
	clock   domain.Clock
	timeout time.Duration
}

// DefaultTimeout bounds one Allow: a database that does not answer within it makes the
// request fail (unavailable) rather than hang.
const DefaultTimeout = 2 * time.Second

// New returns a limiter over db (whose schema Migrate created), reading time from clock.
// Every replica's clock must be roughly right (NTP), since the state they share is a
// timestamp; skew of a few milliseconds is immaterial next to the seconds between tokens.
func New(db DB, clock domain.Clock) *Limiter {
	return &Limiter{db: db, clock: clock, timeout: DefaultTimeout}
}

// ErrUnavailable wraps every failure to reach or use the database: the request cannot
// be counted, so it is neither allowed nor refused.
var ErrUnavailable = errors.New("ratelimit: budgets unavailable")

// spendSQL is the GCRA in one statement. With T the emission interval ($3) and τ the
// tolerance ($4, Burst × T), a request at now ($2) is allowed when
// max(full_at, now) + T ≤ now + τ, and then moves full_at to max(full_at, now) + T; a
// refusal leaves full_at alone (both SET expressions see the old row). A new key starts
// with a full bucket, so its first request is allowed. Intervals travel as microseconds,
// PostgreSQL's timestamp resolution.
const spendSQL = `
INSERT INTO rate_limits AS r (key, full_at, last_allowed)
VALUES ($1, $2::timestamptz + $3::bigint * interval '1 microsecond', true)
ON CONFLICT (key) DO UPDATE SET
	last_allowed = greatest(r.full_at, $2::timestamptz) + $3::bigint * interval '1 microsecond'
		<= $2::timestamptz + $4::bigint * interval '1 microsecond',
	full_at = CASE
		WHEN greatest(r.full_at, $2::timestamptz) + $3::bigint * interval '1 microsecond'
			<= $2::timestamptz + $4::bigint * interval '1 microsecond'
		THEN greatest(r.full_at, $2::timestamptz) + $3::bigint * interval '1 microsecond'
		ELSE r.full_at END
RETURNING last_allowed, full_at`

// Allow spends one request of key's budget at the clock's time. The key is hashed
// before it is stored. A limit of rate 0 or less allows without touching the database.
// Any database failure is returned wrapping ErrUnavailable (and the cause).
func (l *Limiter) Allow(ctx context.Context, key string, lim Limit) (Decision, error) {
	if lim.Rate <= 0 || lim.Period <= 0 {
		return Decision{Allowed: true}, nil
	}
	// PostgreSQL keeps microseconds; rounding now here keeps Go's and its arithmetic equal.
	now := l.clock.Now().UTC().Truncate(time.Microsecond)
	t, tau := lim.Interval(), lim.Tolerance()
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	var ok bool
	var fullAt time.Time
	err := l.db.QueryRow(ctx, spendSQL, hashKey(key), now, t.Microseconds(), tau.Microseconds()).Scan(&ok, &fullAt)
	if err != nil {
		return Decision{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if ok {
		return Decision{Allowed: true}, nil
	}
	// Refused: full_at > now + τ - T, so the next token fits at full_at + T - τ.
	return Decision{RetryAfter: max(fullAt.Add(t-tau).Sub(now), time.Microsecond)}, nil
}

// hashKey keeps addresses and login names out of the table and bounds the key's size
// whatever a client sent.
func hashKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// Cleanup batch sizes: each DELETE touches at most cleanupBatch rows (short locks), and
// one Cleanup runs at most cleanupBatches of them; the next call takes the rest.
const (
	cleanupBatch   = 1000
	cleanupBatches = 100
)

// cleanupSQL deletes up to $2 rows whose bucket is full again. full_at is checked on the
// outer DELETE too: a row refilled meanwhile by a racing request is re-checked there and
// kept.
const cleanupSQL = `
DELETE FROM rate_limits
WHERE full_at <= $1 AND key IN (SELECT key FROM rate_limits WHERE full_at <= $1 LIMIT $2)`

// Cleanup deletes the rows whose bucket is full again at the clock's time (forgetting them
// changes no decision) and says how many. Run it every minute or so on every replica;
// concurrent runs are harmless.
func (l *Limiter) Cleanup(ctx context.Context) (int, error) {
	now := l.clock.Now().UTC()
	total := 0
	for range cleanupBatches {
		tag, err := l.db.Exec(ctx, cleanupSQL, now, cleanupBatch)
		if err != nil {
			return total, fmt.Errorf("%w: cleanup: %w", ErrUnavailable, err)
		}
		n := int(tag.RowsAffected())
		total += n
		if n < cleanupBatch {
			break
		}
	}
	return total, nil
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate brings the rate_limits table up to date, recording its version in
// ratelimit_migrations (internal/pgmigrate says how, and why it is safe at every start).
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgmigrate.Up(ctx, pool, migrationFiles, "migrations", "ratelimit_migrations")
}
