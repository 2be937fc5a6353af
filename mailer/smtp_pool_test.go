package mailer_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"selfreset/internal/testkit"
	"selfreset/mailer"
)

func newPoolDriver(t *testing.T, cfg mailer.SMTPConfig) *mailer.SMTPDriver {
	t.Helper()
	cfg.TLS = mailer.TLSNone
	d, err := mailer.NewSMTPDriver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func sendTo(t *testing.T, d mailer.Driver, to string) {
	t.Helper()
	if _, err := d.Send(context.Background(), testMessage(to)); err != nil {
		t.Fatalf("send to %s: %v", to, err)
	}
}

func TestSMTPDriverReusesOneConnection(t *testing.T) {
	cases := []struct {
		name        string
		maxMessages int
		wantConns   int
	}{
		{"reuse", 0, 1},
		{"two messages per connection", 2, 3},
		{"a connection per message", 1, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := new(testkit.SMTPServer).Start(t)
			d := newPoolDriver(t, mailer.SMTPConfig{Addr: srv.Addr, MaxMessages: tc.maxMessages})
			for i := range 5 {
				sendTo(t, d, fmt.Sprintf("user%d@example.org", i))
			}
			if opened, _ := srv.Connections(); opened != tc.wantConns || len(srv.Messages()) != 5 {
				t.Fatalf("%d connections for %d messages, want %d for 5", opened, len(srv.Messages()), tc.wantConns)
			}
			for i, m := range srv.Messages() {
				if want := fmt.Sprintf("user%d@example.org", i); len(m.To) != 1 || m.To[0] != want {
					t.Errorf("message %d to %v, want only %s (RSET between messages)", i, m.To, want)
				}
			}
		})
	}
}

// A refused recipient or message leaves the session fit for the next message.
func TestSMTPDriverRefusalDoesNotPoisonTheConnection(t *testing.T) {
	srv := new(testkit.SMTPServer).Start(t)
	d := newPoolDriver(t, mailer.SMTPConfig{Addr: srv.Addr})
	srv.Refuse("nobody@example.org", errMailbox)
	if _, err := d.Send(context.Background(), testMessage("nobody@example.org")); !mailer.IsPermanent(err) {
		t.Fatalf("550 on RCPT: %v", err)
	}
	sendTo(t, d, "jane.doe@example.org")
	srv.TempFail(1)
	if _, err := d.Send(context.Background(), testMessage("john@example.org")); err == nil || mailer.IsPermanent(err) {
		t.Fatalf("451 on RCPT: %v", err)
	}
	sendTo(t, d, "john@example.org")
	inbox := srv.Messages()
	if opened, _ := srv.Connections(); opened != 1 || len(inbox) != 2 {
		t.Fatalf("%d connections, %d messages; want 1 and 2", opened, len(inbox))
	}
	if inbox[0].To[0] != "jane.doe@example.org" || len(inbox[0].To) != 1 || inbox[1].To[0] != "john@example.org" || len(inbox[1].To) != 1 {
		t.Fatalf("envelopes %v %v: the refused recipient leaked into the next message", inbox[0].To, inbox[1].To)
	}
}

// A relay that hung up on an idle session costs a redial, not the message.
func TestSMTPDriverRedialsABrokenSessionOnce(t *testing.T) {
	srv := new(testkit.SMTPServer).Start(t)
	d := newPoolDriver(t, mailer.SMTPConfig{Addr: srv.Addr})
	sendTo(t, d, "jane.doe@example.org")
	srv.DropConnections()
	testkit.WaitFor(t, "the sink has dropped the session", 10*time.Second, func() bool { _, open := srv.Connections(); return open == 0 })
	sendTo(t, d, "john@example.org")
	if opened, _ := srv.Connections(); opened != 2 || len(srv.Messages()) != 2 {
		t.Fatalf("%d connections, %d messages; want 2 and 2", opened, len(srv.Messages()))
	}
}

// Sessions past their idle time or age are not used again; idle ones are closed by a
// timer and by Close.
func TestSMTPDriverRetiresSessions(t *testing.T) {
	t.Run("idle and age, by the clock", func(t *testing.T) {
		srv := new(testkit.SMTPServer).Start(t)
		clock := newClock()
		d := newPoolDriver(t, mailer.SMTPConfig{Addr: srv.Addr, Clock: clock, IdleTimeout: time.Hour, MaxAge: 90 * time.Minute})
		sendTo(t, d, "a@example.org")
		clock.Add(59 * time.Minute)
		sendTo(t, d, "b@example.org") // idle 59 min, 59 min old: the first session
		clock.Add(59 * time.Minute)
		sendTo(t, d, "c@example.org") // 118 min old: a second session
		clock.Add(61 * time.Minute)
		sendTo(t, d, "d@example.org") // idle 61 min: a third
		sendTo(t, d, "e@example.org")
		if opened, _ := srv.Connections(); opened != 3 {
			t.Fatalf("%d connections, want 3", opened)
		}
	})
	t.Run("idle timer", func(t *testing.T) {
		srv := new(testkit.SMTPServer).Start(t)
		d := newPoolDriver(t, mailer.SMTPConfig{Addr: srv.Addr, IdleTimeout: 20 * time.Millisecond})
		sendTo(t, d, "a@example.org")
		testkit.WaitFor(t, "the idle session is closed", 10*time.Second, func() bool { _, open := srv.Connections(); return open == 0 })
		sendTo(t, d, "b@example.org")
		if opened, _ := srv.Connections(); opened != 2 {
			t.Fatalf("%d connections, want 2", opened)
		}
	})
	t.Run("close", func(t *testing.T) {
		srv := new(testkit.SMTPServer).Start(t)
		d := newPoolDriver(t, mailer.SMTPConfig{Addr: srv.Addr, Conns: 3})
		sendParallel(t, d, srv, 3)
		if _, open := srv.Connections(); open != 3 {
			t.Fatalf("%d open before Close, want 3", open)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, "Close has ended every session", 10*time.Second, func() bool { _, open := srv.Connections(); return open == 0 })
	})
}

// sendParallel sends n messages at once and returns once all are taken; the sink holds
// each at the end of DATA until all n have arrived, so n sessions are open together.
func sendParallel(t *testing.T, d mailer.Driver, srv *testkit.SMTPServer, n int) {
	t.Helper()
	arrived, gate := make(chan struct{}, n), make(chan struct{})
	srv.OnData = func() { arrived <- struct{}{}; <-gate }
	defer func() { srv.OnData = nil }()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.Send(context.Background(), testMessage(fmt.Sprintf("p%d@example.org", i))); err != nil {
				t.Error(err)
			}
		}()
	}
	for i := range n {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d messages in flight at once", i, n)
		}
	}
	close(gate)
	wg.Wait()
}

// Parallel sends each get a session; afterwards the driver keeps at most Conns of them
// and reuses them.
func TestSMTPDriverKeepsUpToConnsSessions(t *testing.T) {
	srv := new(testkit.SMTPServer).Start(t)
	d := newPoolDriver(t, mailer.SMTPConfig{Addr: srv.Addr, Conns: 3})
	sendParallel(t, d, srv, 5)
	testkit.WaitFor(t, "the sessions beyond Conns are closed", 10*time.Second, func() bool { _, open := srv.Connections(); return open == 3 })
	sendParallel(t, d, srv, 3)
	if opened, open := srv.Connections(); opened != 5 || open != 3 {
		t.Fatalf("opened %d, open %d; want 5 and 3 (the second round reuses the kept sessions)", opened, open)
	}
}
