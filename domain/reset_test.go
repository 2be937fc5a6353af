package domain_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"selfreset/domain"
)

// ---- Forgot Password? ----

func TestRequestResetToken(t *testing.T) {
	request := func(email string, now time.Time) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, p domain.Provider) ([]domain.Event, error) {
			return u.RequestResetToken(pol, p, domain.ResetRequest{Email: email, EmailHash: "eh:" + domain.NormalizeEmail(email), Token: tokD}, now)
		}
	}
	// rejected is what the auditors see for the owner's own email.
	rejected := func(reason domain.Reason, notify string) domain.Event {
		e := domain.ResetRequestRejected{Reason: reason, Provider: acme, Login: jane, EmailMasked: janeMask,
			EmailHash: "eh:" + janeEmail, NotifyEmail: notify}
		if notify != "" {
			e.NotifiedAt = t0
		}
		return e
	}
	retryAt := func(e domain.Event, at time.Time) domain.Event {
		r := e.(domain.ResetRequestRejected)
		r.RetryAt = at
		return r
	}
	stranger := "mallory@evil.test"
	rejectedStranger := func(reason domain.Reason) domain.Event {
		return domain.ResetRequestRejected{Reason: reason, Provider: acme, Login: jane, EmailMasked: "m***y@e***l.test",
			EmailHash: "eh:" + stranger}
	}
	tokenD := func(at time.Time, supersedes string) domain.Event {
		e := issued(tokD, at)
		e.Supersedes = supersedes
		return e
	}
	// three tokens in the last 15 minutes (a request and two resends)
	threeTokens := with(configured(),
		issued(tokA, t0.Add(-10*time.Minute)),
		reissued(tokB, tokA, t0.Add(-8*time.Minute), true),
		reissued(tokC, tokB, t0.Add(-4*time.Minute), true))

	runUserCases(t, []userCase{
		{name: "ok: a 5-minute token to the configured email", given: configured(), when: request(janeEmail, t0),
			then: []domain.Event{tokenD(t0, "")},
			check: func(t *testing.T, u domain.User) {
				want := domain.ResetToken{ID: tokD.ID, KeyID: "k1", Hash: tokD.Hash, IssuedAt: t0, ExpiresAt: t0.Add(5 * time.Minute), State: domain.TokenActive}
				if u.Token == nil || *u.Token != want {
					t.Errorf("token %+v, want %+v", u.Token, want)
				}
			}},
		{name: "ok: the entered email is trimmed and case-folded", given: configured(), when: request("  JANE@example.ORG ", t0),
			then: []domain.Event{tokenD(t0, "")}},
		{name: "provider not allowed: the owner is told", provider: registeredProvider(), given: configured(), when: request(janeEmail, t0),
			then: []domain.Event{rejected("provider_not_allowed", janeEmail)}, err: domain.ErrProviderNotAllowed},
		{name: "provider revoked after configuration", provider: with(allowedProvider(), domain.ProviderSelfResetRevoked{By: "system"}),
			given: configured(), when: request(janeEmail, t0),
			then: []domain.Event{rejected("provider_not_allowed", janeEmail)}, err: domain.ErrProviderNotAllowed},
		{name: "user not enabled, nothing known to notify", given: registered(), when: request(janeEmail, t0),
			then: []domain.Event{rejected("user_not_enabled", "")}, err: domain.ErrUserNotEnabled},
		{name: "user disabled after configuring: the owner is told", given: with(configured(), domain.SelfResetDisabled{By: adminBy}),
			when: request(janeEmail, t0), then: []domain.Event{rejected("user_not_enabled", janeEmail)}, err: domain.ErrUserNotEnabled},
		{name: "not configured, no email at all", given: enabled(), when: request(janeEmail, t0),
			then: []domain.Event{rejected("not_configured", "")}, err: domain.ErrNotConfigured},
		{name: "not configured but verified: the owner is told", given: verified(), when: request(janeEmail, t0),
			then: []domain.Event{rejected("not_configured", janeEmail)}, err: domain.ErrNotConfigured},
		{name: "not configured, verified, someone else's email: nobody is mailed", given: verified(), when: request(stranger, t0),
			then: []domain.Event{rejectedStranger("not_configured")}, err: domain.ErrNotConfigured},
		{name: "wrong email", given: configured(), when: request(stranger, t0),
			then: []domain.Event{rejectedStranger("identifiers_mismatch")}, err: domain.ErrIdentifiersMismatch},
		{name: "empty email", given: configured(), when: request("", t0),
			then: []domain.Event{domain.ResetRequestRejected{Reason: "identifiers_mismatch", Provider: acme, Login: jane, EmailHash: "eh:"}},
			err:  domain.ErrIdentifiersMismatch},
		{name: "wrong email outranks provider not allowed", provider: registeredProvider(), given: configured(), when: request(stranger, t0),
			then: []domain.Event{rejectedStranger("identifiers_mismatch")}, err: domain.ErrIdentifiersMismatch},
		{name: "wrong email outranks throttling", given: threeTokens, when: request(stranger, t0),
			then: []domain.Event{rejectedStranger("identifiers_mismatch")}, err: domain.ErrIdentifiersMismatch},
		{name: "admin locked: the owner is told", given: with(configured(), domain.AccountAdminLocked{By: adminBy}), when: request(janeEmail, t0),
			then: []domain.Event{rejected("admin_locked", janeEmail)}, err: domain.ErrAdminLocked},
		{name: "admin locked, wrong email: recorded as admin_locked, nobody is mailed",
			given: with(configured(), domain.AccountAdminLocked{By: adminBy}), when: request(stranger, t0),
			then: []domain.Event{rejectedStranger("admin_locked")}, err: domain.ErrAdminLocked},
		{name: "deactivated: the owner is told", given: with(configured(), domain.AccountDeactivated{By: adminBy}), when: request(janeEmail, t0),
			then: []domain.Event{rejected("deactivated", janeEmail)}, err: domain.ErrDeactivated},
		{name: "deleted: the owner is told", given: with(configured(), domain.AccountDeleted{By: adminBy}), when: request(janeEmail, t0),
			then: []domain.Event{rejected("deleted", janeEmail)}, err: domain.ErrDeleted},
		{name: "throttled: the fourth token within 15 minutes; the owner is told when to try again", given: threeTokens, when: request(janeEmail, t0),
			then: []domain.Event{retryAt(rejected("throttled", janeEmail), t0.Add(5*time.Minute))}, err: domain.ErrThrottled},
		{name: "allowed again when the oldest is exactly 15 minutes old", given: threeTokens, when: request(janeEmail, t0.Add(5*time.Minute)),
			then: []domain.Event{tokenD(t0.Add(5*time.Minute), "")}}, // tokC had expired: nothing to supersede
		{name: "a failed-login lock does not stop a reset", given: concat(configured(), lockedOut()), when: request(janeEmail, t0),
			then: []domain.Event{tokenD(t0, "")}},
		{name: "a second request supersedes the first", given: with(configured(), issued(tokA, t0.Add(-time.Minute))), when: request(janeEmail, t0),
			then: []domain.Event{tokenD(t0, tokA.ID)},
			check: func(t *testing.T, u domain.User) {
				if u.Token.ID != tokD.ID || len(u.Superseded) != 1 || u.Superseded[0].ID != tokA.ID || u.Superseded[0].State != domain.TokenSuperseded {
					t.Errorf("token %+v, superseded %+v", u.Token, u.Superseded)
				}
			}},
		{name: "a request after an expired token supersedes nothing (it counts as expired unused)", given: with(configured(), issued(tokA, t0.Add(-6*time.Minute))), when: request(janeEmail, t0),
			then: []domain.Event{tokenD(t0, "")}},
		{name: "a request after a used token supersedes nothing",
			given: with(configured(), issued(tokA, t0.Add(-20*time.Minute)),
				domain.PasswordChanged{PasswordHash: newHash, Method: domain.PasswordChangedBySelfReset, TokenID: tokA.ID, ChangedAt: t0.Add(-19 * time.Minute)}),
			when: request(janeEmail, t0), then: []domain.Event{tokenD(t0, "")}},
		{name: "a request after a revoked token supersedes nothing",
			given: with(configured(), issued(tokA, t0.Add(-20*time.Minute)), domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "too_many_attempts"}),
			when:  request(janeEmail, t0), then: []domain.Event{tokenD(t0, "")}},
	})
}

// TestRequestResetTokenThrottleWindow drives four requests, then moves the clock past the window.
func TestRequestResetTokenThrottleWindow(t *testing.T) {
	u := given(configured()...)
	p := givenProvider(allowedProvider()...)
	toks := []domain.Secret{tokA, tokB, tokC, tokD}
	for i, tok := range toks {
		now := t0.Add(time.Duration(i) * time.Minute)
		events, err := u.RequestResetToken(pol, p, domain.ResetRequest{Email: janeEmail, EmailHash: "eh", Token: tok}, now)
		if i < 3 {
			if err != nil {
				t.Fatalf("request %d: %v", i+1, err)
			}
			if e, ok := events[0].(domain.ResetTokenIssued); !ok || e.TokenID != tok.ID {
				t.Fatalf("request %d: %s", i+1, dump(events))
			}
		} else {
			assertErr(t, err, domain.ErrThrottled)
			assertEvents(t, events, []domain.Event{domain.ResetRequestRejected{Reason: "throttled", Provider: acme, Login: jane, EmailMasked: janeMask, EmailHash: "eh",
				NotifyEmail: janeEmail, NotifiedAt: now, RetryAt: t0.Add(15 * time.Minute)}})
		}
		play(&u, events)
	}
	// The rejected fourth request did not use up budget: at t0+15m the first token has
	// left the window and one more is allowed; at t0+15m+59s the other two still count.
	events, err := u.RequestResetToken(pol, p, domain.ResetRequest{Email: janeEmail, Token: tokD}, t0.Add(15*time.Minute))
	if err != nil {
		t.Fatalf("after the window: %v", err)
	}
	play(&u, events)
	if _, err := u.RequestResetToken(pol, p, domain.ResetRequest{Email: janeEmail, Token: tokA}, t0.Add(15*time.Minute+59*time.Second)); !errors.Is(err, domain.ErrThrottled) {
		t.Fatalf("still three in the window: err = %v", err)
	}
}

// TestRejectedRequestsHoldNoPlainEmail: auditors get a mask and a keyed hash, never the
// attempted address, except NotifyEmail, which is the owner's own verified address.
func TestRejectedRequestsHoldNoPlainEmail(t *testing.T) {
	p := givenProvider(registeredProvider()...)
	for _, h := range [][]domain.Event{registered(), enabled(), verified(), configured()} {
		u := given(h...)
		for _, email := range []string{"mallory@evil.test", janeEmail} {
			events, _ := u.RequestResetToken(pol, p, domain.ResetRequest{Email: email, EmailHash: "eh", Token: tokA}, t0)
			e := events[0].(domain.ResetRequestRejected)
			if e.EmailMasked == email || e.EmailHash == email || strings.Contains(e.EmailMasked, "@evil.test") {
				t.Errorf("plain email recorded: %+v", e)
			}
			if e.NotifyEmail != "" && e.NotifyEmail != janeEmail {
				t.Errorf("mail aimed at a stranger: %+v", e)
			}
			if email != janeEmail && e.NotifyEmail != "" {
				t.Errorf("owner notified about a request naming someone else's email: %+v", e)
			}
		}
	}
}

// ---- Resend ----

func TestResendResetToken(t *testing.T) {
	resend := func(now time.Time) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, p domain.Provider) ([]domain.Event, error) {
			return u.ResendResetToken(pol, p, tokB, now)
		}
	}
	rejected := func(reason domain.Reason, notify string, at ...time.Time) domain.Event {
		e := domain.ResetRequestRejected{Reason: reason, Provider: acme, Login: jane, NotifyEmail: notify, Resend: true}
		if notify != "" {
			e.NotifiedAt = append(at, t0)[0]
		}
		return e
	}
	retry := func(e domain.Event, at time.Time) domain.Event {
		r := e.(domain.ResetRequestRejected)
		r.RetryAt = at
		return r
	}
	withA := with(configured(), issued(tokA, t0.Add(-2*time.Minute))) // expires t0+3m
	runUserCases(t, []userCase{
		{name: "while valid: a fresh 5-minute token supersedes the old one", given: withA, when: resend(t0),
			then: []domain.Event{reissued(tokB, tokA, t0, true)},
			check: func(t *testing.T, u domain.User) {
				if u.Token.ID != tokB.ID || u.Token.ExpiresAt != t0.Add(5*time.Minute) || u.Superseded[0].ID != tokA.ID {
					t.Errorf("token %+v superseded %+v", u.Token, u.Superseded)
				}
			}},
		{name: "one instant before expiry", given: withA, when: resend(t0.Add(3*time.Minute - time.Nanosecond)),
			then: []domain.Event{reissued(tokB, tokA, t0.Add(3*time.Minute-time.Nanosecond), true)}},
		{name: "at expiry: start again from Forgot Password", given: withA, when: resend(t0.Add(3 * time.Minute)),
			then: []domain.Event{rejected("resend_after_expiry", janeEmail, t0.Add(3*time.Minute))}, err: domain.ErrResendAfterExpiry},
		{name: "after expiry", given: withA, when: resend(t0.Add(10 * time.Minute)),
			then: []domain.Event{rejected("resend_after_expiry", janeEmail, t0.Add(10*time.Minute))}, err: domain.ErrResendAfterExpiry},
		{name: "the owner gets at most three error emails per 15 minutes",
			given: with(withA,
				rejected("resend_after_expiry", janeEmail, t0.Add(4*time.Minute)),
				rejected("resend_after_expiry", janeEmail, t0.Add(5*time.Minute)),
				rejected("resend_after_expiry", janeEmail, t0.Add(6*time.Minute))),
			when: resend(t0.Add(7 * time.Minute)),
			then: []domain.Event{rejected("resend_after_expiry", "")}, err: domain.ErrResendAfterExpiry},
		{name: "and again once the window has passed",
			given: with(withA,
				rejected("resend_after_expiry", janeEmail, t0.Add(4*time.Minute)),
				rejected("resend_after_expiry", janeEmail, t0.Add(5*time.Minute)),
				rejected("resend_after_expiry", janeEmail, t0.Add(6*time.Minute))),
			when: resend(t0.Add(19 * time.Minute)),
			then: []domain.Event{rejected("resend_after_expiry", janeEmail, t0.Add(19*time.Minute))}, err: domain.ErrResendAfterExpiry},
		{name: "no token: the owner is told", given: configured(), when: resend(t0),
			then: []domain.Event{rejected("no_active_token", janeEmail)}, err: domain.ErrNoActiveToken},
		{name: "used token", given: with(withA, domain.PasswordChanged{PasswordHash: newHash, Method: domain.PasswordChangedBySelfReset, TokenID: tokA.ID, ChangedAt: t0}),
			when: resend(t0), then: []domain.Event{rejected("no_active_token", janeEmail)}, err: domain.ErrNoActiveToken},
		{name: "revoked token (admin locked meanwhile)",
			given: with(withA, domain.AccountAdminLocked{By: adminBy}, domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "admin_locked"}),
			when:  resend(t0), then: []domain.Event{rejected("no_active_token", janeEmail)}, err: domain.ErrNoActiveToken},
		{name: "revoked for wrong tries: the owner is told, at once when not throttled",
			given: with(withA, domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "too_many_attempts"}),
			when:  resend(t0), then: []domain.Event{rejected("no_active_token", janeEmail)}, err: domain.ErrNoActiveToken},
		{name: "revoked for wrong tries while throttled: the owner is told when to try again",
			given: with(withA, reissued(tokC, tokA, t0.Add(-time.Minute), true), reissued(tokD, tokC, t0.Add(-30*time.Second), true),
				domain.ResetTokenRevoked{TokenID: tokD.ID, Reason: "too_many_attempts"}),
			when: resend(t0), then: []domain.Event{retry(rejected("no_active_token", janeEmail), t0.Add(13*time.Minute))}, err: domain.ErrNoActiveToken},
		{name: "provider revoked meanwhile: the owner is told", provider: with(allowedProvider(), domain.ProviderSelfResetRevoked{By: "system"}),
			given: withA, when: resend(t0), then: []domain.Event{rejected("provider_not_allowed", janeEmail)}, err: domain.ErrProviderNotAllowed},
		{name: "throttled: resends count toward the budget",
			given: with(withA, reissued(tokC, tokA, t0.Add(-time.Minute), true), reissued(tokD, tokC, t0.Add(-30*time.Second), true)),
			when:  resend(t0), then: []domain.Event{retry(rejected("throttled", janeEmail), t0.Add(13*time.Minute))}, err: domain.ErrThrottled},
	})
}

// ---- Change Password ----

func newPassword(token, pw string) domain.NewPassword {
	return domain.NewPassword{Token: token, Candidate: domain.PasswordCandidate{Password: pw}, Hash: newHash}
}

func TestResetPassword(t *testing.T) {
	reset := func(token string, now time.Time) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, p domain.Provider) ([]domain.Event, error) {
			return u.ResetPassword(pol, p, newPassword(token, goodPass), fakeMatch, now)
		}
	}
	withA := with(configured(), issued(tokA, t0)) // expires t0+5m
	changed := func(tok domain.Secret, at time.Time) domain.Event {
		return domain.PasswordChanged{PasswordHash: newHash, Method: domain.PasswordChangedBySelfReset, TokenID: tok.ID, ChangedAt: at, NotifyEmail: janeEmail}
	}
	rejectedA := func(reason domain.Reason, n int) domain.Event {
		return domain.ResetTokenRejected{TokenID: tokA.ID, Reason: reason, Attempts: n}
	}
	used := with(withA, changed(tokA, t0.Add(time.Minute)))
	resentB := with(withA, reissued(tokB, tokA, t0.Add(time.Minute), true)) // B expires t0+6m
	attempts := func(n int) func(*testing.T, domain.User) {
		return func(t *testing.T, u domain.User) {
			t.Helper()
			if u.Token.Attempts != n {
				t.Errorf("attempts = %d, want %d", u.Token.Attempts, n)
			}
		}
	}
	runUserCases(t, []userCase{
		{name: "ok", given: withA, when: reset(valA, t0.Add(time.Minute)),
			then: []domain.Event{changed(tokA, t0.Add(time.Minute))},
			check: func(t *testing.T, u domain.User) {
				if u.Token.State != domain.TokenUsed || u.PasswordVersion != 1 || !u.LastResetAt.Equal(t0.Add(time.Minute)) || u.PasswordHash != newHash {
					t.Errorf("state %+v token %+v", u, u.Token)
				}
			}},
		{name: "ok after wrong tries", given: concat(withA, wrongTokens(tokA, 4)), when: reset(valA, t0.Add(time.Minute)),
			then: []domain.Event{changed(tokA, t0.Add(time.Minute))}},
		{name: "ok unlocks an account locked by failed logins", given: concat(configured(), lockedOut(), []domain.Event{issued(tokA, t0)}),
			when: reset(valA, t0.Add(time.Minute)),
			then: []domain.Event{changed(tokA, t0.Add(time.Minute)), domain.AccountUnlocked{Reason: "password_reset"}},
			check: func(t *testing.T, u domain.User) {
				if u.Locked || u.FailedLogins != 0 {
					t.Errorf("still locked: %+v", u)
				}
				if ev, err := u.SignIn(pol, true, "s"); err != nil || len(ev) != 1 {
					t.Errorf("sign in after reset: %v %s", err, dump(ev))
				}
			}},
		{name: "4m59s: still valid", given: withA, when: reset(valA, t0.Add(4*time.Minute+59*time.Second)),
			then: []domain.Event{changed(tokA, t0.Add(4*time.Minute+59*time.Second))}},
		{name: "5m0s: expired", given: withA, when: reset(valA, t0.Add(5*time.Minute)),
			then: []domain.Event{rejectedA("token_expired", 0)}, err: domain.ErrTokenExpired, check: attempts(0)},
		{name: "wrong token counts", given: withA, when: reset(valB, t0.Add(time.Minute)),
			then: []domain.Event{rejectedA("wrong_token", 1)}, err: domain.ErrInvalidToken, check: attempts(1)},
		{name: "fifth wrong token revokes it", given: concat(withA, wrongTokens(tokA, 4)), when: reset(valB, t0.Add(time.Minute)),
			then: []domain.Event{rejectedA("wrong_token", 5), domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "too_many_attempts"}},
			err:  domain.ErrInvalidToken, // a wrong value learns nothing more
			check: func(t *testing.T, u domain.User) {
				if u.Token.State != domain.TokenRevoked || u.Token.Attempts != 5 {
					t.Errorf("token %+v", u.Token)
				}
			}},
		{name: "revoked: the right value no longer works",
			given: with(concat(withA, wrongTokens(tokA, 5)), domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "too_many_attempts"}),
			when:  reset(valA, t0.Add(time.Minute)), then: []domain.Event{rejectedA("too_many_attempts", 5)}, err: domain.ErrTooManyAttempts},
		{name: "used", given: used, when: reset(valA, t0.Add(2*time.Minute)),
			then: []domain.Event{rejectedA("token_used", 0)}, err: domain.ErrTokenUsed},
		{name: "superseded: the old token's value no longer works after a resend", given: resentB, when: reset(valA, t0.Add(2*time.Minute)),
			then: []domain.Event{rejectedA("token_superseded", 0)}, err: domain.ErrTokenSuperseded,
			check: func(t *testing.T, u domain.User) {
				if u.Token.ID != tokB.ID || u.Token.State != domain.TokenActive || u.Token.Attempts != 0 {
					t.Errorf("the live token was touched: %+v", u.Token)
				}
			}},
		{name: "superseded twice over", given: with(resentB, reissued(tokC, tokB, t0.Add(2*time.Minute), true)), when: reset(valA, t0.Add(3*time.Minute)),
			then: []domain.Event{rejectedA("token_superseded", 0)}, err: domain.ErrTokenSuperseded},
		{name: "the resent token works", given: resentB, when: reset(valB, t0.Add(2*time.Minute)),
			then: []domain.Event{changed(tokB, t0.Add(2*time.Minute))}},
		{name: "the resent token lives 5 minutes from the resend", given: resentB, when: reset(valB, t0.Add(6*time.Minute)),
			then: []domain.Event{domain.ResetTokenRejected{TokenID: tokB.ID, Reason: "token_expired"}}, err: domain.ErrTokenExpired},
		{name: "after use, the superseded value still reports superseded",
			given: with(resentB, changed(tokB, t0.Add(2*time.Minute))), when: reset(valA, t0.Add(3*time.Minute)),
			then: []domain.Event{rejectedA("token_superseded", 0)}, err: domain.ErrTokenSuperseded},
		{name: "after use, a wrong value says invalid, not used (no probing)",
			given: with(resentB, changed(tokB, t0.Add(2*time.Minute))), when: reset("ZZZZZZZZZZ", t0.Add(3*time.Minute)),
			then: []domain.Event{domain.ResetTokenRejected{TokenID: tokB.ID, Reason: "invalid_token"}}, err: domain.ErrInvalidToken},
		{name: "after expiry, a wrong value says invalid, not expired (no probing)",
			given: resentB, when: reset("ZZZZZZZZZZ", t0.Add(9*time.Minute)),
			then: []domain.Event{domain.ResetTokenRejected{TokenID: tokB.ID, Reason: "invalid_token"}}, err: domain.ErrInvalidToken},
		{name: "admin locked after issue: the token was revoked",
			given: with(withA, domain.AccountAdminLocked{By: adminBy}, domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "admin_locked"}),
			when:  reset(valA, t0.Add(time.Minute)), then: []domain.Event{rejectedA("token_revoked", 0)}, err: domain.ErrTokenRevoked},
		// A history without the revocation (written before AdminLock revoked tokens) is still safe.
		{name: "admin locked, token not yet revoked: revoked now", given: with(withA, domain.AccountAdminLocked{By: adminBy}),
			when: reset(valA, t0.Add(time.Minute)),
			then: []domain.Event{rejectedA("admin_locked", 0), domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "admin_locked"}},
			err:  domain.ErrTokenRevoked},
		{name: "deactivated after issue", given: with(withA, domain.AccountDeactivated{By: adminBy}, domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "deactivated"}),
			when: reset(valA, t0.Add(time.Minute)), then: []domain.Event{rejectedA("token_revoked", 0)}, err: domain.ErrTokenRevoked},
		{name: "deleted after issue", given: with(withA, domain.AccountDeleted{By: adminBy}, domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "deleted"}),
			when: reset(valA, t0.Add(time.Minute)), then: []domain.Event{rejectedA("token_revoked", 0)}, err: domain.ErrTokenRevoked},
		{name: "self reset disabled after issue", given: with(withA, domain.SelfResetDisabled{By: adminBy}, domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "self_reset_disabled"}),
			when: reset(valA, t0.Add(time.Minute)), then: []domain.Event{rejectedA("token_revoked", 0)}, err: domain.ErrTokenRevoked},
		{name: "provider revoked after issue: the token dies",
			provider: with(allowedProvider(), domain.ProviderSelfResetRevoked{By: "system"}), given: withA,
			when: reset(valA, t0.Add(time.Minute)),
			then: []domain.Event{rejectedA("provider_not_allowed", 0), domain.ResetTokenRevoked{TokenID: tokA.ID, Reason: "self_reset_not_allowed"}},
			err:  domain.ErrTokenRevoked},
		{name: "no token", given: configured(), when: reset(valA, t0),
			then: []domain.Event{domain.ResetTokenRejected{Reason: "no_active_token"}}, err: domain.ErrInvalidToken},
		{name: "unknown account", when: reset(valA, t0), err: domain.ErrInvalidToken},
		{name: "no hash supplied", given: withA,
			when: func(u domain.User, p domain.Provider) ([]domain.Event, error) {
				np := newPassword(valA, goodPass)
				np.Hash = ""
				return u.ResetPassword(pol, p, np, fakeMatch, t0)
			},
			err: domain.ErrInvalidInput},
		{name: "a wrong token is reported before the password policy", given: withA,
			when: func(u domain.User, p domain.Provider) ([]domain.Event, error) {
				return u.ResetPassword(pol, p, newPassword(valB, "short"), fakeMatch, t0)
			},
			then: []domain.Event{rejectedA("wrong_token", 1)}, err: domain.ErrInvalidToken},
	})
}

// TestResetPasswordFiveWrongTokens drives five wrong tokens, then the right one.
func TestResetPasswordFiveWrongTokens(t *testing.T) {
	u := given(with(configured(), issued(tokA, t0))...)
	p := givenProvider(allowedProvider()...)
	for i := 1; i <= 5; i++ {
		events, err := u.ResetPassword(pol, p, newPassword("WRONG"+strings.Repeat("0", i), goodPass), fakeMatch, t0.Add(time.Duration(i)*time.Second))
		assertErr(t, err, domain.ErrInvalidToken) // the fifth too: a wrong value learns nothing
		play(&u, events)
	}
	if u.Token.State != domain.TokenRevoked {
		t.Fatalf("token after five wrong values: %+v", u.Token)
	}
	events, err := u.ResetPassword(pol, p, newPassword(valA, goodPass), fakeMatch, t0.Add(time.Minute))
	assertErr(t, err, domain.ErrTooManyAttempts)
	assertEvents(t, events, []domain.Event{domain.ResetTokenRejected{TokenID: tokA.ID, Reason: "too_many_attempts", Attempts: 5}})
}

// TestResetPasswordPolicyRefusal: a refused password records nothing and does not consume
// the token; the same token then works with a good password.
func TestResetPasswordPolicyRefusal(t *testing.T) {
	u := given(with(configured(), issued(tokA, t0))...)
	p := givenProvider(allowedProvider()...)
	cases := []struct {
		name    string
		cand    domain.PasswordCandidate
		reasons []string
	}{
		{"too short", domain.PasswordCandidate{Password: "abc1234"}, []string{"must be at least 8 characters"}},
		{"too long", domain.PasswordCandidate{Password: strings.Repeat("x", 129)}, []string{"must be at most 128 characters"}},
		{"equals the login name", domain.PasswordCandidate{Password: "Jane.Doe"}, []string{"must not be the login name"}},
		// The caller's Login is ignored: the domain uses the account's own.
		{"equals the login name whatever the caller says", domain.PasswordCandidate{Password: "jane.doe", Login: "someone"}, []string{"must not be the login name"}},
		{"common", domain.PasswordCandidate{Password: "password1", IsCommon: true}, []string{"is too common"}},
		{"same as current", domain.PasswordCandidate{Password: "my old passphrase", SameAsCurrent: true}, []string{"must differ from the current password"}},
		{"every reason at once", domain.PasswordCandidate{Password: "x", IsCommon: true, SameAsCurrent: true},
			[]string{"must be at least 8 characters", "is too common", "must differ from the current password"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			events, err := u.ResetPassword(pol, p, domain.NewPassword{Token: valA, Candidate: tc.cand, Hash: newHash}, fakeMatch, t0.Add(time.Minute))
			if len(events) != 0 {
				t.Errorf("events recorded for a refused password: %s", dump(events))
			}
			if !errors.Is(err, domain.ErrPasswordRejected) || domain.Code(err) != "password_rejected" {
				t.Fatalf("err = %v", err)
			}
			var pr *domain.PasswordRejectedError
			if !errors.As(err, &pr) || !reflect.DeepEqual(pr.Reasons, tc.reasons) {
				t.Fatalf("reasons = %q, want %q", pr.Reasons, tc.reasons)
			}
		})
	}
	if u.Token.State != domain.TokenActive || u.Token.Attempts != 0 {
		t.Fatalf("token consumed by refusals: %+v", u.Token)
	}
	events, err := u.ResetPassword(pol, p, newPassword(valA, goodPass), fakeMatch, t0.Add(2*time.Minute))
	assertErr(t, err, nil)
	assertEvents(t, events, []domain.Event{domain.PasswordChanged{PasswordHash: newHash, Method: domain.PasswordChangedBySelfReset,
		TokenID: tokA.ID, ChangedAt: t0.Add(2 * time.Minute), NotifyEmail: janeEmail}})
}

// TestCheckResetToken: the cheap pre-check agrees with ResetPassword and records nothing on success.
func TestCheckResetToken(t *testing.T) {
	u := given(with(configured(), issued(tokA, t0))...)
	p := givenProvider(allowedProvider()...)
	events, err := u.CheckResetToken(pol, p, valA, fakeMatch, t0.Add(time.Minute))
	if err != nil || len(events) != 0 {
		t.Fatalf("valid token: %v %s", err, dump(events))
	}
	events, err = u.CheckResetToken(pol, p, valB, fakeMatch, t0.Add(time.Minute))
	assertErr(t, err, domain.ErrInvalidToken)
	assertEvents(t, events, []domain.Event{domain.ResetTokenRejected{TokenID: tokA.ID, Reason: "wrong_token", Attempts: 1}})
}
