package projections

import (
	"time"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/secret"
)

var operator = domain.SystemActor("test")

const pw = "Violet-Lantern-4817"

// history is what writeHistory did, for the assertions.
type history struct {
	T1, T2, T3, T4 string    // alice's first and resent token, carol's, erin's
	T5             string    // alice's token issued at the real time: valid now
	Extra          []string  // alice's tokens granted at t0+3m before the throttle refused one
	ResetAt        time.Time // alice's self-service reset
	Now            time.Time // the real time T5 was issued at
}

// writeHistory appends, through the command handler, a history that covers every read
// model: two providers (one allowed), registration, roles, enable, the email verification
// flow, granted requests, a resend, a wrong token, a reset that unlocks a failed-login
// lock, every refusal reason, a token revoked after five wrong guesses, an admin lock that
// revokes an expired token, a deactivation and a deletion.
func (e *env) writeHistory() history {
	e.t.Helper()
	ctx, c := e.ctx, e.cmd
	var h history
	user := func(code, login string) commands.UserCommand {
		return commands.UserCommand{Actor: operator, Provider: code, Login: login}
	}

	e.must(c.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: "ACME", Name: "Acme Agency", AllowSelfReset: true}))
	e.must(c.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: "NOPE", Name: "Nope Inc"}))
	register := func(code, login, name string, roles ...string) {
		e.t.Helper()
		e.must(c.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: code, Login: login,
			DisplayName: name, Password: pw, Roles: roles}))
	}
	register("ACME", "admin", "Ada Admin", domain.RoleUserAdmin)
	for _, u := range []struct{ login, name string }{
		{"alice", "Alice Archer"}, {"bob", "Bob Baker"}, {"carol", "Carol Cole"}, {"dave", "Dave Dunn"},
		{"erin", "Erin Eck"}, {"frank", "Frank Ford"}, {"gus", "Gus Gray"},
	} {
		register("ACME", u.login, u.name)
	}
	register("NOPE", "zed", "Zed Zane")

	e.must(c.GrantRole(ctx, commands.RoleCommand{UserCommand: user("ACME", "bob"), Role: domain.RoleUserAdmin}))
	e.must(c.RevokeRole(ctx, commands.RoleCommand{UserCommand: user("ACME", "bob"), Role: domain.RoleUserAdmin}))
	for _, login := range []string{"alice", "bob", "carol", "erin"} {
		e.must(c.EnableSelfReset(ctx, user("ACME", login)))
	}
	e.refused(c.EnableSelfReset(ctx, user("NOPE", "zed")), domain.ErrProviderNotAllowed.Code)

	// alice, carol and erin configure self-service reset; alice mistypes the code once.
	configure := func(login, email string, mistype bool) {
		e.t.Helper()
		self := commands.SelfUser{Provider: "ACME", Login: login}
		e.must(c.VerifyPasswordForSettings(ctx, commands.VerifyPasswordForSettings{Provider: "ACME", Login: login, Password: pw}))
		codeID, err := c.StartEmailVerification(ctx, commands.StartEmailVerification{SelfUser: self, Email: email})
		e.must(err)
		if mistype {
			e.refused(c.VerifyEmailCode(ctx, commands.VerifyEmailCode{SelfUser: self, Code: "000000x"}), domain.ErrInvalidCode.Code)
		}
		code, err := e.keys.Value(secret.KindEmailCode, "k1", codeID)
		e.must(err)
		e.must(c.VerifyEmailCode(ctx, commands.VerifyEmailCode{SelfUser: self, Code: code}))
		e.must(c.ConfigureSelfReset(ctx, commands.ConfigureSelfReset{SelfUser: self}))
	}
	configure("alice", "alice@example.org", true)
	configure("carol", "carol@example.org", false)
	configure("erin", "erin@example.net", false)

	request := func(code, login, email string) (string, error) {
		return c.RequestResetToken(ctx, commands.RequestResetToken{Provider: code, Login: login, Email: email})
	}
	token := func(id string) string {
		v, err := e.keys.Value(secret.KindResetToken, "k1", id)
		e.must(err)
		return v
	}
	failLogin := func(login string, times int) {
		for range times {
			_, err := c.Login(ctx, commands.Login{Provider: "ACME", Login: login, Password: "not-the-password"})
			e.refused(err, domain.ErrInvalidCredentials.Code)
		}
	}

	// t0+1m: alice asks for a token; t0+2m: she resends (the first is superseded), types a
	// wrong token, gets locked out by five failed logins; t0+3m: she resets (and is unlocked).
	e.clock.Advance(time.Minute)
	var err error
	h.T1, err = request("ACME", "alice", "Alice@Example.org")
	e.must(err)
	e.clock.Advance(time.Minute)
	h.T2, err = c.ResendResetToken(ctx, commands.ResendResetToken{Provider: "ACME", Login: "alice"})
	e.must(err)
	e.refused(c.ResetPassword(ctx, commands.ResetPassword{Provider: "ACME", Login: "alice", Token: "WRONG00000", NewPassword: "Amber-Meadow-2291"}),
		domain.ErrInvalidToken.Code)
	failLogin("alice", 5)
	e.clock.Advance(time.Minute)
	h.ResetAt = e.clock.Now()
	e.must(c.ResetPassword(ctx, commands.ResetPassword{Provider: "ACME", Login: "alice", Token: token(h.T2), NewPassword: "Amber-Meadow-2291"}))

	// Refusals, one per reason.
	_, err = request("ACME", "alice", "someone@example.org")
	e.refused(err, domain.ErrIdentifiersMismatch.Code)
	// Requests until the throttle (3 tokens in 15 minutes) refuses one. How many are still
	// granted after T1 and T2 depends on whether email codes count towards the limit.
	for {
		id, err := request("ACME", "alice", "alice@example.org")
		if domain.Code(err) == domain.ErrThrottled.Code {
			break
		}
		e.must(err)
		if h.Extra = append(h.Extra, id); len(h.Extra) > 2 {
			e.t.Fatal("alice's requests were never throttled")
		}
	}
	_, err = request("ACME", "bob", "bob@example.org")
	e.refused(err, domain.ErrNotConfigured.Code)
	_, err = request("ACME", "dave", "dave@example.org")
	e.refused(err, domain.ErrUserNotEnabled.Code)
	_, err = c.ResendResetToken(ctx, commands.ResendResetToken{Provider: "ACME", Login: "dave"})
	e.refused(err, domain.ErrNoActiveToken.Code)
	_, err = request("NOPE", "zed", "zed@example.org")
	e.refused(err, domain.ErrProviderNotAllowed.Code)
	_, err = request("acme", "nobody", "nobody@example.org")
	e.refused(err, domain.ErrUnknownAccount.Code)
	e.must(c.Delete(ctx, user("ACME", "frank")))
	_, err = request("ACME", "frank", "frank@example.org")
	e.refused(err, domain.ErrDeleted.Code)
	_, err = c.Login(ctx, commands.Login{Provider: "ACME", Login: "ghost", Password: pw}) // unmatched login: not reset activity
	e.refused(err, domain.ErrInvalidCredentials.Code)

	// carol gets a token; erin gets one and guesses wrong five times (revoked), then is
	// deactivated and refused; gus locks himself out.
	h.T3, err = request("ACME", "carol", "carol@example.org")
	e.must(err)
	h.T4, err = request("ACME", "erin", "erin@example.net")
	e.must(err)
	for i := range 5 {
		err := c.ResetPassword(ctx, commands.ResetPassword{Provider: "ACME", Login: "erin", Token: "WRONG0000" + string(rune('A'+i)), NewPassword: "Amber-Meadow-2291"})
		if i < 4 {
			e.refused(err, domain.ErrInvalidToken.Code)
		} else {
			e.refused(err, domain.ErrTooManyAttempts.Code)
		}
	}
	e.must(c.Deactivate(ctx, user("ACME", "erin")))
	_, err = request("ACME", "erin", "erin@example.net")
	e.refused(err, domain.ErrDeactivated.Code)
	failLogin("gus", 5)

	// t0+10m: carol's token expired unused; her Resend is refused, an admin locks her
	// (which revokes the expired token) and her next request is refused.
	e.clock.Advance(7 * time.Minute)
	_, err = c.ResendResetToken(ctx, commands.ResendResetToken{Provider: "ACME", Login: "carol"})
	e.refused(err, domain.ErrResendAfterExpiry.Code)
	e.must(c.AdminLock(ctx, user("ACME", "carol")))
	_, err = request("ACME", "carol", "carol@example.org")
	e.refused(err, domain.ErrAdminLocked.Code)

	// At the real time, alice gets a token that is valid now.
	h.Now = time.Now().UTC().Truncate(time.Second)
	e.clock.Set(h.Now)
	h.T5, err = request("ACME", "alice", "alice@example.org")
	e.must(err)
	return h
}
