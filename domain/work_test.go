package domain_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"selfreset/domain"
)

// TestPasswordWorkAskedOnlyWhenEverythingElsePasses: the decisions that take a new
// password ask for the costly work (compare with the current hash, hash the new one) once,
// and only after the token, the current password and the rules that need no hashing all
// passed; its answer decides the rest, and its failure is the decision's.
func TestPasswordWorkAskedOnlyWhenEverythingElsePasses(t *testing.T) {
	withToken := given(with(configured(), issued(tokA, t0))...)
	signedIn := given(configured()...)
	p := givenProvider(allowedProvider()...)
	now := t0.Add(time.Minute)
	broken := errors.New("hasher unavailable")
	reset := func(token, pw string) func(domain.PasswordWork) ([]domain.Event, error) {
		return func(w domain.PasswordWork) ([]domain.Event, error) {
			return withToken.ResetPassword(pol, p, domain.NewPassword{Token: token, Candidate: domain.PasswordCandidate{Password: pw}, Work: w}, fakeMatch, now)
		}
	}
	change := func(currentOK bool, pw string) func(domain.PasswordWork) ([]domain.Event, error) {
		return func(w domain.PasswordWork) ([]domain.Event, error) {
			return signedIn.ChangePassword(pol, domain.PasswordChange{CurrentOK: currentOK, Candidate: domain.PasswordCandidate{Password: pw}, Work: w}, now)
		}
	}
	cases := []struct {
		name      string
		decide    func(domain.PasswordWork) ([]domain.Event, error)
		same      bool
		fail      error
		wantCalls int
		wantErr   error // matched with errors.Is; nil means success with newHash
	}{
		{"reset, wrong token: no work", reset(valB, goodPass), false, nil, 0, domain.ErrInvalidToken},
		{"reset, too short: no work", reset(valA, "short"), false, nil, 0, domain.ErrPasswordRejected},
		{"reset, good: work once", reset(valA, goodPass), false, nil, 1, nil},
		{"reset, same as current: refused after the work", reset(valA, goodPass), true, nil, 1, domain.ErrPasswordRejected},
		{"reset, work fails: its error", reset(valA, goodPass), false, broken, 1, broken},
		{"change, wrong current: no work", change(false, goodPass), false, nil, 0, domain.ErrInvalidCredentials},
		{"change, too short: no work", change(true, "short"), false, nil, 0, domain.ErrPasswordRejected},
		{"change, good: work once", change(true, goodPass), false, nil, 1, nil},
		{"change, work fails: its error", change(true, goodPass), false, broken, 1, broken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			events, err := tc.decide(func() (bool, string, error) {
				calls++
				if tc.same {
					return true, "", tc.fail
				}
				return false, newHash, tc.fail
			})
			if calls != tc.wantCalls {
				t.Errorf("work asked %d times, want %d", calls, tc.wantCalls)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				var pr *domain.PasswordRejectedError
				if tc.same && (!errors.As(err, &pr) || !reflect.DeepEqual(pr.Reasons, []string{"must differ from the current password"})) {
					t.Errorf("same password refused with %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			pc, ok := events[0].(domain.PasswordChanged)
			if !ok || pc.PasswordHash != newHash {
				t.Fatalf("events %s do not store the work's hash", dump(events))
			}
		})
	}
}
