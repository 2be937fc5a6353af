package config

import (
	"strings"
	"testing"
	"time"

	"selfreset/mailer"
)

func TestMailFromEnv(t *testing.T) {
	base := []string{EnvDatabaseURL, testDB, EnvSecret, testSecret}
	with := func(kv ...string) func(string) string { return env(append(append([]string{}, base...), kv...)...) }
	smtpEnv := func(kv ...string) func(string) string {
		return with(append([]string{EnvMailDriver, "smtp", EnvMailFrom, "Reset <no-reply@example.org>",
			EnvPublicURL, "https://reset.example.org", EnvSMTPAddr, "smtp.example.org:587"}, kv...)...)
	}
	mailgunEnv := func(kv ...string) func(string) string {
		return with(append([]string{EnvMailDriver, "mailgun", EnvMailFrom, "no-reply@example.org",
			EnvPublicURL, "https://reset.example.org", EnvMailgunDomain, "mg.example.org",
			EnvMailgunAPIKey, "key-123"}, kv...)...)
	}
	runEnvCases(t, []envCase{
		{name: "empty is the console driver with defaults", getenv: with(), check: func(t *testing.T, c Config) {
			m := c.Mail
			if m.Driver != "console" || m.From != `"Self Password Reset" <no-reply@localhost>` ||
				m.RetryBase != 5*time.Second || m.RetryMax != 10*time.Minute || m.MaxAttempts != 10 ||
				m.SendTimeout != mailer.DefaultSendTimeout || m.Lease != mailer.DefaultLease || m.Senders != mailer.DefaultSenders {
				t.Errorf("%+v", m)
			}
		}},
		{name: "console links point at the listen address", getenv: with(EnvAddr, "0.0.0.0:9000"), check: func(t *testing.T, c Config) {
			if c.Mail.PublicURL != "http://0.0.0.0:9000" || c.PublicURLSet {
				t.Errorf("public URL %q set %v", c.Mail.PublicURL, c.PublicURLSet)
			}
		}},
		{name: "console accepts a public URL and trims its slash", getenv: with(EnvPublicURL, "https://reset.example.org/app/"),
			check: func(t *testing.T, c Config) {
				if c.Mail.PublicURL != "https://reset.example.org/app" || !c.PublicURLSet {
					t.Errorf("public URL %q set %v", c.Mail.PublicURL, c.PublicURLSet)
				}
			}},
		{name: "driver is case-insensitive", getenv: with(EnvMailDriver, " Console "), check: func(t *testing.T, c Config) {
			if c.Mail.Driver != "console" {
				t.Errorf("driver %q", c.Mail.Driver)
			}
		}},
		{name: "unknown driver", getenv: with(EnvMailDriver, "sendmail"), wantVar: EnvMailDriver, wantMsg: `"sendmail"`},
		{name: "smtp defaults to starttls", getenv: smtpEnv(), check: func(t *testing.T, c Config) {
			if s := c.Mail.SMTP; s.TLS != mailer.TLSStartTLS || s.Addr != "smtp.example.org:587" || c.Mail.From != `"Reset" <no-reply@example.org>` {
				t.Errorf("%+v", c.Mail)
			}
		}},
		{name: "smtp with auth and implicit tls", getenv: smtpEnv(EnvSMTPTLS, "TLS", EnvSMTPUsername, "u", EnvSMTPPassword, " p w "),
			check: func(t *testing.T, c Config) {
				if s := c.Mail.SMTP; s.TLS != mailer.TLSImplicit || s.Username != "u" || s.Password.Reveal() != " p w " {
					t.Errorf("%+v", s)
				}
			}},
		{name: "smtp none to a local relay", getenv: smtpEnv(EnvSMTPTLS, "none", EnvSMTPAddr, "localhost:1025"),
			check: func(t *testing.T, c Config) {
				if c.Mail.SMTP.TLS != mailer.TLSNone {
					t.Errorf("%+v", c.Mail.SMTP)
				}
			}},
		{name: "smtp password in clear text to a remote host", getenv: smtpEnv(EnvSMTPTLS, "none", EnvSMTPUsername, "u", EnvSMTPPassword, "hunter2"),
			wantVar: EnvSMTPTLS, wantMsg: "clear text"},
		{name: "smtp password in clear text to loopback is allowed",
			getenv: smtpEnv(EnvSMTPTLS, "none", EnvSMTPAddr, "127.0.0.1:25", EnvSMTPUsername, "u", EnvSMTPPassword, "hunter2"),
			check:  func(t *testing.T, c Config) {}},
		{name: "smtp needs an address", getenv: smtpEnv(EnvSMTPAddr, ""), wantVar: EnvSMTPAddr, wantMsg: "required"},
		{name: "smtp address without port", getenv: smtpEnv(EnvSMTPAddr, "smtp.example.org"), wantVar: EnvSMTPAddr, wantMsg: "host:port"},
		{name: "smtp address without host", getenv: smtpEnv(EnvSMTPAddr, ":25"), wantVar: EnvSMTPAddr, wantMsg: "no host"},
		{name: "smtp address with a bad port", getenv: smtpEnv(EnvSMTPAddr, "smtp.example.org:99999"), wantVar: EnvSMTPAddr, wantMsg: "port"},
		{name: "smtp unknown tls mode", getenv: smtpEnv(EnvSMTPTLS, "ssl"), wantVar: EnvSMTPTLS, wantMsg: `"ssl"`},
		{name: "smtp password without user", getenv: smtpEnv(EnvSMTPPassword, "hunter2"), wantVar: EnvSMTPUsername, wantMsg: "required"},
		{name: "smtp user without password", getenv: smtpEnv(EnvSMTPUsername, "u"), wantVar: EnvSMTPPassword, wantMsg: "required"},
		{name: "smtp needs from", getenv: smtpEnv(EnvMailFrom, ""), wantVar: EnvMailFrom, wantMsg: "required"},
		{name: "smtp needs a public URL", getenv: smtpEnv(EnvPublicURL, ""), wantVar: EnvPublicURL, wantMsg: "required"},
		{name: "bad from", getenv: with(EnvMailFrom, "not an address"), wantVar: EnvMailFrom, wantMsg: "not an email address"},
		{name: "relative public URL", getenv: with(EnvPublicURL, "/reset"), wantVar: EnvPublicURL, wantMsg: "absolute"},
		{name: "ftp public URL", getenv: with(EnvPublicURL, "ftp://example.org"), wantVar: EnvPublicURL, wantMsg: "http"},
		{name: "public URL with a query", getenv: with(EnvPublicURL, "https://example.org/?a=b"), wantVar: EnvPublicURL, wantMsg: "query"},
		{name: "public URL with credentials", getenv: with(EnvPublicURL, "https://u:pw@example.org"), wantVar: EnvPublicURL, wantMsg: "user name"},
		{name: "public URL without host", getenv: with(EnvPublicURL, "https://"), wantVar: EnvPublicURL, wantMsg: "host"},
		{name: "mailgun", getenv: mailgunEnv(EnvMailgunAPIBase, "https://api.eu.mailgun.net/v3/"), check: func(t *testing.T, c Config) {
			if m := c.Mail.Mailgun; m.Domain != "mg.example.org" || m.APIKey.Reveal() != "key-123" || m.APIBase != "https://api.eu.mailgun.net/v3" {
				t.Errorf("%+v", m)
			}
		}},
		{name: "mailgun needs a domain", getenv: mailgunEnv(EnvMailgunDomain, ""), wantVar: EnvMailgunDomain, wantMsg: "required"},
		{name: "mailgun needs a key", getenv: mailgunEnv(EnvMailgunAPIKey, ""), wantVar: EnvMailgunAPIKey, wantMsg: "required"},
		{name: "mailgun API base must be https", getenv: mailgunEnv(EnvMailgunAPIBase, "http://api.mailgun.net/v3"), wantVar: EnvMailgunAPIBase, wantMsg: "clear text"},
		{name: "mailgun API base must be a URL", getenv: mailgunEnv(EnvMailgunAPIBase, "api.mailgun.net"), wantVar: EnvMailgunAPIBase, wantMsg: "absolute"},
		{name: "mailgun API base without credentials", getenv: mailgunEnv(EnvMailgunAPIBase, "https://u:p@api.mailgun.net/v3"), wantVar: EnvMailgunAPIBase, wantMsg: "credentials"},
		{name: "mailgun bad domain", getenv: mailgunEnv(EnvMailgunDomain, "mg.example.org/x"), wantVar: EnvMailgunDomain, wantMsg: "domain"},
		{name: "retry settings", getenv: with(EnvMailRetryBase, "1s", EnvMailRetryMax, "2m", EnvMailMaxAttempts, "4"), check: func(t *testing.T, c Config) {
			if m := c.Mail; m.RetryBase != time.Second || m.RetryMax != 2*time.Minute || m.MaxAttempts != 4 {
				t.Errorf("%+v", m)
			}
		}},
		{name: "bad retry base", getenv: with(EnvMailRetryBase, "soon"), wantVar: EnvMailRetryBase, wantMsg: "not a duration"},
		{name: "negative retry max", getenv: with(EnvMailRetryMax, "-1s"), wantVar: EnvMailRetryMax, wantMsg: "greater than zero"},
		{name: "no attempts", getenv: with(EnvMailMaxAttempts, "0"), wantVar: EnvMailMaxAttempts, wantMsg: "from 1 to 100"},
		{name: "too many attempts", getenv: with(EnvMailMaxAttempts, "101"), wantVar: EnvMailMaxAttempts, wantMsg: "from 1 to 100"},
		{name: "retry max below base", getenv: with(EnvMailRetryBase, "1m", EnvMailRetryMax, "10s"), wantVar: EnvMailRetryMax, wantMsg: "shorter"},
		{name: "lease settings", getenv: with(EnvMailSendTimeout, "5s", EnvMailLease, "12s"), check: func(t *testing.T, c Config) {
			if c.Mail.SendTimeout != 5*time.Second || c.Mail.Lease != 12*time.Second {
				t.Errorf("send timeout %v lease %v", c.Mail.SendTimeout, c.Mail.Lease)
			}
		}},
		{name: "lease not longer than the send timeout", getenv: with(EnvMailSendTimeout, "30s", EnvMailLease, "30s"), wantVar: EnvMailLease, wantMsg: "longer"},
		{name: "bad lease", getenv: with(EnvMailLease, "soon"), wantVar: EnvMailLease, wantMsg: "not a duration"},
		{name: "senders", getenv: with(EnvMailSenders, " 12 "), check: func(t *testing.T, c Config) {
			if c.Mail.Senders != 12 {
				t.Errorf("senders %d", c.Mail.Senders)
			}
		}},
		{name: "no senders", getenv: with(EnvMailSenders, "0"), wantVar: EnvMailSenders, wantMsg: "from 1 to 32"},
		{name: "too many senders", getenv: with(EnvMailSenders, "33"), wantVar: EnvMailSenders, wantMsg: "from 1 to 32"},
		{name: "senders not a number", getenv: with(EnvMailSenders, "four"), wantVar: EnvMailSenders, wantMsg: "whole number"},
		{name: "the first problem is the one reported", getenv: with(EnvMailDriver, "smtp", EnvSMTPTLS, "bogus"), wantVar: EnvMailFrom, wantMsg: "required with the smtp driver"},
	})
}

// The mailer's own test holds Config's printing to redaction; here, the errors.
func TestMailErrorsNeverShowCredentials(t *testing.T) {
	vars := []string{EnvDatabaseURL, testDB, EnvSecret, testSecret,
		EnvMailDriver, "smtp", EnvMailFrom, "no-reply@example.org", EnvPublicURL, "https://reset.example.org",
		EnvSMTPAddr, "smtp.example.org:587", EnvSMTPUsername, "mailer", EnvSMTPPassword, "hunter2-smtp"}
	c, err := FromEnv(env(vars...))
	if err != nil || c.Mail.SMTP.Password.Reveal() != "hunter2-smtp" {
		t.Fatalf("password %q, err %v", c.Mail.SMTP.Password, err)
	}
	_, err = FromEnv(env(append(vars, EnvSMTPTLS, "none")...))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
	_, err = FromEnv(env(append(vars, EnvMailDriver, "mailgun", EnvMailgunDomain, "mg.example.org", EnvMailgunAPIKey, "key-mailgun-secret",
		EnvMailgunAPIBase, "http://api.mailgun.net/v3")...))
	if err == nil || strings.Contains(err.Error(), "key-mailgun-secret") {
		t.Fatalf("err = %v", err)
	}
}
