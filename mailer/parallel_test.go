package mailer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"selfreset/domain"
	"selfreset/internal/testkit"
	"selfreset/mailer"
)

func withSenders(n int) func(*mailer.SenderConfig) {
	return func(c *mailer.SenderConfig) { c.Senders = n }
}

// emitNotices queues n password-changed notices to distinct recipients, one a second
// apart (the claim takes them in that order), and returns their event ids.
func (f *fixture) emitNotices(t testing.TB, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range n {
		ids[i] = f.emit(t, domain.PasswordChanged{Method: domain.PasswordChangedBySelfReset, ChangedAt: f.clock.Now(),
			NotifyEmail: fmt.Sprintf("user%d@example.org", i)}).ID
		f.clock.Add(time.Second)
	}
	return ids
}

// hold makes the sink keep every message at the end of DATA until release is closed;
// arrived receives one value per message held.
func hold(srv *testkit.SMTPServer, capacity int) (arrived chan struct{}, release chan struct{}) {
	arrived, release = make(chan struct{}, capacity), make(chan struct{})
	srv.OnData = func() { arrived <- struct{}{}; <-release }
	return arrived, release
}

func awaitArrivals(t *testing.T, arrived <-chan struct{}, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d mails in flight at once", i, n)
		}
	}
}

// Four senders have four mails at the relay at once, over four sessions they then reuse.
func TestSendersDeliverInParallel(t *testing.T) {
	f := newFixture(t, withSenders(4))
	f.emitNotices(t, 8)
	arrived, release := hold(f.srv, 8)
	type outcome struct {
		res mailer.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() { res, err := f.sender.SendDue(context.Background()); done <- outcome{res, err} }()
	awaitArrivals(t, arrived, 4) // with one sender at a time this would wait forever
	close(release)
	o := <-done
	if o.err != nil || o.res.Claimed != 8 || o.res.Sent != 8 {
		t.Fatalf("result %+v, err %v", o.res, o.err)
	}
	if opened, _ := f.srv.Connections(); opened != 4 || len(f.srv.Messages()) != 8 {
		t.Fatalf("%d connections for %d mails; want 4 for 8", opened, len(f.srv.Messages()))
	}
}

// cancelAfterSend cancels the sender's context when the first send returns: a shutdown
// while other mails of the batch are in flight or waiting.
type cancelAfterSend struct {
	mailer.Driver
	once   sync.Once
	cancel context.CancelFunc
}

func (c *cancelAfterSend) Send(ctx context.Context, m mailer.Message) (string, error) {
	id, err := c.Driver.Send(ctx, m)
	c.once.Do(c.cancel)
	return id, err
}

// Shutting down with two senders busy: what was in flight is recorded, what was not
// handed to a sender yet is handed back.
func TestShutdownWithSendersInFlightReleasesTheRest(t *testing.T) {
	f := newFixture(t, withSenders(2))
	ids := f.emitNotices(t, 6)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := f.cfg
	cfg.Driver = &cancelAfterSend{Driver: f.cfg.Driver, cancel: cancel}
	s := f.newSender(t, cfg)

	arrived, release := hold(f.srv, 6)
	type outcome struct {
		res mailer.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() { res, err := s.SendDue(ctx); done <- outcome{res, err} }()
	awaitArrivals(t, arrived, 2)
	close(release)
	o := <-done
	if !errors.Is(o.err, context.Canceled) || o.res.Claimed != 6 || o.res.Sent < 1 || o.res.Sent+o.res.Retried != 2 {
		t.Fatalf("result %+v, err %v", o.res, o.err)
	}
	if n := len(f.srv.Messages()); n != 2 {
		t.Fatalf("the relay got %d mails, want the 2 in flight", n)
	}
	// Whichever of the two in flight returned first is sent; the other may have been cut
	// off by the shutdown after the relay took it (sent again later: at least once).
	sent := 0
	for _, id := range ids[:2] {
		switch d := f.delivery(t, id); {
		case d.State == mailer.StateSent:
			sent++
		case d.State != mailer.StatePending || d.Attempts != 1:
			t.Fatalf("in flight: %+v", d)
		}
	}
	if sent != o.res.Sent {
		t.Fatalf("%d recorded sent, result says %d", sent, o.res.Sent)
	}
	for _, id := range ids[2:] {
		if d := f.delivery(t, id); d.State != mailer.StatePending || d.Attempts != 0 || !d.NextAttemptAt.Equal(f.clock.Now()) {
			t.Fatalf("not handed back: %+v", d)
		}
	}
	if res := f.sendDue(t); res.Sent != 4 {
		t.Fatalf("after restart: %+v", res)
	}
}
