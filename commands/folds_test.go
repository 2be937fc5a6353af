package commands_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/memory"
	"selfreset/internal/testkit"
	"selfreset/secret"
)

// TestEachStreamReadOncePerCommand: every command folds each stream it touches once, the
// provider included, whatever steps it takes (the actor's refresh, a precheck, the
// provider's count, the failed-login lock, hashing after the token check), whether the
// store reads one stream at a time or several at once (the commands then read ahead).
// Counted on a store wrapper; runs on the in-memory store, without a database.
func TestEachStreamReadOncePerCommand(t *testing.T) {
	t.Run("one stream a call", func(t *testing.T) {
		inner := memory.New()
		t.Cleanup(inner.Close)
		testEachStreamReadOnce(t, testkit.CountReads(inner))
	})
	t.Run("several streams a call", func(t *testing.T) {
		inner := memory.New()
		t.Cleanup(inner.Close)
		testEachStreamReadOnce(t, testkit.CountReadsBatched(inner))
	})
}

func testEachStreamReadOnce(t *testing.T, store interface {
	eventstore.Store
	Take() map[string]int
}) {
	ctx := context.Background()
	keys := testkit.Keyring(t, "k1")
	clk := testkit.NewClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	h := testkit.Handler(t, store, clk, keys)
	f := &fixture{h: h, store: store, keys: keys, clock: clk, code: "ACME"}
	f.configuredUser(t)

	admin := domain.Actor{Provider: "ACME", Login: "admin"}
	jane := commands.SelfUser{Provider: "ACME", Login: "jane"}
	bob := commands.UserCommand{Actor: admin, Provider: "ACME", Login: "bob"}
	provider, adminS, janeS, bobS := domain.ProviderStream("ACME"), domain.UserStream("ACME", "admin"),
		domain.UserStream("ACME", "jane"), domain.UserStream("ACME", "bob")
	var tokenID string
	issue := func() error {
		var err error
		tokenID, err = h.RequestResetToken(ctx, commands.RequestResetToken{Provider: "ACME", Login: "jane", Email: recovery})
		return err
	}
	wrongLogin := func() error {
		_, err := h.Login(ctx, commands.Login{Provider: "ACME", Login: "jane", Password: "not the password"})
		return err
	}
	cases := []struct {
		name    string
		run     func() error
		wantErr error
		streams []string // each read exactly once, and nothing else
	}{
		{"register a user", func() error {
			return h.RegisterUser(ctx, commands.RegisterUser{Actor: admin, Provider: "ACME", Login: "bob", DisplayName: "Bob", Password: "bob-password-77"})
		}, nil, []string{adminS, bobS, provider}},
		{"grant the admin role (counted on the provider)", func() error {
			return h.GrantRole(ctx, commands.RoleCommand{UserCommand: bob, Role: domain.RoleUserAdmin})
		}, nil, []string{adminS, bobS, provider}},
		{"revoke it (uncounted first)", func() error {
			return h.RevokeRole(ctx, commands.RoleCommand{UserCommand: bob, Role: domain.RoleUserAdmin})
		}, nil, []string{adminS, bobS, provider}},
		{"an admin on their own account", func() error {
			return h.GrantRole(ctx, commands.RoleCommand{UserCommand: commands.UserCommand{Actor: admin, Provider: "ACME", Login: "admin"}, Role: domain.RoleUserAdmin})
		}, nil, []string{adminS, provider}},
		{"admin lock", func() error { return h.AdminLock(ctx, bob) }, nil, []string{adminS, bobS, provider}},
		{"delete", func() error { return h.Delete(ctx, bob) }, nil, []string{adminS, bobS, provider}},
		{"create a user", func() error {
			_, err := h.CreateUser(ctx, commands.CreateUser{Actor: admin, Provider: "ACME", Login: "carol", DisplayName: "Carol"})
			return err
		}, nil, []string{adminS, domain.UserStream("ACME", "carol"), provider}},
		{"wrong password", wrongLogin, domain.ErrInvalidCredentials, []string{janeS}},
		{"wrong password", wrongLogin, domain.ErrInvalidCredentials, []string{janeS}},
		{"wrong password", wrongLogin, domain.ErrInvalidCredentials, []string{janeS}},
		{"wrong password", wrongLogin, domain.ErrInvalidCredentials, []string{janeS}},
		{"wrong password that locks", wrongLogin, domain.ErrInvalidCredentials, []string{janeS}},
		{"admin unlock", func() error {
			return h.AdminUnlock(ctx, commands.UserCommand{Actor: admin, Provider: "ACME", Login: "jane"})
		}, nil, []string{adminS, janeS, provider}},
		{"sign in", func() error {
			_, err := h.Login(ctx, commands.Login{Provider: "ACME", Login: "jane", Password: oldPass})
			return err
		}, nil, []string{janeS}},
		{"wrong email code", func() error {
			return h.VerifyEmailCode(ctx, commands.VerifyEmailCode{SelfUser: jane, Code: "000000"})
		}, domain.ErrNoPendingCode, []string{janeS, provider}},
		{"forgot password", issue, nil, []string{janeS, provider}},
		{"resend", func() error {
			var err error
			tokenID, err = h.ResendResetToken(ctx, commands.ResendResetToken{Provider: "ACME", Login: "jane"})
			return err
		}, nil, []string{janeS, provider}},
		{"admin sends a reset", func() error {
			var err error
			tokenID, err = h.SendPasswordReset(ctx, commands.UserCommand{Actor: admin, Provider: "ACME", Login: "jane"})
			return err
		}, nil, []string{adminS, janeS, provider}},
		{"change password with a wrong token", func() error {
			return h.ResetPassword(ctx, commands.ResetPassword{Provider: "ACME", Login: "jane", Token: "wrong", NewPassword: newPass})
		}, domain.ErrInvalidToken, []string{janeS, provider}},
		{"change password for another request", func() error {
			return h.ResetPassword(ctx, commands.ResetPassword{Provider: "ACME", Login: "jane", Token: f.token(t, tokenID), NewPassword: newPass,
				ForRequest: func(domain.User) bool { return false }})
		}, commands.ErrNotForRequest, []string{janeS, provider}},
		{"change password", func() error {
			return h.ResetPassword(ctx, commands.ResetPassword{Provider: "ACME", Login: "jane", Token: f.token(t, tokenID), NewPassword: newPass,
				ForRequest: func(u domain.User) bool { return u.Token != nil && u.Token.ID == tokenID }})
		}, nil, []string{janeS, provider}},
		{"signed-in change, wrong current", func() error {
			_, err := h.ChangePassword(ctx, commands.ChangePassword{SelfUser: jane, Current: oldPass, New: "another-pass-991"})
			return err
		}, domain.ErrInvalidCredentials, []string{janeS}},
		{"signed-in change", func() error {
			_, err := h.ChangePassword(ctx, commands.ChangePassword{SelfUser: jane, Current: newPass, New: "another-pass-991"})
			return err
		}, nil, []string{janeS}},
	}
	store.Take()
	for i, tc := range cases {
		err := tc.run()
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("%d %s: err = %v, want %v", i, tc.name, err, tc.wantErr)
		}
		reads := store.Take()
		for _, s := range tc.streams {
			if reads[s] != 1 {
				t.Errorf("%d %s: %s read %d times, want once", i, tc.name, s, reads[s])
			}
			delete(reads, s)
		}
		if len(reads) > 0 {
			t.Errorf("%d %s: also read %v", i, tc.name, reads)
		}
	}
	u, err := h.LoadUser(ctx, "ACME", "jane")
	must(t, err)
	if u.PasswordVersion != 2 || u.Locked {
		t.Fatalf("jane after the run: %+v", u)
	}
	if v, err := keys.Value(secret.KindResetToken, "k1", tokenID); err != nil || v == "" {
		t.Fatal("no token value", err)
	}
}

// TestProviderCacheSeesOtherReplicas: a handler's cached provider fold is brought up to
// date by the events another handler (another replica) appended since, on its next use.
func TestProviderCacheSeesOtherReplicas(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	t.Cleanup(store.Close)
	keys := testkit.Keyring(t, "k1")
	clk := testkit.NewClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	f := &fixture{h: testkit.Handler(t, store, clk, keys), store: store, keys: keys, clock: clk, code: "ACME"}
	f.configuredUser(t) // f.h has folded (and cached) the provider
	other := testkit.Handler(t, store, clk, keys)
	must(t, other.RevokeProviderSelfReset(ctx, commands.ProviderCommand{Actor: operator, Code: "ACME"}))
	_, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: "ACME", Login: "jane", Email: recovery})
	if !errors.Is(err, domain.ErrProviderNotAllowed) {
		t.Fatalf("after another replica revoked self-reset: err = %v, want provider_not_allowed", err)
	}
	must(t, other.AllowProviderSelfReset(ctx, commands.ProviderCommand{Actor: operator, Code: "ACME"}))
	if _, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: "ACME", Login: "jane", Email: recovery}); err != nil {
		t.Fatalf("after it allowed it again: %v", err)
	}
	p, err := f.h.LoadProvider(ctx, "ACME")
	must(t, err)
	full, err := testkit.Handler(t, store, clk, keys).LoadProvider(ctx, "ACME")
	must(t, err)
	if !reflect.DeepEqual(p, full) {
		t.Fatalf("cached fold %+v, full fold %+v", p, full)
	}
}
