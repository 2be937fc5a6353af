package mailer_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"selfreset/mailer"
)

// Enqueue inserts a delivery once (a replay inserts nothing) and, in the same statement,
// wakes the senders on commit for a pending one only.
func TestEnqueueWakesSendersForPendingRowsOnly(t *testing.T) {
	pool := openPool(t)
	ctx := t.Context()
	listen, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Release()
	if _, err := listen.Exec(ctx, `LISTEN mail_deliveries`); err != nil {
		t.Fatal(err)
	}
	woke := func() bool {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := listen.Conn().WaitForNotification(wctx)
		return err == nil
	}
	now := time.Date(2030, 1, 2, 9, 0, 0, 0, time.UTC)
	enqueue := func(d mailer.Delivery) bool {
		t.Helper()
		var inserted bool
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			inserted, err = mailer.Enqueue(ctx, tx, d, now)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return inserted
	}
	pending := mailer.Delivery{EventID: uuid.New(), Stream: "user-ACME-jane", Kind: mailer.MailPasswordChanged,
		Recipient: "jane@example.org", OccurredAt: now}
	if !enqueue(pending) || !woke() {
		t.Fatal("a pending delivery: not inserted, or no wake-up")
	}
	if enqueue(pending) || woke() {
		t.Fatal("the same event again: inserted, or a wake-up")
	}
	skipped := pending
	skipped.EventID, skipped.State, skipped.SkipReason = uuid.New(), mailer.StateSkipped, mailer.SkipCapped
	if !enqueue(skipped) || woke() {
		t.Fatal("a skipped delivery: not inserted, or a wake-up")
	}
}
