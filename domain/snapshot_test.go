package domain_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"selfreset/domain"
)

// TestSnapshotNeverChangesADecision is the property the command side's snapshots rest on
// (commands/snapshot.go stores a user's state as its JSON): on random histories, a state
// taken through a JSON round trip at any point, then folded on, is the state the full
// fold gives, and every decision asked of the two is the same (events and refusals).
func TestSnapshotNeverChangesADecision(t *testing.T) {
	p := givenProvider(allowedProvider()...)
	admin := domain.Actor{Provider: acme, Login: "admin", Admin: true}
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			log := registered()
			live := given(log...)
			now := t0
			tokens := 0
			for step := range 300 {
				now = now.Add(time.Duration(rng.IntN(600)) * time.Second)
				decisions := randomDecisions(rng, p, admin, now, &tokens)
				// Fold a prefix, round-trip it, fold the rest: the state and every
				// decision must match the live fold.
				cut := rng.IntN(len(log) + 1)
				snap := roundTrip(t, given(log[:cut]...))
				play(&snap, log[cut:])
				if !reflect.DeepEqual(snap, live) {
					t.Fatalf("step %d, snapshot at %d of %d events: state differs\nsnapshot %+v\nfull     %+v", step, cut, len(log), snap, live)
				}
				for name, d := range decisions {
					ge, gerr := d(snap)
					we, werr := d(live)
					if !reflect.DeepEqual(ge, we) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
						t.Fatalf("step %d, %s: from the snapshot %v, %v; from the full fold %v, %v", step, name, dump(ge), gerr, dump(we), werr)
					}
				}
				// Take one of the decisions as the next step of the history.
				names := make([]string, 0, len(decisions))
				for n := range decisions {
					names = append(names, n)
				}
				slices.Sort(names)
				events, _ := decisions[names[rng.IntN(len(names))]](live)
				play(&live, events)
				log = append(log, events...)
			}
		})
	}
}

func roundTrip(t *testing.T, u domain.User) domain.User {
	t.Helper()
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	var out domain.User
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

type decision func(u domain.User) ([]domain.Event, error)

// randomDecisions is a menu of what anyone (and an administrator) may ask of an account,
// with random right and wrong inputs.
func randomDecisions(rng *rand.Rand, p domain.Provider, admin domain.Actor, now time.Time, tokens *int) map[string]decision {
	*tokens++
	tok := secretFor(fmt.Sprintf("tok%d", *tokens), fmt.Sprintf("value%d", *tokens))
	code := secretFor(fmt.Sprintf("code%d", *tokens), "123456")
	email := []string{janeEmail, "someone@example.org"}[rng.IntN(2)]
	ok := rng.IntN(3) == 0
	guess := []string{"wrong", "123456", fmt.Sprintf("value%d", *tokens-1-rng.IntN(3))}[rng.IntN(3)]
	return map[string]decision{
		"enable":  func(u domain.User) ([]domain.Event, error) { return u.EnableSelfReset(p, admin) },
		"lock":    func(u domain.User) ([]domain.Event, error) { return u.AdminLock(admin) },
		"unlock":  func(u domain.User) ([]domain.Event, error) { return u.AdminUnlock(admin) },
		"sign in": func(u domain.User) ([]domain.Event, error) { return u.SignIn(pol, ok, "s1") },
		"lock due": func(u domain.User) ([]domain.Event, error) {
			return u.LockDue(pol), nil
		},
		"send code": func(u domain.User) ([]domain.Event, error) {
			return u.StartEmailVerification(pol, p, janeEmail, code, now)
		},
		"verify code": func(u domain.User) ([]domain.Event, error) {
			return u.VerifyEmailCode(pol, p, guess, fakeMatch, now)
		},
		"configure": func(u domain.User) ([]domain.Event, error) { return u.ConfigureSelfReset(p) },
		"request": func(u domain.User) ([]domain.Event, error) {
			return u.RequestResetToken(pol, p, domain.ResetRequest{Email: email, EmailHash: fakeHash(email), Token: tok}, now)
		},
		"resend": func(u domain.User) ([]domain.Event, error) { return u.ResendResetToken(pol, p, tok, now) },
		"check token": func(u domain.User) ([]domain.Event, error) {
			return u.CheckResetToken(pol, p, guess, fakeMatch, now)
		},
		"reset": func(u domain.User) ([]domain.Event, error) {
			cand := domain.PasswordCandidate{Password: goodPass, Login: jane}
			return u.ResetPassword(pol, p, domain.NewPassword{Token: guess, Candidate: cand, Hash: newHash}, fakeMatch, now)
		},
	}
}
