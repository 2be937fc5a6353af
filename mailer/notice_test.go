package mailer_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"selfreset/domain"
	"selfreset/mailer"
	"selfreset/projections"
)

// TestErrorMailCapPerRecipient: "Password Reset Error" mails to one address are capped at
// three per 15 minutes across accounts, unmatched requests and both kinds (the owner's
// exact reason and the typed address's fixed text), counted by the keyed recipient hash.
// The typed address is stored sealed and opened only to send.
func TestErrorMailCapPerRecipient(t *testing.T) {
	f := newFixture(t)
	hash := f.keys.HashEmail(recipient)
	sealed, err := f.keys.Encrypt(domain.NoticeEmailLabel, []byte(recipient))
	if err != nil {
		t.Fatal(err)
	}
	notice := func(reason domain.Reason) domain.ResetRequestRejected {
		return domain.ResetRequestRejected{Reason: reason, EmailHash: hash, NoticeEmail: sealed, NoticeAt: f.clock.Now()}
	}
	owner := domain.ResetRequestRejected{Reason: domain.ReasonDeactivated, EmailHash: hash, NotifyEmail: recipient, NotifiedAt: f.clock.Now()}
	// Three different streams: an account, another account, an unmatched shard.
	recs := []struct {
		stream string
		ev     domain.ResetRequestRejected
	}{
		{domain.UserStream("ACME", "jane"), owner},
		{domain.UserStream("ACME", "bob"), notice(domain.ReasonIdentifiersMismatch)},
		{domain.UnmatchedShard("x"), notice(domain.ReasonUnknownAccount)},
		{domain.UserStream("OTHER", "carl"), notice(domain.ReasonIdentifiersMismatch)}, // the fourth: capped
	}
	for _, r := range recs {
		f.apply(t, f.record(r.stream, r.ev), r.ev)
		f.clock.Add(time.Minute)
	}
	res := f.sendDue(t)
	if res.Sent != 3 {
		t.Fatalf("sent %+v, want 3", res)
	}
	msgs := f.srv.Messages()
	for _, m := range msgs {
		if len(m.To) != 1 || m.To[0] != recipient {
			t.Errorf("mail to %v", m.To)
		}
	}
	all, err := mailer.ListDeliveries(t.Context(), f.pool, "")
	if err != nil {
		t.Fatal(err)
	}
	var capped []mailer.Delivery
	for _, d := range all {
		if d.Kind == mailer.MailResetNotice && (d.Recipient != "" || d.RecipientHash != hash) {
			t.Errorf("notice row %+v: address in clear or hash missing", d)
		}
		if d.SkipReason == mailer.SkipCapped {
			capped = append(capped, d)
		}
	}
	if len(capped) != 1 || capped[0].Stream != domain.UserStream("OTHER", "carl") || capped[0].State != mailer.StateSkipped {
		t.Fatalf("capped %+v", capped)
	}

	// 15 minutes after the first, a slot frees up again.
	f.clock.Add(12 * time.Minute)
	ev := notice(domain.ReasonUnknownAccount)
	f.apply(t, f.record(domain.UnmatchedShard("y"), ev), ev)
	if res := f.sendDue(t); res.Sent != 1 {
		t.Fatalf("after the window: %+v", res)
	}
	// Another recipient is not held back by this one's cap.
	other := "someone@else.example"
	sealedOther, err := f.keys.Encrypt(domain.NoticeEmailLabel, []byte(other))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ev := domain.ResetRequestRejected{Reason: "unknown_account", EmailHash: f.keys.HashEmail(other), NoticeEmail: sealedOther, NoticeAt: f.clock.Now()}
		f.apply(t, f.record(domain.UnmatchedShard("z"), ev), ev)
	}
	if res := f.sendDue(t); res.Sent != 2 {
		t.Fatalf("another recipient: %+v", res)
	}
	if last := f.srv.Messages(); last[len(last)-1].To[0] != other {
		t.Errorf("sent to %v", last[len(last)-1].To)
	}
}

// TestNoticeWithoutTheKeyFails: a sealed address this server cannot open is a permanent
// failure, never a send to something else.
func TestNoticeWithoutTheKeyFails(t *testing.T) {
	f := newFixture(t)
	ev := domain.ResetRequestRejected{Reason: "unknown_account", EmailHash: "k1:abc", NoticeEmail: []byte("\x02k9garbage-garbage-garbage"), NoticeAt: f.clock.Now()}
	f.apply(t, f.record(domain.UnmatchedShard("x"), ev), ev)
	if res := f.sendDue(t); res.Failed != 1 || res.Sent != 0 {
		t.Fatalf("%+v", res)
	}
	if n := len(f.srv.Messages()); n != 0 {
		t.Fatalf("%d messages sent", n)
	}
}

func TestDeliveryForNotices(t *testing.T) {
	rec := (&fixture{rev: map[string]uint64{}, clock: newClock()}).record(stream, domain.ResetRequestRejected{})
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		ev   domain.ResetRequestRejected
		kind string
		ok   bool
	}{
		{"owner", domain.ResetRequestRejected{Reason: "throttled", NotifyEmail: "jane@example.org", NotifiedAt: at, RetryAt: at.Add(time.Hour), EmailHash: "h"}, mailer.MailResetError, true},
		{"typed", domain.ResetRequestRejected{Reason: "identifiers_mismatch", NoticeEmail: []byte("s"), NoticeAt: at, EmailHash: "h"}, mailer.MailResetNotice, true},
		{"typed without hash: cannot be capped, not sent", domain.ResetRequestRejected{NoticeEmail: []byte("s"), NoticeAt: at}, "", false},
		{"nothing asked", domain.ResetRequestRejected{Reason: "identifiers_mismatch", EmailHash: "h"}, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := mailer.DeliveryFor(rec, tc.ev)
			if ok != tc.ok || d.Kind != tc.kind {
				t.Fatalf("%+v %v", d, ok)
			}
			if ok && (!d.OccurredAt.Equal(at) || d.RecipientHash != "h") {
				t.Errorf("delivery %+v", d)
			}
			if tc.kind == mailer.MailResetNotice && (d.Recipient != "" || d.Reason != "" || string(d.RecipientSealed) != "s") {
				t.Errorf("notice delivery %+v", d)
			}
			if tc.kind == mailer.MailResetError && !d.RetryAt.Equal(at.Add(time.Hour)) {
				t.Errorf("retry at %v", d.RetryAt)
			}
		})
	}
}

func TestRenderNotice(t *testing.T) {
	r, err := mailer.NewRenderer("https://reset.example.org", mailer.Paths{})
	if err != nil {
		t.Fatal(err)
	}
	d := mailer.Delivery{Kind: mailer.MailResetNotice, Stream: domain.UserStream("ACME", "jane"), RecipientSealed: []byte("s"),
		OccurredAt: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	subject, text, html, err := r.Render(d, "")
	if err != nil {
		t.Fatal(err)
	}
	if subject != "Password Reset Error" {
		t.Errorf("subject %q", subject)
	}
	for _, reason := range domain.ResetErrorReasons {
		if !strings.Contains(text, reason) || !strings.Contains(html, reason) {
			t.Errorf("lacks %q", reason)
		}
	}
	if strings.Contains(text, "jane") || strings.Contains(text, "ACME") || strings.Contains(html, "jane") {
		t.Errorf("the notice names the account:\n%s", text)
	}
}

// The runner applies a batch of events in one transaction, its writes pipelined: the cap
// counts the error mails queued earlier in that same transaction too.
func TestErrorMailCapCountsItsOwnBatch(t *testing.T) {
	f := newFixture(t)
	hash := f.keys.HashEmail(recipient)
	ctx := t.Context()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for i := range mailer.MaxErrorMails + 1 {
		ev := domain.ResetRequestRejected{Reason: domain.ReasonDeactivated, EmailHash: hash, NotifyEmail: recipient, NotifiedAt: f.clock.Now()}
		rec := f.record(domain.UserStream("ACME", fmt.Sprintf("user%d", i)), ev)
		if err := f.proj.Apply(ctx, tx, projections.Envelope{Record: rec, Event: ev}); err != nil {
			t.Fatal(err)
		}
		f.clock.Add(time.Second)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	all, err := mailer.ListDeliveries(ctx, f.pool, "")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, d := range all {
		states[d.State+"/"+d.SkipReason]++
	}
	if states[mailer.StatePending+"/"] != mailer.MaxErrorMails || states[mailer.StateSkipped+"/"+mailer.SkipCapped] != 1 || len(all) != mailer.MaxErrorMails+1 {
		t.Errorf("deliveries by state %v, want %d pending and 1 capped", states, mailer.MaxErrorMails)
	}
}
