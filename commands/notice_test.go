package commands_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/internal/teststore"
)

// lastRejected is the newest ResetRequestRejected of a stream.
func lastRejected(t *testing.T, f *fixture, stream string) (domain.ResetRequestRejected, eventstore.RecordedEvent) {
	t.Helper()
	recs, err := f.store.ReadStream(context.Background(), stream, 0)
	must(t, err)
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Type == "ResetRequestRejected" {
			var e domain.ResetRequestRejected
			must(t, json.Unmarshal(recs[i].Data, &e))
			return e, recs[i]
		}
	}
	t.Fatalf("no ResetRequestRejected on %s", stream)
	return domain.ResetRequestRejected{}, eventstore.RecordedEvent{}
}

// TestRefusalsDecideOneErrorEmail: the typed address of an unmatched request or a wrong
// email is recorded sealed (never in clear) for the fixed-text notice; a Resend's owner
// notice carries the recipient's keyed hash for the mailer's cap; without a sealed
// address (the setting off) no typed-address notice is decided.
func TestRefusalsDecideOneErrorEmail(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.configuredUser(t)
	stranger := "stranger@example.net"
	sealed, err := f.keys.Encrypt(domain.NoticeEmailLabel, []byte(stranger))
	must(t, err)

	// An unknown account: the unmatched shard records the sealed address.
	nope := teststore.ProviderCode(t, "NOPE")
	if _, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: nope, Login: "jane", Email: stranger, NoticeEmail: sealed}); !errors.Is(err, domain.ErrUnknownAccount) {
		t.Fatal(err)
	}
	e, rec := lastRejected(t, f, domain.UnmatchedShard(f.keys.HashEmail(nope+"/jane")))
	if !bytes.Equal(e.NoticeEmail, sealed) || e.NoticeAt.IsZero() || e.NotifyEmail != "" || e.EmailHash != f.keys.HashEmail(stranger) {
		t.Errorf("unmatched refusal %+v", e)
	}
	if bytes.Contains(rec.Data, []byte(stranger)) {
		t.Errorf("typed email in clear: %s", rec.Data)
	}
	if got, err := f.keys.Decrypt(domain.NoticeEmailLabel, e.NoticeEmail); err != nil || string(got) != stranger {
		t.Errorf("the sealed address opens to %q (%v)", got, err)
	}

	// A wrong email for a real account: the same, on the account's stream.
	if _, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: stranger, NoticeEmail: sealed}); !errors.Is(err, domain.ErrIdentifiersMismatch) {
		t.Fatal(err)
	}
	if e, _ := lastRejected(t, f, domain.UserStream(f.code, "jane")); !bytes.Equal(e.NoticeEmail, sealed) || e.NotifyEmail != "" {
		t.Errorf("wrong-email refusal %+v", e)
	}
	// The setting off: nothing sealed, no notice.
	if _, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: stranger}); !errors.Is(err, domain.ErrIdentifiersMismatch) {
		t.Fatal(err)
	}
	if e, _ := lastRejected(t, f, domain.UserStream(f.code, "jane")); e.NoticeEmail != nil || !e.NoticeAt.IsZero() {
		t.Errorf("noticed with the setting off: %+v", e)
	}

	// Resend with no token: the owner is told, keyed by the recipient's hash.
	if _, err := f.h.ResendResetToken(ctx, commands.ResendResetToken{Provider: f.code, Login: "jane"}); !errors.Is(err, domain.ErrNoActiveToken) {
		t.Fatal(err)
	}
	if e, _ := lastRejected(t, f, domain.UserStream(f.code, "jane")); e.NotifyEmail != recovery || e.EmailHash != f.keys.HashEmail(recovery) || !e.Resend {
		t.Errorf("resend refusal %+v", e)
	}
}
