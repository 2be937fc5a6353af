package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"

	"selfreset/mailer"
)

// Mail environment variables. The mailer package gets the result as a plain
// mailer.Config (Config.Mail) and reads no environment of its own.
const (
	// EnvMailDriver is console (the default: mail printed to standard output), smtp or mailgun.
	EnvMailDriver = "SELFRESET_MAIL_DRIVER"
	// EnvMailFrom is the sender, RFC 5322 form; required unless the driver is console.
	EnvMailFrom       = "SELFRESET_MAIL_FROM"
	EnvSMTPAddr       = "SELFRESET_SMTP_ADDR"
	EnvSMTPUsername   = "SELFRESET_SMTP_USERNAME"
	EnvSMTPPassword   = "SELFRESET_SMTP_PASSWORD"
	EnvSMTPTLS        = "SELFRESET_SMTP_TLS"
	EnvMailgunDomain  = "SELFRESET_MAILGUN_DOMAIN"
	EnvMailgunAPIKey  = "SELFRESET_MAILGUN_API_KEY"
	EnvMailgunAPIBase = "SELFRESET_MAILGUN_API_BASE"
	// EnvPublicURL is the service's external base URL, the only base of links in emails;
	// unset (console driver only), it is http:// + SELFRESET_ADDR.
	EnvPublicURL = "SELFRESET_PUBLIC_URL"
	// Delivery retries: base·2^(attempt−1), capped at max, at most max-attempts tries.
	EnvMailRetryBase   = "SELFRESET_MAIL_RETRY_BASE"
	EnvMailRetryMax    = "SELFRESET_MAIL_RETRY_MAX"
	EnvMailMaxAttempts = "SELFRESET_MAIL_MAX_ATTEMPTS"
	// EnvMailSendTimeout bounds one delivery attempt; EnvMailLease is how long a claimed
	// delivery stays with its sender (longer than the send timeout).
	EnvMailSendTimeout = "SELFRESET_MAIL_SEND_TIMEOUT"
	EnvMailLease       = "SELFRESET_MAIL_LEASE"
	// EnvMailSenders is how many mails one process sends at once (and how many SMTP
	// sessions or Mailgun connections it keeps open).
	EnvMailSenders = "SELFRESET_MAIL_SENDERS"
)

// MaxMailAttempts bounds SELFRESET_MAIL_MAX_ATTEMPTS; MaxMailSenders bounds
// SELFRESET_MAIL_SENDERS (relays limit connections per client, often to 10 or 20).
const (
	MaxMailAttempts = 100
	MaxMailSenders  = 32
)

// mail reads the mail settings into c.Mail. It runs after the listen address is known:
// that is the default public URL.
func (c *Config) mail(getenv func(string) string) error {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	m := mailer.Config{
		Driver:    strings.ToLower(get(EnvMailDriver)),
		From:      get(EnvMailFrom),
		PublicURL: get(EnvPublicURL),
	}
	if m.Driver == "" {
		m.Driver = mailer.DriverConsole
	}
	switch m.Driver {
	case mailer.DriverConsole, mailer.DriverSMTP, mailer.DriverMailgun:
	default:
		return &Error{EnvMailDriver, fmt.Sprintf("%q is not one of console, smtp, mailgun", m.Driver)}
	}
	if err := mailSender(&m); err != nil {
		return err
	}
	c.PublicURLSet = m.PublicURL != ""
	if err := publicURL(&m, c.Addr); err != nil {
		return err
	}
	if err := mailTiming(getenv, &m); err != nil {
		return err
	}
	var err error
	switch m.Driver {
	case mailer.DriverSMTP:
		m.SMTP, err = smtpSettings(getenv)
	case mailer.DriverMailgun:
		m.Mailgun, err = mailgunSettings(getenv)
	}
	if err != nil {
		return err
	}
	c.Mail = m
	return nil
}

// mailSender checks the From address (a default only for console: real mail needs a
// real sender).
func mailSender(m *mailer.Config) error {
	if m.From == "" {
		if m.Driver != mailer.DriverConsole {
			return &Error{EnvMailFrom, fmt.Sprintf("required with the %s driver", m.Driver)}
		}
		m.From = mailer.DefaultFrom
	}
	a, err := mail.ParseAddress(m.From)
	if err != nil {
		return &Error{EnvMailFrom, fmt.Sprintf("%q is not an email address (%v)", m.From, err)}
	}
	m.From = a.String()
	return nil
}

// publicURL checks the public URL; unset, console mail links point at this process.
func publicURL(m *mailer.Config, addr string) error {
	if m.PublicURL == "" {
		if m.Driver != mailer.DriverConsole {
			return &Error{EnvPublicURL, fmt.Sprintf("required with the %s driver (links in emails are built from it)", m.Driver)}
		}
		m.PublicURL = "http://" + addr
		return nil
	}
	u, err := mailer.ParsePublicURL(m.PublicURL)
	if err != nil {
		return &Error{EnvPublicURL, err.Error()}
	}
	m.PublicURL = u
	return nil
}

// mailTiming reads the retry backoff, the attempt limit, the send timeout, the lease and
// the number of senders.
func mailTiming(getenv func(string) string, m *mailer.Config) error {
	var err error
	for _, d := range []struct {
		name string
		dst  *time.Duration
		def  time.Duration
	}{
		{EnvMailRetryBase, &m.RetryBase, mailer.DefaultRetryBase},
		{EnvMailRetryMax, &m.RetryMax, mailer.DefaultRetryMax},
		{EnvMailSendTimeout, &m.SendTimeout, mailer.DefaultSendTimeout},
		{EnvMailLease, &m.Lease, mailer.DefaultLease},
	} {
		if *d.dst, err = duration(getenv, d.name, d.def); err != nil {
			return err
		}
	}
	if m.RetryMax < m.RetryBase {
		return &Error{EnvMailRetryMax, fmt.Sprintf("%s is shorter than %s (%s)", m.RetryMax, EnvMailRetryBase, m.RetryBase)}
	}
	if m.Lease <= m.SendTimeout {
		return &Error{EnvMailLease, fmt.Sprintf("%s must be longer than %s (%s)", m.Lease, EnvMailSendTimeout, m.SendTimeout)}
	}
	if m.MaxAttempts, err = nonNegativeInt(getenv, EnvMailMaxAttempts, mailer.DefaultMaxAttempts); err != nil {
		return err
	}
	if m.MaxAttempts < 1 || m.MaxAttempts > MaxMailAttempts {
		return &Error{EnvMailMaxAttempts, fmt.Sprintf("%d must be from 1 to %d", m.MaxAttempts, MaxMailAttempts)}
	}
	if m.Senders, err = nonNegativeInt(getenv, EnvMailSenders, mailer.DefaultSenders); err != nil {
		return err
	}
	if m.Senders < 1 || m.Senders > MaxMailSenders {
		return &Error{EnvMailSenders, fmt.Sprintf("%d must be from 1 to %d", m.Senders, MaxMailSenders)}
	}
	return nil
}

// smtpSettings reads and checks the smtp driver's relay, TLS mode and credentials.
func smtpSettings(getenv func(string) string) (mailer.SMTPConfig, error) {
	s := mailer.SMTPConfig{
		Addr:     strings.TrimSpace(getenv(EnvSMTPAddr)),
		Username: strings.TrimSpace(getenv(EnvSMTPUsername)),
		Password: mailer.Secret(getenv(EnvSMTPPassword)), // not trimmed: spaces may be part of it
		TLS:      mailer.TLSMode(strings.ToLower(strings.TrimSpace(getenv(EnvSMTPTLS)))),
	}
	if s.TLS == "" {
		s.TLS = mailer.TLSStartTLS
	}
	switch s.TLS {
	case mailer.TLSNone, mailer.TLSStartTLS, mailer.TLSImplicit:
	default:
		return s, &Error{EnvSMTPTLS, fmt.Sprintf("%q is not one of none, starttls, tls", s.TLS)}
	}
	if s.Addr == "" {
		return s, &Error{EnvSMTPAddr, "required with the smtp driver (host:port)"}
	}
	host, port, err := net.SplitHostPort(s.Addr)
	switch p, perr := strconv.Atoi(port); {
	case err != nil:
		return s, &Error{EnvSMTPAddr, fmt.Sprintf("%q is not host:port", s.Addr)}
	case host == "":
		return s, &Error{EnvSMTPAddr, fmt.Sprintf("%q has no host", s.Addr)}
	case perr != nil || p < 1 || p > 65535:
		return s, &Error{EnvSMTPAddr, fmt.Sprintf("%q has an invalid port", s.Addr)}
	}
	if s.Password != "" && s.Username == "" {
		return s, &Error{EnvSMTPUsername, "required when " + EnvSMTPPassword + " is set"}
	}
	if s.Username != "" && s.Password == "" {
		return s, &Error{EnvSMTPPassword, "required when " + EnvSMTPUsername + " is set"}
	}
	// Like net/smtp: never send a password in clear text over the network.
	if s.Username != "" && s.TLS == mailer.TLSNone && !isLoopbackHost(host) {
		return s, &Error{EnvSMTPTLS, fmt.Sprintf("none would send the SMTP password in clear text to %s; use starttls or tls", host)}
	}
	return s, nil
}

// mailgunSettings reads and checks the mailgun driver's domain, API key and API base.
func mailgunSettings(getenv func(string) string) (mailer.MailgunConfig, error) {
	m := mailer.MailgunConfig{
		Domain:  strings.TrimSpace(getenv(EnvMailgunDomain)),
		APIKey:  mailer.Secret(strings.TrimSpace(getenv(EnvMailgunAPIKey))),
		APIBase: strings.TrimSpace(getenv(EnvMailgunAPIBase)),
	}
	switch {
	case m.Domain == "":
		return m, &Error{EnvMailgunDomain, "required with the mailgun driver"}
	case strings.ContainsAny(m.Domain, ":&'@(),!?#;%+=<>/ "):
		return m, &Error{EnvMailgunDomain, fmt.Sprintf("%q is not a domain name", m.Domain)}
	case m.APIKey == "":
		return m, &Error{EnvMailgunAPIKey, "required with the mailgun driver"}
	case m.APIBase == "":
		return m, nil
	}
	u, err := url.Parse(m.APIBase)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return m, &Error{EnvMailgunAPIBase, fmt.Sprintf("%q must be an absolute https:// URL such as https://api.eu.mailgun.net/v3", m.APIBase)}
	case u.User != nil:
		return m, &Error{EnvMailgunAPIBase, "must not carry credentials"}
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
		// The API key travels in every request.
		return m, &Error{EnvMailgunAPIBase, fmt.Sprintf("%q would send the API key in clear text; use https://", m.APIBase)}
	}
	m.APIBase = strings.TrimRight(m.APIBase, "/")
	return m, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
