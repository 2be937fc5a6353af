package domain_test

import (
	"testing"
	"time"

	"selfreset/domain"
)

// TestResetErrorNotices: every refused request decides exactly one "Password Reset
// Error" email: the exact reason to the verified owner when the typed email is theirs,
// else the fixed text to the typed address (when the caller sealed it and it is valid).
func TestResetErrorNotices(t *testing.T) {
	sealed := []byte("sealed-address")
	request := func(email string, seal []byte) func(domain.User, domain.Provider) ([]domain.Event, error) {
		return func(u domain.User, p domain.Provider) ([]domain.Event, error) {
			return u.RequestResetToken(pol, p, domain.ResetRequest{Email: email, EmailHash: "eh", Token: tokD, SealedEmail: seal}, t0)
		}
	}
	stranger := "mallory@evil.test"
	toTyped := func(reason domain.Reason) domain.Event {
		return domain.ResetRequestRejected{Reason: reason, Provider: acme, Login: jane, EmailMasked: "m***y@e***l.test",
			EmailHash: "eh", NoticeEmail: sealed, NoticeAt: t0}
	}
	toOwner := func(reason domain.Reason) domain.ResetRequestRejected {
		return domain.ResetRequestRejected{Reason: reason, Provider: acme, Login: jane, EmailMasked: janeMask,
			EmailHash: "eh", NotifyEmail: janeEmail, NotifiedAt: t0}
	}
	threeNotices := with(with(configured(), domain.AccountAdminLocked{By: adminBy}),
		toOwner("admin_locked"), toOwner("admin_locked"), toOwner("admin_locked"))
	for i := range 3 {
		e := threeNotices[len(threeNotices)-1-i].(domain.ResetRequestRejected)
		e.NotifiedAt = t0.Add(-time.Duration(i+1) * time.Minute)
		threeNotices[len(threeNotices)-1-i] = e
	}
	runUserCases(t, []userCase{
		{name: "wrong email: the typed address gets the fixed text", given: configured(), when: request(stranger, sealed),
			then: []domain.Event{toTyped("identifiers_mismatch")}, err: domain.ErrIdentifiersMismatch},
		{name: "admin locked, wrong email: typed address, not the owner", given: with(configured(), domain.AccountAdminLocked{By: adminBy}),
			when: request(stranger, sealed), then: []domain.Event{toTyped("admin_locked")}, err: domain.ErrAdminLocked},
		{name: "not enabled, nothing verified: the typed address (even the owner's, unproven) gets the fixed text",
			given: registered(), when: request(stranger, sealed),
			then: []domain.Event{toTyped("user_not_enabled")}, err: domain.ErrUserNotEnabled},
		{name: "the owner's own email: the owner's notice, never the fixed text", given: with(configured(), domain.AccountDeactivated{By: adminBy}),
			when: request(janeEmail, sealed), then: []domain.Event{toOwner("deactivated")}, err: domain.ErrDeactivated},
		{name: "the owner's cap reached: nothing at all, not even the fixed text", given: threeNotices,
			when: request(janeEmail, sealed), then: []domain.Event{func() domain.Event {
				e := toOwner("admin_locked")
				e.NotifyEmail, e.NotifiedAt = "", time.Time{}
				return e
			}()}, err: domain.ErrAdminLocked},
		{name: "setting off (nothing sealed): no notice", given: configured(), when: request(stranger, nil),
			then: []domain.Event{domain.ResetRequestRejected{Reason: "identifiers_mismatch", Provider: acme, Login: jane,
				EmailMasked: "m***y@e***l.test", EmailHash: "eh"}}, err: domain.ErrIdentifiersMismatch},
		{name: "an invalid typed address is not mailed", given: configured(), when: request("not-an-address", sealed),
			then: []domain.Event{domain.ResetRequestRejected{Reason: "identifiers_mismatch", Provider: acme, Login: jane,
				EmailMasked: domain.MaskEmail("not-an-address"), EmailHash: "eh"}}, err: domain.ErrIdentifiersMismatch},
	})
}

func TestResetErrorNoticeFolding(t *testing.T) {
	// Typed-address notices do not count against the owner's cap: strangers typing the
	// owner's login with other addresses must not silence the owner's own notices.
	u := given(configured()...)
	for range 5 {
		u.Apply(domain.ResetRequestRejected{Reason: "identifiers_mismatch", NoticeEmail: []byte("x"), NoticeAt: t0})
	}
	if len(u.Notified) != 0 {
		t.Errorf("typed-address notices counted as owner notices: %d", len(u.Notified))
	}
}

func TestUnmatchedResetRequest(t *testing.T) {
	sealed := []byte("sealed")
	cases := []struct {
		name, email string
		sealed      []byte
		notice      bool
	}{
		{"valid address, sealed: noticed", " Someone@Example.ORG ", sealed, true},
		{"setting off", "someone@example.org", nil, false},
		{"invalid address", "someone", sealed, false},
		{"empty", "", sealed, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := domain.UnmatchedResetRequest("ACME", "nobody", tc.email, "eh", tc.sealed, t0)
			if e.Reason != domain.ReasonUnknownAccount || e.Provider != "ACME" || e.Login != "nobody" || e.EmailHash != "eh" {
				t.Errorf("event %+v", e)
			}
			if got := len(e.NoticeEmail) > 0 && e.NoticeAt.Equal(t0); got != tc.notice {
				t.Errorf("noticed %v, want %v (%+v)", got, tc.notice, e)
			}
			if e.NotifyEmail != "" {
				t.Errorf("an unmatched request named an owner: %+v", e)
			}
			if tc.email != "" && e.EmailMasked == tc.email {
				t.Errorf("email stored in clear")
			}
		})
	}
}
