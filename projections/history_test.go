package projections

import (
	"strings"
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
// model: two providers (e.acme allowed, e.nope not), registration, roles, enable, the
// email verification flow, granted requests, a resend, a wrong token, a reset that unlocks
// a failed-login lock, every refusal reason, a token revoked after five wrong guesses, an
// admin lock that revokes an expired token, a deactivation and a deletion.
func (e *env) writeHistory() history {
	e.t.Helper()
	ctx, c := e.ctx, e.cmd
	var h history
	user := func(code, login string) commands.UserCommand {
		return commands.UserCommand{Actor: operator, Provider: code, Login: login}
	}

	e.must(c.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: e.acme, Name: "Acme Agency", AllowSelfReset: true}))
	e.must(c.RegisterProvider(ctx, commands.RegisterProvider{Actor: operator, Code: e.nope, Name: "Nope Inc"}))
	register := func(code, login, name string, roles ...string) {
		e.t.Helper()
		e.must(c.RegisterUser(ctx, commands.RegisterUser{Actor: operator, Provider: code, Login: login,
			DisplayName: name, Password: pw, Roles: roles}))
	}
	register(e.acme, "admin", "Ada Admin", domain.RoleUserAdmin)
	for _, u := range []struct{ login, name string }{
		{"alice", "Alice Archer"}, {"bob", "Bob Baker"}, {"carol", "Carol Cole"}, {"dave", "Dave Dunn"},
		{"erin", "Erin Eck"}, {"frank", "Frank Ford"}, {"gus", "Gus Gray"},
	} {
		register(e.acme, u.login, u.name)
	}
	register(e.nope, "zed", "Zed Zane")

	e.must(c.GrantRole(ctx, commands.RoleCommand{UserCommand: user(e.acme, "bob"), Role: domain.RoleUserAdmin}))
	e.must(c.RevokeRole(ctx, commands.RoleCommand{UserCommand: user(e.acme, "bob"), Role: domain.RoleUserAdmin}))
	for _, login := range []string{"alice", "bob", "carol", "erin"} {
		e.must(c.EnableSelfReset(ctx, user(e.acme, login)))
	}
	e.refused(c.EnableSelfReset(ctx, user(e.nope, "zed")), domain.ErrProviderNotAllowed.Code)

	// alice, carol and erin configure self-service reset; alice mistypes the code once.
	configure := func(login, email string, mistype bool) {
		e.t.Helper()
		self := commands.SelfUser{Provider: e.acme, Login: login}
		e.must(c.VerifyPasswordForSettings(ctx, commands.VerifyPasswordForSettings{Provider: e.acme, Login: login, Password: pw}))
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
			_, err := c.Login(ctx, commands.Login{Provider: e.acme, Login: login, Password: "not-the-password"})
			e.refused(err, domain.ErrInvalidCredentials.Code)
		}
	}

	// t0+1m: alice asks for a token; t0+2m: she resends (the first is superseded), types a
	// wrong token, gets locked out by five failed logins; t0+3m: she resets (and is unlocked).
	e.clock.Add(time.Minute)
	var err error
	h.T1, err = request(e.acme, "alice", "Alice@Example.org")
	e.must(err)
	e.clock.Add(time.Minute)
	h.T2, err = c.ResendResetToken(ctx, commands.ResendResetToken{Provider: e.acme, Login: "alice"})
	e.must(err)
	e.refused(c.ResetPassword(ctx, commands.ResetPassword{Provider: e.acme, Login: "alice", Token: "WRONG00000", NewPassword: "Amber-Meadow-2291"}),
		domain.ErrInvalidToken.Code)
	failLogin("alice", 5)
	e.clock.Add(time.Minute)
	h.ResetAt = e.clock.Now()
	e.must(c.ResetPassword(ctx, commands.ResetPassword{Provider: e.acme, Login: "alice", Token: token(h.T2), NewPassword: "Amber-Meadow-2291"}))

	// Refusals, one per reason.
	_, err = request(e.acme, "alice", "someone@example.org")
	e.refused(err, domain.ErrIdentifiersMismatch.Code)
	// Requests until the throttle (3 tokens in 15 minutes) refuses one. How many are still
	// granted after T1 and T2 depends on whether email codes count towards the limit.
	for {
		id, err := request(e.acme, "alice", "alice@example.org")
		if domain.Code(err) == domain.ErrThrottled.Code {
			break
		}
		e.must(err)
		if h.Extra = append(h.Extra, id); len(h.Extra) > 2 {
			e.t.Fatal("alice's requests were never throttled")
		}
	}
	_, err = request(e.acme, "bob", "bob@example.org")
	e.refused(err, domain.ErrNotConfigured.Code)
	_, err = request(e.acme, "dave", "dave@example.org")
	e.refused(err, domain.ErrUserNotEnabled.Code)
	_, err = c.ResendResetToken(ctx, commands.ResendResetToken{Provider: e.acme, Login: "dave"})
	e.refused(err, domain.ErrNoActiveToken.Code)
	_, err = request(e.nope, "zed", "zed@example.org")
	e.refused(err, domain.ErrProviderNotAllowed.Code)
	_, err = request(strings.ToLower(e.acme), "nobody", "nobody@example.org")
	e.refused(err, domain.ErrUnknownAccount.Code)
	e.must(c.Delete(ctx, user(e.acme, "frank")))
	_, err = request(e.acme, "frank", "frank@example.org")
	e.refused(err, domain.ErrDeleted.Code)
	_, err = c.Login(ctx, commands.Login{Provider: e.acme, Login: "ghost", Password: pw}) // unmatched login: not reset activity
	e.refused(err, domain.ErrInvalidCredentials.Code)

	// carol gets a token; erin gets one and guesses wrong five times (revoked), then is
	// deactivated and refused; gus locks himself out.
	h.T3, err = request(e.acme, "carol", "carol@example.org")
	e.must(err)
	h.T4, err = request(e.acme, "erin", "erin@example.net")
	e.must(err)
	for i := range 5 { // the fifth revokes the token, yet answers like the others
		err := c.ResetPassword(ctx, commands.ResetPassword{Provider: e.acme, Login: "erin", Token: "WRONG0000" + string(rune('A'+i)), NewPassword: "Amber-Meadow-2291"})
		e.refused(err, domain.ErrInvalidToken.Code)
	}
	e.must(c.Deactivate(ctx, user(e.acme, "erin")))
	_, err = request(e.acme, "erin", "erin@example.net")
	e.refused(err, domain.ErrDeactivated.Code)
	failLogin("gus", 5)

	// t0+10m: carol's token expired unused; her Resend is refused, an admin locks her
	// (which revokes the expired token) and her next request is refused.
	e.clock.Add(7 * time.Minute)
	_, err = c.ResendResetToken(ctx, commands.ResendResetToken{Provider: e.acme, Login: "carol"})
	e.refused(err, domain.ErrResendAfterExpiry.Code)
	e.must(c.AdminLock(ctx, user(e.acme, "carol")))
	_, err = request(e.acme, "carol", "carol@example.org")
	e.refused(err, domain.ErrAdminLocked.Code)

	// At the real time, alice gets a token that is valid now.
	h.Now = time.Now().UTC().Truncate(time.Second)
	e.clock.Set(h.Now)
	h.T5, err = request(e.acme, "alice", "alice@example.org")
	e.must(err)
	return h
}
