package commands_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"selfreset/commands"
	"selfreset/domain"
)

// The provider never loses its last user administrator, whoever tries and in what order.
func TestLastUserAdminIsKept(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t) // "admin" is the only user administrator
	admin := domain.Actor{Provider: f.code, Login: "admin"}
	cmd := func(login string) commands.UserCommand {
		return commands.UserCommand{Actor: admin, Provider: f.code, Login: login}
	}
	revoke := func(actor domain.Actor, login string) error {
		return f.h.RevokeRole(ctx, commands.RoleCommand{UserCommand: commands.UserCommand{Actor: actor, Provider: f.code, Login: login}, Role: domain.RoleUserAdmin})
	}
	if err := revoke(operator, "admin"); !errors.Is(err, domain.ErrLastUserAdmin) {
		t.Fatalf("revoking the last user admin: %v", err)
	}
	if err := f.h.Delete(ctx, cmd("admin")); !errors.Is(err, domain.ErrSelfAction) {
		t.Fatalf("an admin deleting themselves: %v", err)
	}
	if err := f.h.Delete(ctx, commands.UserCommand{Actor: operator, Provider: f.code, Login: "admin"}); !errors.Is(err, domain.ErrLastUserAdmin) {
		t.Fatalf("deleting the last user admin: %v", err)
	}
	if n := countEvents(t, f, domain.UserStream(f.code, "admin"), "RoleRevoked"); n != 0 {
		t.Fatalf("%d RoleRevoked after refusals", n)
	}

	// With a second one, either may go, but not both.
	must(t, f.h.GrantRole(ctx, commands.RoleCommand{UserCommand: cmd("jane"), Role: domain.RoleUserAdmin}))
	must(t, f.h.GrantRole(ctx, commands.RoleCommand{UserCommand: cmd("jane"), Role: domain.RoleUserAdmin})) // repeat: no new events
	if n := countEvents(t, f, domain.ProviderStream(f.code), "ProviderUserAdminAdded"); n != 2 {
		t.Fatalf("ProviderUserAdminAdded × %d, want 2 (admin at registration, jane once)", n)
	}
	must(t, revoke(admin, "admin")) // revoking one's own role is fine while jane remains
	jane := domain.Actor{Provider: f.code, Login: "jane"}
	if err := revoke(jane, "jane"); !errors.Is(err, domain.ErrLastUserAdmin) {
		t.Fatalf("revoking the second-to-last: %v", err)
	}
	if err := revoke(admin, "jane"); !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("a former admin revoked a role: %v", err)
	}
	p, err := f.h.LoadProvider(ctx, f.code)
	must(t, err)
	if len(p.UserAdmins) != 1 || !p.UserAdmins["jane"] {
		t.Fatalf("counted admins %v", p.UserAdmins)
	}
}

func TestCreateUserWithTemporaryPassword(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	admin := domain.Actor{Provider: f.code, Login: "admin"}
	pw, err := f.h.CreateUser(ctx, commands.CreateUser{Actor: admin, Provider: f.code, Login: "Newbie", DisplayName: "New Bie"})
	must(t, err)
	if len(pw) < 20 {
		t.Fatalf("temporary password %q is short", pw)
	}
	u, err := f.h.LoadUser(ctx, f.code, "newbie")
	must(t, err)
	if !u.Registered || !u.MustChangePassword {
		t.Fatalf("created user %+v", u)
	}
	recs, err := f.store.ReadStream(ctx, domain.UserStream(f.code, "newbie"), 0)
	must(t, err)
	if strings.Contains(string(recs[0].Data), pw) || recs[0].Metadata.Actor != "user:"+f.code+"/admin" {
		t.Fatalf("event %s by %s", recs[0].Data, recs[0].Metadata.Actor)
	}
	// Signing in works with it; changing it clears the mark.
	_, err = f.h.Login(ctx, commands.Login{Provider: f.code, Login: "newbie", Password: pw})
	must(t, err)
	self := commands.SelfUser{Provider: f.code, Login: "newbie"}
	if _, err := f.h.ChangePassword(ctx, commands.ChangePassword{SelfUser: self, Current: pw, New: pw}); !errors.Is(err, domain.ErrPasswordRejected) {
		t.Fatalf("keeping the temporary password: %v", err)
	}
	after, err := f.h.ChangePassword(ctx, commands.ChangePassword{SelfUser: self, Current: pw, New: newPass})
	must(t, err)
	if after.MustChangePassword || after.SessionEpoch != u.SessionEpoch+1 {
		t.Fatalf("after change %+v", after)
	}
	// A plain user may not create users; another provider's admin neither.
	if _, err := f.h.CreateUser(ctx, commands.CreateUser{Actor: domain.Actor{Provider: f.code, Login: "jane"}, Provider: f.code, Login: "x1", DisplayName: "X"}); !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("plain user created a user: %v", err)
	}
}

func TestChangePasswordSignedIn(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	self := commands.SelfUser{Provider: f.code, Login: "jane"}
	if _, err := f.h.ChangePassword(ctx, commands.ChangePassword{SelfUser: self, Current: "wrong-current-1", New: newPass}); !errors.Is(err, domain.ErrInvalidCredentials) {
		t.Fatalf("wrong current password: %v", err)
	}
	if n := countEvents(t, f, domain.UserStream(f.code, "jane"), "LoginFailed"); n != 1 {
		t.Fatalf("LoginFailed × %d, want the wrong current password counted", n)
	}
	if _, err := f.h.ChangePassword(ctx, commands.ChangePassword{SelfUser: self, Current: oldPass, New: "jane"}); !errors.Is(err, domain.ErrPasswordRejected) {
		t.Fatalf("short password: %v", err)
	}
	u, err := f.h.ChangePassword(ctx, commands.ChangePassword{SelfUser: self, Current: oldPass, New: newPass})
	must(t, err)
	recs, err := f.store.ReadStream(ctx, domain.UserStream(f.code, "jane"), 0)
	must(t, err)
	last := recs[len(recs)-1]
	if last.Type != "PasswordChanged" || !strings.Contains(string(last.Data), `"signed_in"`) || !strings.Contains(string(last.Data), recovery) {
		t.Fatalf("last event %s %s", last.Type, last.Data)
	}
	if _, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: newPass}); err != nil || u.FailedLogins != 0 {
		t.Fatalf("sign in with the new password: %v", err)
	}
}

func TestSendPasswordReset(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	admin := domain.Actor{Provider: f.code, Login: "admin"}
	id, err := f.h.SendPasswordReset(ctx, commands.UserCommand{Actor: admin, Provider: f.code, Login: "jane"})
	must(t, err)
	u, err := f.h.LoadUser(ctx, f.code, "jane")
	must(t, err)
	if u.Token == nil || u.Token.ID != id || u.Token.State != domain.TokenActive {
		t.Fatalf("token %+v, want %s", u.Token, id)
	}
	// The token works on the Change Password page like any other.
	must(t, f.h.ResetPassword(ctx, commands.ResetPassword{Provider: f.code, Login: "jane", Token: f.token(t, id), NewPassword: newPass}))
	// Not configured: refused plainly.
	if _, err := f.h.SendPasswordReset(ctx, commands.UserCommand{Actor: admin, Provider: f.code, Login: "admin"}); !errors.Is(err, domain.ErrUserNotEnabled) {
		t.Fatalf("send to an account that is not enabled: %v", err)
	}
}

func TestSignInToAnAdminLockedAccount(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	must(t, f.h.AdminLock(ctx, commands.UserCommand{Actor: operator, Provider: f.code, Login: "jane"}))
	if _, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: oldPass}); !errors.Is(err, domain.ErrAccountAdminLocked) {
		t.Fatalf("right password on an admin-locked account: %v", err)
	}
	if _, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: "not-her-password"}); !errors.Is(err, domain.ErrInvalidCredentials) {
		t.Fatalf("wrong password on an admin-locked account: %v", err)
	}
}

// Two user administrators revoking each other at once: the provider's stream decides,
// under optimistic concurrency, and exactly one of them keeps the role.
func TestRacingRevokesKeepOneUserAdmin(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	a := domain.Actor{Provider: f.code, Login: "admin"}
	must(t, f.h.GrantRole(ctx, commands.RoleCommand{UserCommand: commands.UserCommand{Actor: a, Provider: f.code, Login: "jane"}, Role: domain.RoleUserAdmin}))
	for round := range 5 {
		pair := [2]string{"admin", "jane"}
		errs := make(chan error, 2)
		for i := range 2 {
			actor, target := pair[i], pair[1-i]
			go func() {
				errs <- f.h.RevokeRole(ctx, commands.RoleCommand{UserCommand: commands.UserCommand{
					Actor: domain.Actor{Provider: f.code, Login: actor}, Provider: f.code, Login: target}, Role: domain.RoleUserAdmin})
			}()
		}
		var refused int
		for range 2 {
			if err := <-errs; err != nil {
				if !errors.Is(err, domain.ErrLastUserAdmin) && !errors.Is(err, domain.ErrForbidden) {
					t.Fatalf("round %d: %v", round, err)
				}
				refused++
			}
		}
		var holders []string
		for _, login := range pair {
			u, err := f.h.LoadUser(ctx, f.code, login)
			must(t, err)
			if u.Roles[domain.RoleUserAdmin] {
				holders = append(holders, login)
			}
		}
		p, err := f.h.LoadProvider(ctx, f.code)
		must(t, err)
		if refused != 1 || len(holders) != 1 || len(p.UserAdmins) != 1 || !p.UserAdmins[holders[0]] {
			t.Fatalf("round %d: %d refused, holders %v, counted %v", round, refused, holders, p.UserAdmins)
		}
		// The survivor grants the role back for the next round.
		survivor := domain.Actor{Provider: f.code, Login: holders[0]}
		other := pair[0]
		if other == holders[0] {
			other = pair[1]
		}
		must(t, f.h.GrantRole(ctx, commands.RoleCommand{UserCommand: commands.UserCommand{Actor: survivor, Provider: f.code, Login: other}, Role: domain.RoleUserAdmin}))
	}
}
