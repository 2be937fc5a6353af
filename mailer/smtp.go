package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"selfreset/domain"
)

// SMTP driver defaults (SMTPConfig's zero values).
const (
	defaultSMTPTimeout = 30 * time.Second
	// DefaultSMTPIdleTimeout is how long an open session may sit unused before the driver
	// closes it: well under the 5 minutes RFC 5321 lets a server wait, so the relay never
	// has to be the one that hangs up.
	DefaultSMTPIdleTimeout = 30 * time.Second
	// DefaultSMTPMaxAge and DefaultSMTPMaxMessages retire a session after that long or
	// that many messages, so a relay's per-connection limits and a changed DNS answer are
	// met in time.
	DefaultSMTPMaxAge      = 5 * time.Minute
	DefaultSMTPMaxMessages = 100
)

// SMTPDriver submits mail to an SMTP server (a relay, a provider's submission port,
// Mailpit). It keeps up to SMTPConfig.Conns sessions open and sends one message after
// another over each (MAIL, RCPT, DATA; RSET after a refused message), so a burst pays for
// the dial, TLS handshake and login once per session, not once per message.
// Safe for concurrent use; Close ends the idle sessions.
type SMTPDriver struct {
	cfg   SMTPConfig
	host  string
	clock domain.Clock

	mu     sync.Mutex
	idle   []*smtpSession // most recently used last
	closed bool
}

// smtpSession is one open, logged-in connection between messages.
type smtpSession struct {
	c        *smtp.Client
	born     time.Time
	lastUsed time.Time
	sent     int
	// idleTimer closes the session once it has been idle for IdleTimeout; whoever stops
	// it first (Stop returns true) owns the session.
	idleTimer *time.Timer
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
	cfg.Timeout = orDefault(cfg.Timeout, defaultSMTPTimeout)
	cfg.Conns = orDefault(cfg.Conns, 1)
	cfg.IdleTimeout = orDefault(cfg.IdleTimeout, DefaultSMTPIdleTimeout)
	cfg.MaxAge = orDefault(cfg.MaxAge, DefaultSMTPMaxAge)
	cfg.MaxMessages = orDefault(cfg.MaxMessages, DefaultSMTPMaxMessages)
	d := &SMTPDriver{cfg: cfg, host: host, clock: cfg.Clock}
	if d.clock == nil {
		d.clock = domain.SystemClock{}
	}
	return d, nil
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

// dial opens a session: it dials the server, sets up TLS as configured and logs in.
// ctx bounds the whole setup.
func (d *SMTPDriver) dial(ctx context.Context) (*smtpSession, error) {
	dialer := net.Dialer{Timeout: d.cfg.Timeout}
	conn, err := dialer.DialContext(ctx, "tcp", d.cfg.Addr)
	if err != nil {
		return nil, smtpStage("connect", err)
	}
	// The client sets its own per-command deadlines; closing the connection is how a
	// cancelled context interrupts it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if d.cfg.TLS == TLSImplicit {
		tc := tls.Client(conn, d.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, smtpStage("tls handshake", err)
		}
		conn = tc
	}
	var c *smtp.Client
	if d.cfg.TLS == TLSStartTLS {
		if c, err = smtp.NewClientStartTLS(conn, d.tlsConfig()); err != nil {
			return nil, smtpStage("starttls", err) // NewClientStartTLS closed the connection
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = d.cfg.Timeout
	c.SubmissionTimeout = 2 * d.cfg.Timeout
	if d.cfg.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", d.cfg.Username, d.cfg.Password.Reveal())); err != nil {
			c.Close()
			return nil, smtpStage("auth", err)
		}
	}
	if ctx.Err() != nil { // the watch may have closed the connection after the last command
		c.Close()
		return nil, smtpStage("connect", ctx.Err())
	}
	now := d.clock.Now()
	return &smtpSession{c: c, born: now, lastUsed: now}, nil
}

// take returns an idle session fit for another message, or nil. Sessions past their
// idle time, age or message count are closed on the way.
func (d *SMTPDriver) take() *smtpSession {
	now := d.clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.idle) > 0 {
		s := d.idle[len(d.idle)-1]
		d.idle = d.idle[:len(d.idle)-1]
		if !s.idleTimer.Stop() {
			continue // its timer fired and is closing it
		}
		if now.Sub(s.lastUsed) >= d.cfg.IdleTimeout || now.Sub(s.born) >= d.cfg.MaxAge {
			go quit(s.c)
			continue
		}
		return s
	}
	return nil
}

// put returns a session that is between messages to the idle set, or closes it when it
// is used up, the set is full or the driver is closed.
func (d *SMTPDriver) put(s *smtpSession) {
	s.lastUsed = d.clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || len(d.idle) >= d.cfg.Conns || s.sent >= d.cfg.MaxMessages || s.lastUsed.Sub(s.born) >= d.cfg.MaxAge {
		go quit(s.c)
		return
	}
	s.idleTimer = time.AfterFunc(d.cfg.IdleTimeout, func() { d.expire(s) })
	d.idle = append(d.idle, s)
}

// expire closes s after it sat idle for IdleTimeout, unless take got it first.
func (d *SMTPDriver) expire(s *smtpSession) {
	d.mu.Lock()
	for i, x := range d.idle {
		if x == s {
			d.idle = append(d.idle[:i], d.idle[i+1:]...)
			break
		}
	}
	d.mu.Unlock()
	quit(s.c)
}

// quit says goodbye and closes the connection; a failed goodbye changes nothing.
func quit(c *smtp.Client) {
	if c.Quit() != nil {
		c.Close()
	}
}

// Close ends the idle sessions; sessions in use are closed when their message is done.
func (d *SMTPDriver) Close() error {
	d.mu.Lock()
	idle := d.idle
	d.idle, d.closed = nil, true
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range idle {
		if s.idleTimer.Stop() {
			wg.Add(1)
			go func() { defer wg.Done(); quit(s.c) }()
		}
	}
	wg.Wait()
	return nil
}

// submitError is a failed submission and whether the server may have taken the message.
type submitError struct {
	err error
	// unsafe: the failure came at or after the end of DATA, so the message may have been
	// accepted; sending it again could deliver it twice.
	unsafe bool
}

// submit sends one message from one sender to one recipient over c.
func submit(c *smtp.Client, from, to string, body []byte) *submitError {
	var mailOpts *smtp.MailOptions
	if !isASCII(from) || !isASCII(to) {
		mailOpts = &smtp.MailOptions{UTF8: true}
	}
	if err := c.Mail(from, mailOpts); err != nil {
		return &submitError{err: smtpStage("MAIL FROM", err)}
	}
	if err := c.Rcpt(to, nil); err != nil {
		if rejected(err) {
			return &submitError{err: Permanent(smtpStage("RCPT TO", err))}
		}
		return &submitError{err: smtpStage("RCPT TO", err)}
	}
	w, err := c.Data()
	if err != nil {
		return &submitError{err: smtpStage("DATA", err)}
	}
	if _, err := w.Write(body); err != nil {
		return &submitError{err: smtpStage("DATA", err)}
	}
	if _, err := w.CloseWithResponse(); err != nil {
		if rejected(err) {
			return &submitError{err: Permanent(smtpStage("message", err))}
		}
		return &submitError{err: smtpStage("message", err), unsafe: !replied(err)}
	}
	return nil
}

// rejected reports whether err is a 5xx reply from the server.
func rejected(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500 && se.Code < 600
}

// replied reports whether err is a reply from the server (as opposed to a broken
// connection), other than 421, with which a server closes the session.
func replied(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code != 421
}

// Send implements Driver. A 5xx reply to RCPT TO (the address is refused) or to the
// message itself is permanent; anything else (4xx replies, network trouble, a refused
// sender or login, which concern every message alike) is transient.
//
// It sends over an idle session when there is one. If that session turns out broken
// (the relay hung up while it was idle) before the message could have been taken, the
// message goes once more over a fresh session.
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

	if err := ctx.Err(); err != nil {
		return "", smtpStage("send", err) // a session's watch would close it only after a while
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout*4) // a whole transaction: connect, hello, auth, send
	defer cancel()
	if s := d.take(); s != nil {
		serr := d.over(ctx, s, from.Address, to.Address, body)
		if serr == nil {
			return id, nil
		}
		if serr.unsafe || replied(serr.err) || ctx.Err() != nil {
			return "", serr.err
		}
		// The reused session was dead: nothing was taken, so a fresh one may try.
	}
	s, err := d.dial(ctx)
	if err != nil {
		return "", err
	}
	if serr := d.over(ctx, s, from.Address, to.Address, body); serr != nil {
		return "", serr.err
	}
	return id, nil
}

// over submits one message over s and puts s back when it is fit for the next one: after
// success, or after a refusal the session survives (RSET clears the transaction).
func (d *SMTPDriver) over(ctx context.Context, s *smtpSession, from, to string, body []byte) *submitError {
	stop := context.AfterFunc(ctx, func() { s.c.Close() })
	serr := submit(s.c, from, to, body)
	s.sent++
	switch {
	case !stop():
		// ctx ended and the watch closed the connection.
		if serr == nil {
			return nil
		}
		serr.err = errors.Join(serr.err, ctx.Err())
		return serr
	case serr == nil:
		d.put(s)
	case replied(serr.err) && s.c.Reset() == nil:
		d.put(s)
	default:
		s.c.Close()
	}
	return serr
}

// orDefault is v, or def when v is zero or less (unset).
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
