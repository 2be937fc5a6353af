package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const defaultSMTPTimeout = 30 * time.Second

// SMTPDriver submits mail to an SMTP server (a relay, a provider's submission port,
// Mailpit), one connection per message.
type SMTPDriver struct {
	cfg  SMTPConfig
	host string
}

// NewSMTPDriver returns the driver. It does not connect. The operator's settings were
// checked by config.FromEnv (clear-text credentials included); here only what the driver
// cannot work without.
func NewSMTPDriver(cfg SMTPConfig) (*SMTPDriver, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("mailer: smtp: address %q is not host:port", cfg.Addr)
	}
	switch cfg.TLS {
	case "":
		cfg.TLS = TLSStartTLS
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return nil, fmt.Errorf("mailer: smtp: unknown TLS mode %q", cfg.TLS)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultSMTPTimeout
	}
	return &SMTPDriver{cfg: cfg, host: host}, nil
}

func (d *SMTPDriver) tlsConfig() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if d.cfg.TLSConfig != nil {
		c = d.cfg.TLSConfig.Clone()
	}
	if c.ServerName == "" {
		c.ServerName = d.host
	}
	return c
}

// smtpStage wraps an error with the SMTP step it happened in.
func smtpStage(stage string, err error) error { return fmt.Errorf("smtp %s: %w", stage, err) }

// connect dials the server, sets up TLS as configured and logs in. stop ends the
// watch that closes the connection when ctx ends; the caller closes the client.
func (d *SMTPDriver) connect(ctx context.Context) (c *smtp.Client, stop func() bool, err error) {
	dialer := net.Dialer{Timeout: d.cfg.Timeout}
	conn, err := dialer.DialContext(ctx, "tcp", d.cfg.Addr)
	if err != nil {
		return nil, nil, smtpStage("connect", err)
	}
	// The client sets its own per-command deadlines; closing the connection is how a
	// cancelled context interrupts it.
	stop = context.AfterFunc(ctx, func() { conn.Close() })
	if d.cfg.TLS == TLSImplicit {
		tc := tls.Client(conn, d.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			stop()
			conn.Close()
			return nil, nil, smtpStage("tls handshake", err)
		}
		conn = tc
	}
	if d.cfg.TLS == TLSStartTLS {
		if c, err = smtp.NewClientStartTLS(conn, d.tlsConfig()); err != nil {
			stop()
			return nil, nil, smtpStage("starttls", err) // NewClientStartTLS closed the connection
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = d.cfg.Timeout
	c.SubmissionTimeout = 2 * d.cfg.Timeout
	if d.cfg.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", d.cfg.Username, d.cfg.Password.Reveal())); err != nil {
			c.Close()
			stop()
			return nil, nil, smtpStage("auth", err)
		}
	}
	return c, stop, nil
}

// submit sends one message from one sender to one recipient over c.
func submit(c *smtp.Client, from, to string, body []byte) error {
	var mailOpts *smtp.MailOptions
	if !isASCII(from) || !isASCII(to) {
		mailOpts = &smtp.MailOptions{UTF8: true}
	}
	if err := c.Mail(from, mailOpts); err != nil {
		return smtpStage("MAIL FROM", err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		if rejected(err) {
			return Permanent(smtpStage("RCPT TO", err))
		}
		return smtpStage("RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return smtpStage("DATA", err)
	}
	if _, err := w.Write(body); err != nil {
		return smtpStage("DATA", err)
	}
	if _, err := w.CloseWithResponse(); err != nil {
		if rejected(err) {
			return Permanent(smtpStage("message", err))
		}
		return smtpStage("message", err)
	}
	return nil
}

// rejected reports whether err is a 5xx reply from the server.
func rejected(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500 && se.Code < 600
}

// Send implements Driver. A 5xx reply to RCPT TO (the address is refused) or to the
// message itself is permanent; anything else (4xx replies, network trouble, a refused
// sender or login, which concern every message alike) is transient.
func (d *SMTPDriver) Send(ctx context.Context, m Message) (string, error) {
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return "", Permanent(fmt.Errorf("smtp: from address: %w", err))
	}
	to, err := mail.ParseAddress(m.To)
	if err != nil {
		return "", Permanent(fmt.Errorf("smtp: recipient address: %w", err))
	}
	id := messageID(m)
	body, err := buildMIME(m, id)
	if err != nil {
		return "", Permanent(err)
	}

	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout*4) // a whole transaction: connect, hello, auth, send
	defer cancel()
	c, stop, err := d.connect(ctx)
	if err != nil {
		return "", err
	}
	defer stop()
	defer c.Close()
	if err := submit(c, from.Address, to.Address, body); err != nil {
		return "", err
	}
	_ = c.Quit() // the server has taken the message; a failed goodbye changes nothing
	return id, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
