package domain_test

import (
	"testing"
	"time"

	"selfreset/domain"
)

// A long-lived account: configured, then 100 requests each with two wrong tokens and a reset.
func longHistory() []domain.Event {
	events := configured()
	for i := range 100 {
		at := t0.Add(time.Duration(i) * time.Hour)
		s := domain.Secret{ID: "tok" + string(rune('a'+i%26)) + time.Duration(i).String(), KeyID: "k1", Hash: "h"}
		events = append(events, issued(s, at),
			domain.ResetTokenRejected{TokenID: s.ID, Reason: "wrong_token", Attempts: 1},
			domain.ResetTokenRejected{TokenID: s.ID, Reason: "wrong_token", Attempts: 2},
			domain.PasswordChanged{PasswordHash: newHash, Method: domain.PasswordChangedBySelfReset, TokenID: s.ID, ChangedAt: at})
	}
	return events
}

// Folding a stream is what every command pays before it decides.
func BenchmarkFoldLongHistory(b *testing.B) {
	events := longHistory()
	for b.Loop() {
		_ = given(events...)
	}
	b.ReportMetric(float64(len(events)), "events/fold")
}

// Deciding a Forgot Password request on a folded account.
func BenchmarkRequestResetToken(b *testing.B) {
	u := given(configured()...)
	p := givenProvider(allowedProvider()...)
	r := domain.ResetRequest{Email: janeEmail, EmailHash: "h", Token: tokA}
	for b.Loop() {
		if _, err := u.RequestResetToken(domain.DefaultPolicy(), p, r, t0); err != nil {
			b.Fatal(err)
		}
	}
}
