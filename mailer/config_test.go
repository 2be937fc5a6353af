package mailer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"selfreset/mailer"
)

func TestConfigFromEnv(t *testing.T) {
	base := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	smtpEnv := func(kv ...string) map[string]string {
		return base(append([]string{mailer.EnvDriver, "smtp", mailer.EnvFrom, "Reset <no-reply@example.org>",
			mailer.EnvPublicURL, "https://reset.example.org", mailer.EnvSMTPAddr, "smtp.example.org:587"}, kv...)...)
	}
	mailgunEnv := func(kv ...string) map[string]string {
		return base(append([]string{mailer.EnvDriver, "mailgun", mailer.EnvFrom, "no-reply@example.org",
			mailer.EnvPublicURL, "https://reset.example.org", mailer.EnvMailgunDomain, "mg.example.org",
			mailer.EnvMailgunAPIKey, "key-123"}, kv...)...)
	}
	cases := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c mailer.Config)
		errs  []string // substrings the error must contain; nil: no error
	}{
		{name: "empty is the console driver with defaults", env: base(), check: func(t *testing.T, c mailer.Config) {
			if c.Driver != "console" || c.From != `"Self Password Reset" <no-reply@localhost>` || c.PublicURL != "http://localhost:8080" ||
				c.RetryBase != 5*time.Second || c.RetryMax != 10*time.Minute || c.MaxAttempts != 10 {
				t.Errorf("%+v", c)
			}
		}},
		{name: "console accepts a public URL and trims its slash", env: base(mailer.EnvPublicURL, "https://reset.example.org/app/"),
			check: func(t *testing.T, c mailer.Config) {
				if c.PublicURL != "https://reset.example.org/app" {
					t.Errorf("public URL %q", c.PublicURL)
				}
			}},
		{name: "driver is case-insensitive", env: base(mailer.EnvDriver, " Console "), check: func(t *testing.T, c mailer.Config) {
			if c.Driver != "console" {
				t.Errorf("driver %q", c.Driver)
			}
		}},
		{name: "unknown driver", env: base(mailer.EnvDriver, "sendmail"), errs: []string{"SELFRESET_MAIL_DRIVER", `"sendmail"`}},
		{name: "smtp defaults to starttls", env: smtpEnv(), check: func(t *testing.T, c mailer.Config) {
			if c.SMTP.TLS != mailer.TLSStartTLS || c.SMTP.Addr != "smtp.example.org:587" || c.From != `"Reset" <no-reply@example.org>` {
				t.Errorf("%+v", c)
			}
		}},
		{name: "smtp with auth and implicit tls", env: smtpEnv(mailer.EnvSMTPTLS, "TLS", mailer.EnvSMTPUsername, "u", mailer.EnvSMTPPassword, " p w "),
			check: func(t *testing.T, c mailer.Config) {
				if c.SMTP.TLS != mailer.TLSImplicit || c.SMTP.Username != "u" || c.SMTP.Password.Reveal() != " p w " {
					t.Errorf("%+v", c.SMTP)
				}
			}},
		{name: "smtp none to a local relay", env: smtpEnv(mailer.EnvSMTPTLS, "none", mailer.EnvSMTPAddr, "localhost:1025"),
			check: func(t *testing.T, c mailer.Config) {
				if c.SMTP.TLS != mailer.TLSNone {
					t.Errorf("%+v", c.SMTP)
				}
			}},
		{name: "smtp password in clear text to a remote host", env: smtpEnv(mailer.EnvSMTPTLS, "none", mailer.EnvSMTPUsername, "u", mailer.EnvSMTPPassword, "hunter2"),
			errs: []string{"SELFRESET_SMTP_TLS", "clear text"}},
		{name: "smtp password in clear text to loopback is allowed", env: smtpEnv(mailer.EnvSMTPTLS, "none", mailer.EnvSMTPAddr, "127.0.0.1:25", mailer.EnvSMTPUsername, "u", mailer.EnvSMTPPassword, "hunter2")},
		{name: "smtp needs an address", env: smtpEnv(mailer.EnvSMTPAddr, ""), errs: []string{"SELFRESET_SMTP_ADDR: required"}},
		{name: "smtp address without port", env: smtpEnv(mailer.EnvSMTPAddr, "smtp.example.org"), errs: []string{"SELFRESET_SMTP_ADDR", "host:port"}},
		{name: "smtp address with a bad port", env: smtpEnv(mailer.EnvSMTPAddr, "smtp.example.org:99999"), errs: []string{"SELFRESET_SMTP_ADDR", "port"}},
		{name: "smtp unknown tls mode", env: smtpEnv(mailer.EnvSMTPTLS, "ssl"), errs: []string{"SELFRESET_SMTP_TLS", `"ssl"`}},
		{name: "smtp password without user", env: smtpEnv(mailer.EnvSMTPPassword, "hunter2"), errs: []string{"SELFRESET_SMTP_USERNAME: required"}},
		{name: "smtp user without password", env: smtpEnv(mailer.EnvSMTPUsername, "u"), errs: []string{"SELFRESET_SMTP_PASSWORD: required"}},
		{name: "smtp needs from", env: smtpEnv(mailer.EnvFrom, ""), errs: []string{"SELFRESET_MAIL_FROM: required"}},
		{name: "smtp needs a public URL", env: smtpEnv(mailer.EnvPublicURL, ""), errs: []string{"SELFRESET_PUBLIC_URL: required"}},
		{name: "bad from", env: base(mailer.EnvFrom, "not an address"), errs: []string{"SELFRESET_MAIL_FROM"}},
		{name: "relative public URL", env: base(mailer.EnvPublicURL, "/reset"), errs: []string{"SELFRESET_PUBLIC_URL", "absolute"}},
		{name: "ftp public URL", env: base(mailer.EnvPublicURL, "ftp://example.org"), errs: []string{"SELFRESET_PUBLIC_URL"}},
		{name: "public URL with a query", env: base(mailer.EnvPublicURL, "https://example.org/?a=b"), errs: []string{"SELFRESET_PUBLIC_URL", "query"}},
		{name: "public URL with credentials", env: base(mailer.EnvPublicURL, "https://u:pw@example.org"), errs: []string{"SELFRESET_PUBLIC_URL", "user name"}},
		{name: "public URL without host", env: base(mailer.EnvPublicURL, "https://"), errs: []string{"SELFRESET_PUBLIC_URL", "host"}},
		{name: "mailgun", env: mailgunEnv(mailer.EnvMailgunAPIBase, "https://api.eu.mailgun.net/v3/"), check: func(t *testing.T, c mailer.Config) {
			if c.Mailgun.Domain != "mg.example.org" || c.Mailgun.APIKey.Reveal() != "key-123" || c.Mailgun.APIBase != "https://api.eu.mailgun.net/v3" {
				t.Errorf("%+v", c.Mailgun)
			}
		}},
		{name: "mailgun needs domain and key", env: mailgunEnv(mailer.EnvMailgunDomain, "", mailer.EnvMailgunAPIKey, ""),
			errs: []string{"SELFRESET_MAILGUN_DOMAIN: required", "SELFRESET_MAILGUN_API_KEY: required"}},
		{name: "mailgun API base must be https", env: mailgunEnv(mailer.EnvMailgunAPIBase, "http://api.mailgun.net/v3"), errs: []string{"SELFRESET_MAILGUN_API_BASE", "clear text"}},
		{name: "mailgun API base must be a URL", env: mailgunEnv(mailer.EnvMailgunAPIBase, "api.mailgun.net"), errs: []string{"SELFRESET_MAILGUN_API_BASE"}},
		{name: "mailgun bad domain", env: mailgunEnv(mailer.EnvMailgunDomain, "mg.example.org/x"), errs: []string{"SELFRESET_MAILGUN_DOMAIN"}},
		{name: "retry settings", env: base(mailer.EnvRetryBase, "1s", mailer.EnvRetryMax, "2m", mailer.EnvMaxAttempts, "4"), check: func(t *testing.T, c mailer.Config) {
			if c.RetryBase != time.Second || c.RetryMax != 2*time.Minute || c.MaxAttempts != 4 {
				t.Errorf("%+v", c)
			}
		}},
		{name: "bad retry settings", env: base(mailer.EnvRetryBase, "soon", mailer.EnvRetryMax, "-1s", mailer.EnvMaxAttempts, "0"),
			errs: []string{"SELFRESET_MAIL_RETRY_BASE", "SELFRESET_MAIL_RETRY_MAX", "SELFRESET_MAIL_MAX_ATTEMPTS"}},
		{name: "lease settings", env: base(mailer.EnvSendTimeout, "5s", mailer.EnvLease, "12s"), check: func(t *testing.T, c mailer.Config) {
			if c.SendTimeout != 5*time.Second || c.Lease != 12*time.Second {
				t.Errorf("send timeout %v lease %v", c.SendTimeout, c.Lease)
			}
		}},
		{name: "lease defaults", env: base(), check: func(t *testing.T, c mailer.Config) {
			if c.SendTimeout != mailer.DefaultSendTimeout || c.Lease != mailer.DefaultLease {
				t.Errorf("send timeout %v lease %v", c.SendTimeout, c.Lease)
			}
		}},
		{name: "lease not longer than the send timeout", env: base(mailer.EnvSendTimeout, "30s", mailer.EnvLease, "30s"), errs: []string{"SELFRESET_MAIL_LEASE", "longer"}},
		{name: "bad lease", env: base(mailer.EnvLease, "soon"), errs: []string{"SELFRESET_MAIL_LEASE", "positive duration"}},
		{name: "retry max below base", env: base(mailer.EnvRetryBase, "1m", mailer.EnvRetryMax, "10s"), errs: []string{"SELFRESET_MAIL_RETRY_MAX", "shorter"}},
		{name: "every problem is reported", env: base(mailer.EnvDriver, "smtp", mailer.EnvSMTPTLS, "bogus"),
			errs: []string{"SELFRESET_MAIL_FROM", "SELFRESET_PUBLIC_URL", "SELFRESET_SMTP_ADDR", "SELFRESET_SMTP_TLS"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := mailer.ConfigFromEnv(func(k string) string { return c.env[k] })
			if c.errs == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if c.check != nil {
					c.check(t, cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error mentioning %q, got %+v", c.errs, cfg)
			}
			for _, want := range c.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestConfigNeverShowsCredentials(t *testing.T) {
	env := map[string]string{
		mailer.EnvDriver: "smtp", mailer.EnvFrom: "no-reply@example.org", mailer.EnvPublicURL: "https://reset.example.org",
		mailer.EnvSMTPAddr: "smtp.example.org:587", mailer.EnvSMTPUsername: "mailer", mailer.EnvSMTPPassword: "hunter2-smtp",
		mailer.EnvMailgunAPIKey: "key-mailgun-secret",
	}
	cfg, err := mailer.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
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

	// A bad value's error does not echo the password either.
	env[mailer.EnvSMTPTLS] = "none"
	_, err = mailer.ConfigFromEnv(func(k string) string { return env[k] })
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}
