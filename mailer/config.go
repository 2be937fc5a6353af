package mailer

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Environment variables read by ConfigFromEnv.
const (
	EnvDriver          = "SELFRESET_MAIL_DRIVER"
	EnvFrom            = "SELFRESET_MAIL_FROM"
	EnvSMTPAddr        = "SELFRESET_SMTP_ADDR"
	EnvSMTPUsername    = "SELFRESET_SMTP_USERNAME"
	EnvSMTPPassword    = "SELFRESET_SMTP_PASSWORD"
	EnvSMTPTLS         = "SELFRESET_SMTP_TLS"
	EnvMailgunDomain   = "SELFRESET_MAILGUN_DOMAIN"
	EnvMailgunAPIKey   = "SELFRESET_MAILGUN_API_KEY"
	EnvMailgunAPIBase  = "SELFRESET_MAILGUN_API_BASE"
	EnvPublicURL       = "SELFRESET_PUBLIC_URL"
	EnvRetryBase       = "SELFRESET_MAIL_RETRY_BASE"
	EnvRetryMax        = "SELFRESET_MAIL_RETRY_MAX"
	EnvMaxAttempts     = "SELFRESET_MAIL_MAX_ATTEMPTS"
	EnvSendTimeout     = "SELFRESET_MAIL_SEND_TIMEOUT"
	EnvLease           = "SELFRESET_MAIL_LEASE"
	DriverConsole      = "console"
	DriverSMTP         = "smtp"
	DriverMailgun      = "mailgun"
	DefaultFrom        = "Self Password Reset <no-reply@localhost>"
	DefaultPublicURL   = "http://localhost:8080"
	DefaultRetryBase   = 5 * time.Second
	DefaultRetryMax    = 10 * time.Minute
	DefaultMaxAttempts = 10
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

// ConfigFromEnv reads the mailer's configuration through getenv (os.Getenv in
// production). Every problem is reported, each naming its variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", k, fmt.Sprintf(format, args...)))
	}

	c := Config{
		Driver:      strings.ToLower(get(EnvDriver)),
		From:        get(EnvFrom),
		PublicURL:   get(EnvPublicURL),
		RetryBase:   DefaultRetryBase,
		RetryMax:    DefaultRetryMax,
		MaxAttempts: DefaultMaxAttempts,
		SendTimeout: DefaultSendTimeout,
		Lease:       DefaultLease,
		SMTP: SMTPConfig{
			Addr:     get(EnvSMTPAddr),
			Username: get(EnvSMTPUsername),
			Password: Secret(getenv(EnvSMTPPassword)), // not trimmed: spaces may be part of it
			TLS:      TLSMode(strings.ToLower(get(EnvSMTPTLS))),
		},
		Mailgun: MailgunConfig{
			Domain:  get(EnvMailgunDomain),
			APIKey:  Secret(get(EnvMailgunAPIKey)),
			APIBase: get(EnvMailgunAPIBase),
		},
	}
	if c.Driver == "" {
		c.Driver = DriverConsole
	}
	real := c.Driver != DriverConsole // mail leaves the machine

	switch c.Driver {
	case DriverConsole, DriverSMTP, DriverMailgun:
	default:
		bad(EnvDriver, "%q is not one of console, smtp, mailgun", c.Driver)
	}

	// From
	if c.From == "" {
		if real {
			bad(EnvFrom, "required with the %s driver", c.Driver)
		} else {
			c.From = DefaultFrom
		}
	}
	if c.From != "" {
		if a, err := mail.ParseAddress(c.From); err != nil {
			bad(EnvFrom, "%q is not an email address (%v)", c.From, err)
		} else {
			c.From = a.String()
		}
	}

	// Public URL
	if c.PublicURL == "" {
		if real {
			bad(EnvPublicURL, "required with the %s driver (links in emails are built from it)", c.Driver)
		} else {
			c.PublicURL = DefaultPublicURL
		}
	} else if u, err := parsePublicURL(c.PublicURL); err != nil {
		bad(EnvPublicURL, "%v", err)
	} else {
		c.PublicURL = u
	}

	// Retries
	if v := get(EnvRetryBase); v != "" {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			bad(EnvRetryBase, "%q is not a positive duration (e.g. 5s)", v)
		} else {
			c.RetryBase = d
		}
	}
	if v := get(EnvRetryMax); v != "" {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			bad(EnvRetryMax, "%q is not a positive duration (e.g. 10m)", v)
		} else {
			c.RetryMax = d
		}
	}
	if c.RetryMax < c.RetryBase {
		bad(EnvRetryMax, "%s is shorter than %s (%s)", c.RetryMax, EnvRetryBase, c.RetryBase)
	}
	if v := get(EnvMaxAttempts); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 100 {
			bad(EnvMaxAttempts, "%q is not a whole number from 1 to 100", v)
		} else {
			c.MaxAttempts = n
		}
	}

	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{EnvSendTimeout, &c.SendTimeout}, {EnvLease, &c.Lease}} {
		if v := get(d.name); v != "" {
			if parsed, err := time.ParseDuration(v); err != nil || parsed <= 0 {
				bad(d.name, "%q is not a positive duration (e.g. 30s)", v)
			} else {
				*d.dst = parsed
			}
		}
	}
	if c.Lease <= c.SendTimeout {
		bad(EnvLease, "%s must be longer than %s (%s)", c.Lease, EnvSendTimeout, c.SendTimeout)
	}

	switch c.Driver {
	case DriverSMTP:
		errs = append(errs, c.SMTP.validate()...)
	case DriverMailgun:
		errs = append(errs, c.Mailgun.validate()...)
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("mailer configuration: %w", errors.Join(errs...))
	}
	return c, nil
}

func parsePublicURL(raw string) (string, error) {
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

func (s *SMTPConfig) validate() []error {
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", k, fmt.Sprintf(format, args...)))
	}
	if s.TLS == "" {
		s.TLS = TLSStartTLS
	}
	switch s.TLS {
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		bad(EnvSMTPTLS, "%q is not one of none, starttls, tls", s.TLS)
	}
	var host string
	if s.Addr == "" {
		bad(EnvSMTPAddr, "required with the smtp driver (host:port)")
	} else {
		h, port, err := net.SplitHostPort(s.Addr)
		p, perr := strconv.Atoi(port)
		switch {
		case err != nil:
			bad(EnvSMTPAddr, "%q is not host:port", s.Addr)
		case h == "":
			bad(EnvSMTPAddr, "%q has no host", s.Addr)
		case perr != nil || p < 1 || p > 65535:
			bad(EnvSMTPAddr, "%q has an invalid port", s.Addr)
		default:
			host = h
		}
	}
	if s.Password != "" && s.Username == "" {
		bad(EnvSMTPUsername, "required when %s is set", EnvSMTPPassword)
	}
	if s.Username != "" && s.Password == "" {
		bad(EnvSMTPPassword, "required when %s is set", EnvSMTPUsername)
	}
	// Like net/smtp: never send a password in clear text over the network.
	if s.Username != "" && s.TLS == TLSNone && host != "" && !isLoopbackHost(host) {
		bad(EnvSMTPTLS, "none would send the SMTP password in clear text to %s; use starttls or tls", host)
	}
	return errs
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (m *MailgunConfig) validate() []error {
	var errs []error
	if m.Domain == "" {
		errs = append(errs, fmt.Errorf("%s: required with the mailgun driver", EnvMailgunDomain))
	} else if strings.ContainsAny(m.Domain, ":&'@(),!?#;%+=<>/ ") {
		errs = append(errs, fmt.Errorf("%s: %q is not a domain name", EnvMailgunDomain, m.Domain))
	}
	if m.APIKey == "" {
		errs = append(errs, fmt.Errorf("%s: required with the mailgun driver", EnvMailgunAPIKey))
	}
	if m.APIBase != "" {
		u, err := url.Parse(m.APIBase)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: %q must be an absolute https:// URL such as https://api.eu.mailgun.net/v3", EnvMailgunAPIBase, m.APIBase))
		} else if u.User != nil {
			errs = append(errs, fmt.Errorf("%s: must not carry credentials", EnvMailgunAPIBase))
		} else if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
			// The API key travels in every request.
			errs = append(errs, fmt.Errorf("%s: %q would send the API key in clear text; use https://", EnvMailgunAPIBase, m.APIBase))
		} else {
			m.APIBase = strings.TrimRight(m.APIBase, "/")
		}
	}
	return errs
}
