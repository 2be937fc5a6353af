package mailer_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailgun/mailgun-go/v4"
	"github.com/mailgun/mailgun-go/v4/events"

	"selfreset/internal/testkit"
	"selfreset/mailer"
)

func testMessage(to string) mailer.Message {
	return mailer.Message{
		ID:      "3f1e0c1a-0000-4000-8000-000000000001",
		From:    "Self Password Reset <no-reply@reset.example.org>",
		To:      to,
		Subject: "Your password token",
		Text:    "Hello,\n\nYour Password token is:\n\nABCDE12345\n\nBye = see you.\n",
		HTML:    "<p>Your Password token is: <b>ABCDE12345</b></p>",
		Date:    time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC),
		Tag:     mailer.MailResetToken,
	}
}

func TestSMTPDriverBuildsMultipartMessage(t *testing.T) {
	srv := new(testkit.SMTPServer).Start(t)
	d, err := mailer.NewSMTPDriver(mailer.SMTPConfig{Addr: srv.Addr, TLS: mailer.TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	id, err := d.Send(context.Background(), testMessage("jane.doe@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	inbox := srv.Messages()
	if len(inbox) != 1 {
		t.Fatalf("inbox has %d messages", len(inbox))
	}
	got := inbox[0]
	if got.From != "no-reply@reset.example.org" || len(got.To) != 1 || got.To[0] != "jane.doe@example.org" {
		t.Fatalf("envelope: from %q to %q", got.From, got.To)
	}
	m := parseMail(t, got)
	want := map[string]string{
		"From":         `"Self Password Reset" <no-reply@reset.example.org>`,
		"To":           "<jane.doe@example.org>",
		"Subject":      "Your password token",
		"Date":         "Fri, 27 Nov 2026 09:00:00 +0000",
		"Message-Id":   "<3f1e0c1a-0000-4000-8000-000000000001@reset.example.org>",
		"Mime-Version": "1.0",
	}
	for k, v := range want {
		if g := m.Header.Get(k); g != v {
			t.Errorf("header %s = %q, want %q", k, g, v)
		}
	}
	if id != want["Message-Id"] {
		t.Errorf("provider id %q, want the Message-ID", id)
	}
	if tok := testkit.AloneOnLine(t, m.Text, testkit.TokenLine); tok != "ABCDE12345" {
		t.Errorf("token %q", tok)
	}
	if !strings.Contains(m.Text, "Bye = see you.") || !strings.Contains(m.HTML, "<b>ABCDE12345</b>") {
		t.Errorf("bodies did not survive quoted-printable: %q %q", m.Text, m.HTML)
	}
}

func TestSMTPDriverTLSModesAndAuth(t *testing.T) {
	serverTLS, clientTLS := selfSigned(t)
	users := map[string]string{"mailer": "s3cret pass"}
	cases := []struct {
		name string
		srv  *testkit.SMTPServer
		mode mailer.TLSMode
	}{
		{"starttls", &testkit.SMTPServer{TLS: serverTLS, Users: users}, mailer.TLSStartTLS},
		{"implicit tls", &testkit.SMTPServer{TLS: serverTLS, ImplicitTLS: true, Users: users}, mailer.TLSImplicit},
		{"none on loopback", &testkit.SMTPServer{Users: users}, mailer.TLSNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := c.srv.Start(t)
			d, err := mailer.NewSMTPDriver(mailer.SMTPConfig{Addr: srv.Addr, TLS: c.mode, TLSConfig: clientTLS,
				Username: "mailer", Password: "s3cret pass"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Send(context.Background(), testMessage("jane.doe@example.org")); err != nil {
				t.Fatal(err)
			}
			inbox := srv.Messages()
			if len(inbox) != 1 || inbox[0].User != "mailer" || inbox[0].TLS != (c.mode != mailer.TLSNone) {
				t.Fatalf("inbox %+v", inbox)
			}
		})
	}

	t.Run("wrong password is transient", func(t *testing.T) {
		srv := (&testkit.SMTPServer{TLS: serverTLS, Users: users}).Start(t)
		d, _ := mailer.NewSMTPDriver(mailer.SMTPConfig{Addr: srv.Addr, TLS: mailer.TLSStartTLS, TLSConfig: clientTLS,
			Username: "mailer", Password: "wrong"})
		_, err := d.Send(context.Background(), testMessage("jane.doe@example.org"))
		if err == nil || mailer.IsPermanent(err) || strings.Contains(err.Error(), "wrong") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("starttls required but not offered", func(t *testing.T) {
		srv := new(testkit.SMTPServer).Start(t)
		d, _ := mailer.NewSMTPDriver(mailer.SMTPConfig{Addr: srv.Addr, TLS: mailer.TLSStartTLS, TLSConfig: clientTLS})
		if _, err := d.Send(context.Background(), testMessage("jane.doe@example.org")); err == nil || mailer.IsPermanent(err) {
			t.Fatalf("err = %v", err)
		}
		if len(srv.Messages()) != 0 {
			t.Fatal("sent in clear text")
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		srv := (&testkit.SMTPServer{TLS: serverTLS}).Start(t)
		d, _ := mailer.NewSMTPDriver(mailer.SMTPConfig{Addr: srv.Addr, TLS: mailer.TLSStartTLS, TLSConfig: &tls.Config{}})
		if _, err := d.Send(context.Background(), testMessage("jane.doe@example.org")); err == nil {
			t.Fatal("sent to a server with an untrusted certificate")
		}
	})
}

func TestSMTPDriverClassifiesErrors(t *testing.T) {
	srv := new(testkit.SMTPServer).Start(t)
	d, err := mailer.NewSMTPDriver(mailer.SMTPConfig{Addr: srv.Addr, TLS: mailer.TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	srv.Refuse("nobody@example.org", errMailbox)
	_, err = d.Send(ctx, testMessage("nobody@example.org"))
	var pe *mailer.PermanentError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "550") {
		t.Fatalf("550 on RCPT: %v", err)
	}

	srv.TempFail(1)
	if _, err = d.Send(ctx, testMessage("jane.doe@example.org")); err == nil || mailer.IsPermanent(err) || !strings.Contains(err.Error(), "451") {
		t.Fatalf("451 on RCPT: %v", err)
	}

	srv.FailData(errRejection)
	if _, err = d.Send(ctx, testMessage("jane.doe@example.org")); !mailer.IsPermanent(err) {
		t.Fatalf("554 after DATA: %v", err)
	}
	srv.FailData(nil)

	// Nothing listening: transient.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	closed, _ := mailer.NewSMTPDriver(mailer.SMTPConfig{Addr: addr, TLS: mailer.TLSNone})
	if _, err := closed.Send(ctx, testMessage("jane.doe@example.org")); err == nil || mailer.IsPermanent(err) {
		t.Fatalf("connection refused: %v", err)
	}

	// A cancelled context stops the send.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.Send(cctx, testMessage("jane.doe@example.org")); err == nil || mailer.IsPermanent(err) {
		t.Fatalf("cancelled: %v", err)
	}

	if _, err := d.Send(ctx, testMessage("jane.doe@example.org")); err != nil {
		t.Fatalf("after all that, a good send: %v", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("inbox has %d messages, want 1", n)
	}
}

func TestMailgunDriver(t *testing.T) {
	ms := mailgun.NewMockServer()
	defer ms.Stop()
	d, err := mailer.NewMailgunDriver(mailer.MailgunConfig{Domain: "mg.example.org", APIKey: "key-test", APIBase: ms.URL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, err := d.Send(ctx, testMessage("jane.doe@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if id == "" {
		t.Fatal("no provider id")
	}
	var accepted []*events.Accepted
	for _, e := range ms.Events() {
		if a, ok := e.(*events.Accepted); ok && "<"+a.ID+">" == id {
			accepted = append(accepted, a)
		}
	}
	if len(accepted) != 1 || accepted[0].Recipient != "jane.doe@example.org" ||
		accepted[0].Message.Headers.Subject != "Your password token" {
		t.Fatalf("mock saw %+v (id %q)", accepted, id)
	}

	// The mock answers 400 to an address it cannot parse: permanent.
	_, err = d.Send(ctx, testMessage("not an address"))
	if !mailer.IsPermanent(err) || !strings.Contains(err.Error(), "400") {
		t.Fatalf("bad address: %v", err)
	}
	if strings.Contains(err.Error(), "key-test") {
		t.Fatal("error shows the API key")
	}

	// A server that is gone: transient.
	gone, _ := mailer.NewMailgunDriver(mailer.MailgunConfig{Domain: "mg.example.org", APIKey: "key-test", APIBase: "http://127.0.0.1:1/v3"}, nil)
	if _, err := gone.Send(ctx, testMessage("jane.doe@example.org")); err == nil || mailer.IsPermanent(err) {
		t.Fatalf("unreachable: %v", err)
	}
}

func TestConsoleDriverPrintsTextBody(t *testing.T) {
	var out bytes.Buffer
	d, err := mailer.NewDriver(mailer.Config{Driver: mailer.DriverConsole}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Send(context.Background(), testMessage("jane.doe@example.org")); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"To: jane.doe@example.org", "Subject: Your password token", "\nABCDE12345\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("console output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "<p>") {
		t.Error("console printed the HTML body")
	}
}

func TestNewDriverPicksTheConfiguredDriver(t *testing.T) {
	base := mailer.Config{From: "no-reply@example.org", PublicURL: "https://reset.example.org",
		SMTP:    mailer.SMTPConfig{Addr: "smtp.example.org:587"},
		Mailgun: mailer.MailgunConfig{Domain: "mg.example.org", APIKey: "k"}}
	for _, driver := range []string{"console", "smtp", "mailgun"} {
		cfg := base
		cfg.Driver = driver
		d, err := mailer.NewDriver(cfg, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if got := driverName(d); got != driver {
			t.Errorf("%s: got %s", driver, got)
		}
	}
}

func driverName(v mailer.Driver) string {
	switch v.(type) {
	case *mailer.ConsoleDriver:
		return "console"
	case *mailer.SMTPDriver:
		return "smtp"
	case *mailer.MailgunDriver:
		return "mailgun"
	}
	return "?"
}
