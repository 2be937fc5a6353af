package http

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"
)

// TestTimingFigures is the documented measurement behind docs/benchmarks.md's "Answers
// that do not tell": over a real server on loopback (the intake worker deciding in the
// background, as in production),
//
//   - Forgot Password for a configured account with its recovery email (matched) and
//     for an unknown login (unmatched), 1,000 of each interleaved in random order: the
//     bodies must be identical apart from reset_id; the medians are printed;
//   - Change Password with a wrong token on three reset ids: one made with the account's
//     recovery email (it reaches the live token), one with a wrong email, one for an
//     unknown login, 300 of each interleaved: the medians are printed.
//
// Timings are printed, not asserted (they depend on the machine). Run it with
// SELFRESET_TIMING_FIGURES=1.
func TestTimingFigures(t *testing.T) {
	if os.Getenv("SELFRESET_TIMING_FIGURES") == "" {
		t.Skip("set SELFRESET_TIMING_FIGURES=1 to run this measurement (about a minute, loopback only)")
	}
	e := newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")

	forgot := func(login, email string) (time.Duration, []byte) {
		t0 := time.Now()
		r := e.do(req{Method: "POST", Path: "/api/v1/password-resets", Body: map[string]string{"login_name": login, "provider_code": "ACME", "email": email}})
		d := time.Since(t0)
		expect(t, r, http.StatusAccepted, "")
		return d, blankResetID(t, r.body)
	}
	const forgotRounds = 1000
	var matched, unmatched []time.Duration
	var body []byte
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range forgotRounds {
		order := []bool{true, false}
		rng.Shuffle(2, func(a, b int) { order[a], order[b] = order[b], order[a] })
		for _, m := range order {
			login, email := "ghost", "ghost@example.org"
			if m {
				login, email = "jane", "jane@example.org"
			}
			d, b := forgot(login, email)
			if body == nil {
				body = b
			} else if !bytes.Equal(b, body) {
				t.Fatalf("request %d: body %s differs from %s", i, b, body)
			}
			if m {
				matched = append(matched, d)
			} else {
				unmatched = append(unmatched, d)
			}
		}
	}
	e.drain()
	t.Logf("FIGURES forgot password, %d each interleaved: median matched %s, unmatched %s (difference %s); p90 %s / %s; bodies identical apart from reset_id",
		forgotRounds, median(matched), median(unmatched), absDiff(median(matched), median(unmatched)),
		percentile(matched, 0.9), percentile(unmatched, 0.9))

	// Change Password with a wrong token, on a fresh database (so the account's stream
	// holds its setup, not the thousand requests above). A request for each kind of
	// reset id, the matched one last so its token is the account's live one.
	e = newPGEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	ids := map[string]string{}
	for _, k := range [][3]string{{"wrong email", "jane", "someone@example.org"}, {"unknown login", "ghost", "ghost@example.org"}, {"right email", "jane", "jane@example.org"}} {
		a, _ := e.forgot("ACME", k[1], k[2])
		ids[k[0]] = a.ResetID
	}
	if e.user("ACME", "jane").Token == nil {
		t.Fatal("the matched request issued no token")
	}
	const completeRounds = 300
	kinds := []string{"right email", "wrong email", "unknown login"}
	lat := map[string][]time.Duration{}
	body = nil
	for range completeRounds {
		rng.Shuffle(len(kinds), func(a, b int) { kinds[a], kinds[b] = kinds[b], kinds[a] })
		for _, k := range kinds {
			t0 := time.Now()
			r := e.do(req{Method: "POST", Path: "/api/v1/password-resets/" + ids[k] + "/complete",
				Body: map[string]string{"token": "AAAAAAAAAA", "new_password": "Fresh-pass-77120", "confirm_password": "Fresh-pass-77120"}})
			lat[k] = append(lat[k], time.Since(t0))
			expect(t, r, http.StatusBadRequest, "invalid_token")
		}
	}
	r, w, u := median(lat["right email"]), median(lat["wrong email"]), median(lat["unknown login"])
	t.Logf("FIGURES change password with a wrong token, %d each interleaved: median right email %s, wrong email %s, unknown login %s (largest difference %s)",
		completeRounds, r, w, u, max(absDiff(r, w), absDiff(r, u), absDiff(w, u)))
}

func median(d []time.Duration) time.Duration { return percentile(d, 0.5) }

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))].Round(time.Microsecond)
}

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}
