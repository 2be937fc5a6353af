package mailer

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"selfreset/domain"
)

// Drivers and defaults. config.FromEnv reads the settings (SELFRESET_MAIL_DRIVER, …)
// into a Config; this package reads no environment.
const (
	DriverConsole      = "console"
	DriverSMTP         = "smtp"
	DriverMailgun      = "mailgun"
	DefaultFrom        = "Self Password Reset <no-reply@localhost>"
	DefaultPublicURL   = "http://localhost:8080"
	DefaultRetryBase   = 5 * time.Second
	DefaultRetryMax    = 10 * time.Minute
	DefaultMaxAttempts = 10
	// DefaultSenders is how many mails one process sends at once: enough to keep a
	// relay's round trips overlapping, few enough that a relay's per-client connection
	// limit (often 10 or 20) is not reached with a few replicas.
	DefaultSenders = 4
)

// TLSMode is how the SMTP driver protects its connection.
type TLSMode string

const (
	TLSNone     TLSMode = "none"     // plain text (local relays, Mailpit)
	TLSStartTLS TLSMode = "starttls" // plain connection upgraded with STARTTLS (port 587); required, not opportunistic
	TLSImplicit TLSMode = "tls"      // TLS from the first byte (port 465)
)

// Secret is a credential. It prints as "[REDACTED]" with every fmt verb and in slog, so a
// Config can be logged whole.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[REDACTED]"
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders from printing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the credential itself, for the one place that must send it.
func (s Secret) Reveal() string { return string(s) }

// SMTPConfig configures the smtp driver.
type SMTPConfig struct {
	Addr     string // host:port
	Username string // AUTH PLAIN when non-empty
	Password Secret
	TLS      TLSMode
	// TLSConfig overrides the TLS settings (custom roots, tests). ServerName defaults to
	// the host of Addr. Not read from the environment.
	TLSConfig *tls.Config
	// Timeout bounds dialing and each command (default 30s); the send's context may end
	// it sooner.
	Timeout time.Duration
	// Conns is how many open sessions the driver keeps for reuse (default 1; NewDriver
	// sets Config.Senders). The other limits default to DefaultSMTPIdleTimeout,
	// DefaultSMTPMaxAge and DefaultSMTPMaxMessages; MaxMessages 1 is a new connection per
	// message. Not read from the environment.
	Conns       int
	IdleTimeout time.Duration
	MaxAge      time.Duration
	MaxMessages int
	// Clock tells session ages (nil: the system clock); tests move it.
	Clock domain.Clock
}

// MailgunConfig configures the mailgun driver.
type MailgunConfig struct {
	Domain  string
	APIKey  Secret
	APIBase string // default mailgun.APIBase (https://api.mailgun.net/v3); EU: https://api.eu.mailgun.net/v3
}

// Config is the mailer's configuration.
type Config struct {
	Driver string // console, smtp or mailgun
	// From is the sender, RFC 5322 form ("Self Password Reset <no-reply@example.org>").
	From string
	// PublicURL is the service's external base URL (no trailing slash). Links in emails
	// are built from it, never from a request's Host header.
	PublicURL string
	SMTP      SMTPConfig
	Mailgun   MailgunConfig
	// Retry backoff for transient failures: base·2^(attempt−1), capped at max, jittered.
	RetryBase   time.Duration
	RetryMax    time.Duration
	MaxAttempts int
	// SendTimeout bounds one delivery attempt; Lease is how long a claimed delivery stays
	// with its sender before another may retry it (a sender that died mid-send). A token
	// lives 5 minutes, so the lease must be short: it is how late such a mail arrives.
	SendTimeout time.Duration
	Lease       time.Duration
	// Senders is how many deliveries one process sends at once (DefaultSenders); the smtp
	// driver keeps as many sessions open, the mailgun driver as many idle HTTP connections.
	Senders int
}

// LogValue summarises the configuration without credentials.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("driver", c.Driver), slog.String("from", c.From), slog.String("public_url", c.PublicURL)}
	switch c.Driver {
	case DriverSMTP:
		attrs = append(attrs, slog.String("smtp_addr", c.SMTP.Addr), slog.String("smtp_tls", string(c.SMTP.TLS)),
			slog.String("smtp_username", c.SMTP.Username), slog.Bool("smtp_password_set", c.SMTP.Password != ""))
	case DriverMailgun:
		attrs = append(attrs, slog.String("mailgun_domain", c.Mailgun.Domain), slog.String("mailgun_api_base", c.Mailgun.APIBase),
			slog.Bool("mailgun_api_key_set", c.Mailgun.APIKey != ""))
	}
	return slog.GroupValue(attrs...)
}

// ParsePublicURL checks the service's external base URL (absolute http or https, a
// host, no credentials, query or fragment) and returns it without a trailing slash.
func ParsePublicURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q must be an absolute http:// or https:// URL", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("%q has no host", raw)
	}
	if u.User != nil {
		return "", fmt.Errorf("%q must not carry a user name or password", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("%q must not have a query or fragment", raw)
	}
	if u.Port() != "" {
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			return "", fmt.Errorf("%q has an invalid port", raw)
		}
	}
	return strings.TrimRight(u.String(), "/"), nil
}
