package domain_test

import (
	"testing"
	"time"

	"selfreset/domain"
)

// adminHistory is an ACME user holding the User Administrative role.
func adminHistory() []domain.Event {
	return []domain.Event{domain.UserRegistered{Provider: acme, Login: "admin", DisplayName: "Ada Admin",
		PasswordHash: oldHash, Roles: []string{domain.RoleUserAdmin}}}
}

func TestActor(t *testing.T) {
	admin := domain.UserActor(given(adminHistory()...))
	if !admin.Admin || admin.ID() != adminBy || !admin.CanAdminister(acme) || admin.CanAdminister("OTHER") {
		t.Errorf("active admin actor = %+v (id %q)", admin, admin.ID())
	}
	for name, h := range map[string][]domain.Event{
		"admin locked": with(adminHistory(), domain.AccountAdminLocked{By: "system"}),
		"deactivated":  with(adminHistory(), domain.AccountDeactivated{By: "system"}),
		"deleted":      with(adminHistory(), domain.AccountDeleted{By: "system"}),
		"role revoked": with(adminHistory(), domain.RoleRevoked{Role: domain.RoleUserAdmin, By: "system"}),
		"never held":   registered(),
	} {
		if a := domain.UserActor(given(h...)); a.Admin || a.CanAdminister(acme) {
			t.Errorf("%s: actor %+v may administer", name, a)
		}
	}
	granted := domain.UserActor(given(with(registered(), domain.RoleGranted{Role: domain.RoleUserAdmin, By: "system"})...))
	if !granted.CanAdminister(acme) {
		t.Errorf("granted admin %+v may not administer", granted)
	}
	// A failed-login lock does not take admin rights away (only sign-in is blocked).
	if a := domain.UserActor(given(concat(adminHistory(), lockedOut())...)); !a.Admin {
		t.Errorf("failed-login-locked admin lost admin rights: %+v", a)
	}
	if id := domain.SystemActor("").ID(); id != "system" {
		t.Errorf("SystemActor(\"\").ID() = %q", id)
	}
	if id := ops.ID(); id != "system:ops" || !ops.CanAdminister("ANY") {
		t.Errorf("ops = %q", id)
	}
	// A signed-in user's actor and the id commands record for a sign-in are one format.
	if id, want := granted.ID(), domain.UserActorID(granted.Provider, granted.Login); id != want || id != "user:"+granted.Provider+"/"+granted.Login {
		t.Errorf("user actor id = %q, UserActorID = %q", id, want)
	}
}

func TestUserAdministration(t *testing.T) {
	reg := func(a domain.Actor, c domain.RegisterUserCommand) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, p domain.Provider) ([]domain.Event, error) { return u.RegisterUser(p, a, c) }
	}
	janeCmd := domain.RegisterUserCommand{Login: " Jane.Doe ", DisplayName: "Jane Doe", PasswordHash: oldHash}
	janeRegistered := domain.UserRegistered{Provider: acme, Login: jane, DisplayName: "Jane Doe", PasswordHash: oldHash}
	adminActor := domain.UserActor(given(adminHistory()...))
	lockedAdmin := domain.UserActor(given(with(adminHistory(), domain.AccountAdminLocked{By: "system"})...))
	withToken := with(configured(), issued(tokA, t0.Add(-time.Minute)))
	revokedA := func(reason domain.Reason) domain.Event {
		return domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: reason}
	}

	runUserCases(t, []userCase{
		// register
		{name: "register: operator; login is trimmed and case-folded", when: reg(ops, janeCmd),
			then: []domain.Event{janeRegistered},
			check: func(t *testing.T, u domain.User) {
				if !u.Registered || u.Login != jane || u.Provider != acme || u.PasswordHash != oldHash || len(u.Roles) != 0 {
					t.Errorf("state %+v", u)
				}
			}},
		{name: "register: admin of the same provider, with a role",
			when: reg(adminActor, domain.RegisterUserCommand{Login: "bob", DisplayName: "Bob", PasswordHash: oldHash, Roles: []string{domain.RoleUserAdmin}}),
			then: []domain.Event{domain.UserRegistered{Provider: acme, Login: "bob", DisplayName: "Bob", PasswordHash: oldHash, Roles: []string{domain.RoleUserAdmin}}},
			check: func(t *testing.T, u domain.User) {
				if !u.Roles[domain.RoleUserAdmin] || !domain.UserActor(u).Admin {
					t.Errorf("roles %v", u.Roles)
				}
			}},
		{name: "register: duplicate login", given: registered(), when: reg(ops, janeCmd), err: domain.ErrUserExists},
		{name: "register: unknown role", when: reg(ops, domain.RegisterUserCommand{Login: "bob", DisplayName: "Bob", PasswordHash: oldHash, Roles: []string{"superuser"}}),
			err: domain.ErrUnknownRole},
		{name: "register: non-admin actor", when: reg(acmeUser, janeCmd), err: domain.ErrForbidden},
		{name: "register: admin-locked admin", when: reg(lockedAdmin, janeCmd), err: domain.ErrForbidden},
		{name: "register: admin of another provider", when: reg(otherAdmin, janeCmd), err: domain.ErrForbidden},
		{name: "register: provider not registered", provider: []domain.Event{}, when: reg(ops, janeCmd), err: domain.ErrProviderNotFound},
		{name: "register: malformed login", when: reg(ops, domain.RegisterUserCommand{Login: "jane doe", DisplayName: "Jane", PasswordHash: oldHash}), err: domain.ErrInvalidInput},
		{name: "register: empty display name", when: reg(ops, domain.RegisterUserCommand{Login: "jane", PasswordHash: oldHash}), err: domain.ErrInvalidInput},
		{name: "register: no password hash", when: reg(ops, domain.RegisterUserCommand{Login: "jane", DisplayName: "Jane"}), err: domain.ErrInvalidInput},

		// roles
		{name: "grant role", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
				return u.GrantRole(acmeAdmin, domain.RoleUserAdmin)
			},
			then: []domain.Event{domain.RoleGranted{Role: domain.RoleUserAdmin, By: adminBy}},
			check: func(t *testing.T, u domain.User) {
				if !u.Roles[domain.RoleUserAdmin] {
					t.Errorf("role not held: %v", u.Roles)
				}
			}},
		{name: "grant a held role changes nothing", given: adminHistory(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
				return u.GrantRole(ops, domain.RoleUserAdmin)
			}},
		{name: "grant unknown role", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.GrantRole(ops, "root") },
			err:  domain.ErrUnknownRole},
		{name: "grant by a plain user", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
				return u.GrantRole(acmeUser, domain.RoleUserAdmin)
			},
			err: domain.ErrForbidden},
		{name: "grant by another provider's admin", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
				return u.GrantRole(otherAdmin, domain.RoleUserAdmin)
			},
			err: domain.ErrForbidden},
		{name: "grant to an unknown user",
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
				return u.GrantRole(ops, domain.RoleUserAdmin)
			},
			err: domain.ErrUserNotFound},
		{name: "revoke role", given: adminHistory(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
				return u.RevokeRole(ops, domain.RoleUserAdmin)
			},
			then: []domain.Event{domain.RoleRevoked{Role: domain.RoleUserAdmin, By: "system:ops"}},
			check: func(t *testing.T, u domain.User) {
				if u.Roles[domain.RoleUserAdmin] || domain.UserActor(u).Admin {
					t.Errorf("role still held: %v", u.Roles)
				}
			}},
		{name: "revoke a role not held changes nothing", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
				return u.RevokeRole(ops, domain.RoleUserAdmin)
			}},

		// enable / disable
		{name: "enable: provider not allowed", provider: registeredProvider(), given: registered(),
			when: func(u domain.User, p domain.Provider) ([]domain.Event, error) { return u.EnableSelfReset(p, acmeAdmin) },
			err:  domain.ErrProviderNotAllowed},
		{name: "enable", given: registered(),
			when: func(u domain.User, p domain.Provider) ([]domain.Event, error) { return u.EnableSelfReset(p, acmeAdmin) },
			then: []domain.Event{domain.SelfResetEnabled{By: adminBy}},
			check: func(t *testing.T, u domain.User) {
				if !u.SelfResetEnabled {
					t.Error("not enabled")
				}
			}},
		{name: "enable again changes nothing", given: enabled(),
			when: func(u domain.User, p domain.Provider) ([]domain.Event, error) { return u.EnableSelfReset(p, acmeAdmin) }},
		{name: "enable by another provider's admin", given: registered(),
			when: func(u domain.User, p domain.Provider) ([]domain.Event, error) {
				return u.EnableSelfReset(p, otherAdmin)
			},
			err: domain.ErrForbidden},
		{name: "enable by a plain user", given: registered(),
			when: func(u domain.User, p domain.Provider) ([]domain.Event, error) { return u.EnableSelfReset(p, acmeUser) },
			err:  domain.ErrForbidden},
		{name: "disable without a token", given: configured(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.DisableSelfReset(acmeAdmin) },
			then: []domain.Event{domain.SelfResetDisabled{By: adminBy}}},
		{name: "disable revokes the live token", given: withToken,
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.DisableSelfReset(acmeAdmin) },
			then: []domain.Event{domain.SelfResetDisabled{By: adminBy}, revokedA("self_reset_disabled")},
			check: func(t *testing.T, u domain.User) {
				if u.SelfResetEnabled || u.Token.State != domain.TokenRevoked {
					t.Errorf("enabled %v, token %+v", u.SelfResetEnabled, u.Token)
				}
			}},
		{name: "disable when not enabled changes nothing", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.DisableSelfReset(acmeAdmin) }},

		// admin lock
		{name: "admin lock revokes the live token", given: withToken,
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.AdminLock(acmeAdmin) },
			then: []domain.Event{domain.AccountAdminLocked{By: adminBy}, revokedA("admin_locked")},
			check: func(t *testing.T, u domain.User) {
				if !u.AdminLocked || u.Active() || u.Token.State != domain.TokenRevoked {
					t.Errorf("state %+v token %+v", u, u.Token)
				}
			}},
		{name: "admin lock leaves a used token alone",
			given: with(withToken, domain.PasswordChanged{PasswordHash: newHash, Method: domain.PasswordChangedBySelfReset, TokenID: tokA.ID, ChangedAt: t0}),
			when:  func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.AdminLock(acmeAdmin) },
			then:  []domain.Event{domain.AccountAdminLocked{By: adminBy}}},
		{name: "admin lock again changes nothing", given: with(registered(), domain.AccountAdminLocked{By: adminBy}),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.AdminLock(acmeAdmin) }},
		{name: "admin lock by a plain user", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.AdminLock(acmeUser) },
			err:  domain.ErrForbidden},
		{name: "admin unlock", given: with(registered(), domain.AccountAdminLocked{By: adminBy}),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.AdminUnlock(acmeAdmin) },
			then: []domain.Event{domain.AccountAdminUnlocked{By: adminBy}}},
		{name: "admin unlock also lifts the failed-login lock",
			given: concat(registered(), lockedOut(), []domain.Event{domain.AccountAdminLocked{By: adminBy}}),
			when:  func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.AdminUnlock(acmeAdmin) },
			then:  []domain.Event{domain.AccountAdminUnlocked{By: adminBy}, domain.AccountUnlocked{Reason: "admin", By: adminBy}},
			check: func(t *testing.T, u domain.User) {
				if u.Locked || u.AdminLocked || u.FailedLogins != 0 {
					t.Errorf("still locked: %+v", u)
				}
			}},
		{name: "admin unlock clears failed logins that raced past the limit without a lock event",
			given: concat(registered(), wrongPasswords(5)),
			when:  func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.AdminUnlock(acmeAdmin) },
			then:  []domain.Event{domain.AccountUnlocked{Reason: "admin", By: adminBy}},
			check: func(t *testing.T, u domain.User) {
				if u.FailedLogins != 0 || u.Locked {
					t.Errorf("after unlock: failed logins %d, locked %v", u.FailedLogins, u.Locked)
				}
			}},
		{name: "admin unlock of an unlocked account changes nothing", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.AdminUnlock(acmeAdmin) }},

		// deactivate / reactivate
		{name: "deactivate revokes the live token", given: withToken,
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Deactivate(acmeAdmin) },
			then: []domain.Event{domain.AccountDeactivated{By: adminBy}, revokedA("deactivated")}},
		{name: "deactivate again changes nothing", given: with(registered(), domain.AccountDeactivated{By: adminBy}),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Deactivate(acmeAdmin) }},
		{name: "reactivate", given: with(registered(), domain.AccountDeactivated{By: adminBy}),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Reactivate(acmeAdmin) },
			then: []domain.Event{domain.AccountReactivated{By: adminBy}},
			check: func(t *testing.T, u domain.User) {
				if u.Deactivated || !u.Active() {
					t.Errorf("state %+v", u)
				}
			}},
		{name: "reactivate an active account changes nothing", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Reactivate(acmeAdmin) }},
		{name: "deactivate by another provider's admin", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Deactivate(otherAdmin) },
			err:  domain.ErrForbidden},

		// delete
		{name: "delete revokes the live token", given: withToken,
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Delete(acmeAdmin) },
			then: []domain.Event{domain.AccountDeleted{By: adminBy}, revokedA("deleted")},
			check: func(t *testing.T, u domain.User) {
				if !u.Deleted || u.Active() {
					t.Errorf("state %+v", u)
				}
			}},
		{name: "delete again changes nothing", given: with(registered(), domain.AccountDeleted{By: adminBy}),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Delete(acmeAdmin) }},
		{name: "delete by a plain user", given: registered(),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Delete(acmeUser) },
			err:  domain.ErrForbidden},
		{name: "delete an unknown user",
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Delete(ops) },
			err:  domain.ErrUserNotFound},
		{name: "nothing brings a deleted account back", given: with(registered(), domain.AccountDeleted{By: adminBy}),
			when: func(u domain.User, _ domain.Provider) ([]domain.Event, error) { return u.Reactivate(ops) },
			err:  domain.ErrDeleted},
		{name: "a deleted account cannot be enabled", given: with(registered(), domain.AccountDeleted{By: adminBy}),
			when: func(u domain.User, p domain.Provider) ([]domain.Event, error) { return u.EnableSelfReset(p, ops) },
			err:  domain.ErrDeleted},
	})
}

func TestAuditorRole(t *testing.T) {
	aud := func(roles map[string]bool, locked bool) domain.Actor {
		return domain.UserActor(domain.User{Provider: acme, Login: "ann", Registered: true, Roles: roles, AdminLocked: locked})
	}
	cases := []struct {
		name           string
		actor          domain.Actor
		audits, others bool
		administers    bool
	}{
		{"auditor", aud(map[string]bool{domain.RoleAuditor: true}, false), true, false, false},
		{"admin-locked auditor", aud(map[string]bool{domain.RoleAuditor: true}, true), false, false, false},
		{"user-admin", aud(map[string]bool{domain.RoleUserAdmin: true}, false), false, false, true},
		{"plain user", aud(map[string]bool{}, false), false, false, false},
		{"operator", domain.SystemActor("cli"), true, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.actor.CanAudit(acme); got != tc.audits {
				t.Errorf("CanAudit(own) = %v", got)
			}
			if got := tc.actor.CanAudit("OTHER"); got != tc.others {
				t.Errorf("CanAudit(other) = %v", got)
			}
			if got := tc.actor.CanAdminister(acme); got != tc.administers {
				t.Errorf("CanAdminister = %v", got)
			}
		})
	}
	if !domain.KnownRole(domain.RoleAuditor) {
		t.Error("auditor is not a known role")
	}
}
