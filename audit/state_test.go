package audit

import (
	"reflect"
	"testing"
	"time"

	"selfreset/domain"
)

// TestStateAsOf: given a user's history, when the state is asked as of a time, then it
// is the state folded from the history cut at that time.
func TestStateAsOf(t *testing.T) {
	w := newWorld(t)
	w.given(acmeStream, domain.ProviderRegistered{Code: "ACME", Name: "Acme"})
	// Each given event lands a minute after the one before (world.given).
	history := []domain.Event{
		domain.UserRegistered{Provider: "ACME", Login: "bob", DisplayName: "Bob", PasswordHash: "$argon2id$old"},
		domain.SelfResetEnabled{By: "user:ACME/boss"},
		domain.RecoveryEmailVerified{Email: "bob@example.org"},
		domain.SelfResetConfigured{Email: "bob@example.org"},
		domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 1},
		domain.LoginFailed{Reason: "wrong_password", FailedAttempts: 2},
		domain.AccountLocked{FailedAttempts: 2},
		domain.ResetTokenIssued{TokenID: "t1", KeyID: "k", TokenHash: "h", Email: "bob@example.org", IssuedAt: t0.Add(8 * time.Minute), ExpiresAt: t0.Add(13 * time.Minute)},
		domain.PasswordChanged{PasswordHash: "$argon2id$new", Method: domain.PasswordChangedBySelfReset, TokenID: "t1", ChangedAt: t0.Add(10 * time.Minute)},
		domain.AccountUnlocked{Reason: "password_reset"},
		domain.RoleGranted{Role: domain.RoleAuditor, By: "user:ACME/boss"},
		domain.AccountAdminLocked{By: "user:ACME/boss"},
	}
	w.given(bob, history...)
	w.given(acmeStream, domain.ProviderSelfResetAllowed{})
	// The provider's first event is at t0+1m, bob's history from t0+2m on, one a minute.
	at := func(i int) time.Time { return t0.Add(time.Duration(i+2) * time.Minute) }

	for cut := -1; cut < len(history); cut++ {
		for _, asOf := range []time.Time{at(cut), at(cut).Add(30 * time.Second)} {
			var u domain.User
			for _, e := range history[:cut+1] {
				u.Apply(e)
			}
			want := ViewUser("bob", u, asOf)
			want.Events = cut + 1
			if cut >= 0 {
				rev := uint64(cut)
				want.Revision = &rev
			}

			got, err := StateAt(w.ctx, w.store, w.codec, "ACME", "bob", asOf)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Users) != 1 || !reflect.DeepEqual(got.Users[0], want) {
				t.Errorf("as of %s (after %d events):\n got %+v\nwant %+v", asOf.Format(time.TimeOnly), cut+1, got.Users, want)
			}
			if !got.Exists || got.SelfResetAllowed {
				t.Errorf("as of %s: provider %+v", asOf.Format(time.TimeOnly), got)
			}
		}
	}

	// Spot checks of what the auditor asks: "was bob locked, configured, enabled then?"
	st, err := StateAt(w.ctx, w.store, w.codec, "ACME", "bob", at(7))
	if err != nil {
		t.Fatal(err)
	}
	if b := st.Users[0]; !b.Locked || !b.Configured || !b.SelfResetEnabled || !b.ActiveToken || b.FailedLogins != 2 {
		t.Errorf("as of the token: %+v", b)
	}
	st, err = StateAt(w.ctx, w.store, w.codec, "ACME", "", w.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Users) != 1 || !st.Users[0].AdminLocked || st.Users[0].Locked || st.Users[0].PasswordChanges != 1 ||
		st.Users[0].LastResetAt == nil || !st.SelfResetAllowed || st.Users[0].Roles[0] != domain.RoleAuditor {
		t.Errorf("now: %+v", st)
	}
	// Before the account existed, a provider-wide state leaves it out.
	if st, err := StateAt(w.ctx, w.store, w.codec, "ACME", "", at(-1)); err != nil || len(st.Users) != 0 {
		t.Errorf("before bob: %+v %v", st, err)
	}
}
