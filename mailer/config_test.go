package mailer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"selfreset/mailer"
)

func TestConfigNeverShowsCredentials(t *testing.T) {
	cfg := mailer.Config{Driver: mailer.DriverSMTP, From: "no-reply@example.org", PublicURL: "https://reset.example.org",
		SMTP:    mailer.SMTPConfig{Addr: "smtp.example.org:587", Username: "mailer", Password: "hunter2-smtp", TLS: mailer.TLSStartTLS},
		Mailgun: mailer.MailgunConfig{APIKey: "key-mailgun-secret"}}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "mail", cfg)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "mail", cfg, "smtp", cfg.SMTP, "mailgun", cfg.Mailgun)
	//lint:ignore SA1026 whatever encoding/json makes of the config (it fails on the TLS config's func) must hold no secret
	j, _ := json.Marshal(cfg)
	out := fmt.Sprintf("%v %+v %#v %s %q %x", cfg, cfg, cfg, cfg.SMTP.Password, cfg.SMTP.Password, cfg.SMTP.Password) + string(j) + logged.String()
	for _, secret := range []string{"hunter2-smtp", "key-mailgun-secret", fmt.Sprintf("%x", "hunter2-smtp")} {
		if strings.Contains(out, secret) {
			t.Fatalf("credential %q leaked:\n%s", secret, out)
		}
	}
	if !strings.Contains(logged.String(), "smtp_password_set=true") {
		t.Errorf("log should say a password is set:\n%s", logged.String())
	}
}
