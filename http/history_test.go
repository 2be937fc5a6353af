package http

import (
	"math/rand/v2"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/internal/testkit"
)

// TestLongHistoryFigures is the documented measurement behind docs/benchmarks.md's "Long
// histories": login, GET /api/v1/me/self-reset and Change Password with a wrong token on
// an account whose stream holds 50,000 events against one whose stream holds 50,
// interleaved, over a real server on loopback. The history is written in bulk through
// the store port: wrong-email forgot-password refusals (ResetRequestRejected, as anyone
// can cause without signing in), which leave the account's state consistent.
//
// Timings are printed, not asserted. Run it with SELFRESET_HISTORY_FIGURES=1.
func TestLongHistoryFigures(t *testing.T) {
	if os.Getenv("SELFRESET_HISTORY_FIGURES") == "" {
		t.Skip("set SELFRESET_HISTORY_FIGURES=1 to run this measurement (about a minute, loopback only)")
	}
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	e.enableAndConfigure("joe", joePW, "joe@example.org")

	grow := func(login string, to uint64) {
		stream := domain.UserStream("ACME", login)
		for have := testkit.StreamRevision(t, e.store, stream) + 1; have < to; {
			n := min(to-have, 1000)
			batch := make([]eventstore.EventData, n)
			for i := range batch {
				typ, ver, raw, err := e.cmds.Codec().Encode(domain.ResetRequestRejected{Reason: domain.ReasonIdentifiersMismatch,
					Provider: "ACME", Login: login, EmailMasked: "s***r@e***e.org", EmailHash: "bulk"})
				if err != nil {
					t.Fatal(err)
				}
				batch[i] = eventstore.EventData{ID: uuid.New(), Type: typ, SchemaVersion: ver, OccurredAt: e.clock.Now(), Data: raw,
					Metadata: eventstore.Metadata{Actor: "anonymous"}}
			}
			if _, err := e.store.Append(e.ctx, stream, eventstore.Any, batch...); err != nil {
				t.Fatal(err)
			}
			have += n
		}
	}
	t0 := time.Now()
	grow("jane", 50_000)
	t.Logf("FIGURES appended jane's history in %s", time.Since(t0).Round(time.Millisecond))
	grow("joe", 50)
	// The bulk insert makes autovacuum process the events table soon; do it now, as it
	// would be done long before an attacker's 50,000 requests were over, rather than in
	// the middle of the measurement.
	if _, err := e.pg().Exec(e.ctx, "VACUUM ANALYZE events"); err != nil {
		t.Fatal(err)
	}

	// The first load after the bulk append folds everything once and writes the snapshot
	// (a stream grown by requests gets its snapshots along the way instead).
	t0 = time.Now()
	e.user("ACME", "jane")
	t.Logf("FIGURES first load of the 50,000-event stream (full fold, then a snapshot is written): %s", time.Since(t0).Round(time.Microsecond))

	kinds := map[string]struct{ login, pw, email string }{
		"50,000": {"jane", janePW, "jane@example.org"},
		"50":     {"joe", joePW, "joe@example.org"},
	}
	names := []string{"50,000", "50"}
	rng := rand.New(rand.NewPCG(3, 4))
	sessions, resetIDs := map[string]string{}, map[string]string{}
	for _, k := range names {
		sessions[k] = e.login("ACME", kinds[k].login, kinds[k].pw)
		a, _ := e.forgot("ACME", kinds[k].login, kinds[k].email)
		resetIDs[k] = a.ResetID
	}
	measure := func(what string, rounds int, do func(k string)) {
		lat := map[string][]time.Duration{}
		for range rounds {
			rng.Shuffle(len(names), func(a, b int) { names[a], names[b] = names[b], names[a] })
			for _, k := range names {
				t0 := time.Now()
				do(k)
				lat[k] = append(lat[k], time.Since(t0))
			}
		}
		big, small := median(lat["50,000"]), median(lat["50"])
		t.Logf("FIGURES %s, %d each interleaved: median 50,000 events %s, 50 events %s (ratio %.2f); p90 %s / %s",
			what, rounds, big, small, float64(big)/float64(small), percentile(lat["50,000"], 0.9), percentile(lat["50"], 0.9))
	}
	measure("Change Password, wrong token", 300, func(k string) {
		r := e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + resetIDs[k] + "/complete",
			Body: map[string]string{"token": "AAAAAAAAAA", "new_password": "Fresh-pass-77120", "confirm_password": "Fresh-pass-77120"}})
		expect(t, r, http.StatusBadRequest, "invalid_token")
	})
	measure("login", 60, func(k string) { e.login("ACME", kinds[k].login, kinds[k].pw) })
	measure("GET /api/v1/me/self-reset", 300, func(k string) {
		expect(t, e.do(req{Method: "GET", Path: "/api/v1/me/self-reset", Token: sessions[k]}), http.StatusOK, "")
	})
	t.Logf("FIGURES jane's stream ends at revision %d", testkit.StreamRevision(t, e.store, domain.UserStream("ACME", "jane")))
}
