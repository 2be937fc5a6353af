// Package smtpsink is an SMTP server (github.com/emersion/go-smtp) that keeps every
// message it accepts, with the time it arrived, and can be told to refuse. Tests use it
// through internal/testkit; `selfreset bench --http` runs one as the relay of the serve
// under test, to read tokens off the mails and time their delivery.
package smtpsink

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Server is an SMTP server that keeps what it accepts. Set the options, then Listen (or
// Start, in a test).
type Server struct {
	// TLS, when set, is offered with STARTTLS, or from the first byte with ImplicitTLS.
	// Without it AUTH is allowed in clear text.
	TLS         *tls.Config
	ImplicitTLS bool
	// Users are the AUTH PLAIN accounts (user → password). With Users, MAIL FROM needs a
	// successful AUTH; nil offers no AUTH.
	Users map[string]string
	// Delay is how long the server takes to accept a message at the end of DATA.
	Delay time.Duration
	// Strict refuses (554 5.6.0) a message that cannot be taken apart (Message.Err) or is
	// multipart without a text/plain part.
	Strict bool
	// OnMessage, when set, is called with each accepted message instead of keeping it
	// (Messages then stays empty): a long load run counts and drops what it receives.
	OnMessage func(Message)
	// OnData, when set, is called at the end of each DATA before the message is taken; a
	// test blocks in it to hold messages in flight.
	OnData func()

	// Addr is the host:port it listens on, once listening.
	Addr string

	mu       sync.Mutex
	srv      *smtp.Server
	msgs     []Message
	seq      int
	refuse   map[string]*smtp.SMTPError // by recipient: the reply to RCPT TO
	tempFail int                        // answer the next n RCPT TO with ErrGreylisted
	dataFail *smtp.SMTPError            // the reply to the end of DATA
	conns    map[net.Conn]bool          // open connections
	dialed   int                        // connections ever opened
}

// Message is one message the server accepted, with its envelope and taken apart.
type Message struct {
	Seq      int       // its place among the messages the server accepted, from 0
	Received time.Time // when the end of DATA arrived
	From     string    // MAIL FROM
	To       []string  // RCPT TO, in order
	Data     []byte    // the message as it arrived
	TLS      bool      // it came over TLS
	User     string    // the AUTH PLAIN user; "" without AUTH

	Header    mail.Header
	MediaType string   // of the whole message: "multipart/alternative", "text/plain"…
	Parts     []string // the Content-Type of each part of a multipart message, in order
	Subject   string   // decoded (RFC 2047)
	Text      string   // the text/plain part, transfer encoding undone; a single-part message's body
	HTML      string   // the text/html part, transfer encoding undone
	Err       error    // why Data could not be taken apart (the fields above may then be partly filled)
}

// ErrGreylisted is the reply to RCPT TO that TempFail arranges.
var ErrGreylisted = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, try again later"}

// Listen listens on addr (host:port; port 0 picks one) and serves in the background
// until Close.
func (s *Server) Listen(addr string) error {
	s.refuse = map[string]*smtp.SMTPError{}
	s.conns = map[net.Conn]bool{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &session{s: s, tls: isTLS}, nil
	}))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.TLSConfig = s.TLS
	srv.AllowInsecureAuth = s.TLS == nil
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("smtp sink: %w", err)
	}
	var ln net.Listener = &countingListener{Listener: tcp, s: s}
	if s.ImplicitTLS {
		ln = tls.NewListener(ln, s.TLS)
	}
	s.Addr = ln.Addr().String()
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// Close stops listening and ends every session.
func (s *Server) Close() error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Close()
}

// TB is what Start and WaitFor need of a test (testing.TB; this package does not import
// testing, since the binary uses it too).
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Start listens on 127.0.0.1:0 and serves until the test ends. It returns s.
func (s *Server) Start(t TB) *Server {
	t.Helper()
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// WaitFor waits up to timeout for a message that pred accepts and returns the first one;
// it fails the test if none comes.
func (s *Server) WaitFor(t TB, pred func(Message) bool, timeout time.Duration) Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := s.Messages()
		for _, m := range msgs {
			if pred(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			var got []string
			for _, m := range msgs {
				got = append(got, fmt.Sprintf("%q to %v", m.Subject, m.To))
			}
			t.Fatalf("no matching mail within %s; the server has %d: %s", timeout, len(msgs), strings.Join(got, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Messages returns a copy of what the server kept so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Refuse answers RCPT TO rcpt with e from now on (nil: accept it again).
func (s *Server) Refuse(rcpt string, e *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse[rcpt] = e
}

// TempFail answers the next n RCPT TO with ErrGreylisted (451).
func (s *Server) TempFail(n int) { s.mu.Lock(); defer s.mu.Unlock(); s.tempFail = n }

// FailData answers the end of DATA with e from now on (nil: accept again).
func (s *Server) FailData(e *smtp.SMTPError) { s.mu.Lock(); defer s.mu.Unlock(); s.dataFail = e }

// Connections returns how many connections clients opened so far and how many are open.
func (s *Server) Connections() (opened, open int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dialed, len(s.conns)
}

// DropConnections closes every open connection without a word, as a relay that timed
// out idle sessions would.
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// countingListener keeps track of the connections it accepts (below TLS: one per TCP
// connection, however often the client says EHLO).
type countingListener struct {
	net.Listener
	s *Server
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: l.s}
	l.s.mu.Lock()
	l.s.conns[tc] = true
	l.s.dialed++
	l.s.mu.Unlock()
	return tc, nil
}

type trackedConn struct {
	net.Conn
	s *Server
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

type session struct {
	s    *Server
	tls  bool
	user string
	from string
	to   []string
}

func (se *session) AuthMechanisms() []string {
	if se.s.Users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (se *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if pw, ok := se.s.Users[username]; !ok || pw != password {
			return smtp.ErrAuthFailed
		}
		se.user = username
		return nil
	}), nil
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.s.Users != nil && se.user == "" {
		return smtp.ErrAuthRequired
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	se.s.mu.Lock()
	defer se.s.mu.Unlock()
	if e := se.s.refuse[to]; e != nil {
		return e
	}
	if se.s.tempFail > 0 {
		se.s.tempFail--
		return ErrGreylisted
	}
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	time.Sleep(se.s.Delay)
	if se.s.OnData != nil {
		se.s.OnData()
	}
	m := Message{Received: time.Now(), From: se.from, To: append([]string(nil), se.to...), Data: raw, TLS: se.tls, User: se.user}
	m.Err = m.parse()
	if se.s.Strict {
		bad := m.Err
		if bad == nil && strings.HasPrefix(m.MediaType, "multipart/") && m.Text == "" {
			bad = errors.New("no text/plain part")
		}
		if bad != nil {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: bad.Error()}
		}
	}
	se.s.mu.Lock()
	if se.s.dataFail != nil {
		defer se.s.mu.Unlock()
		return se.s.dataFail
	}
	m.Seq = se.s.seq
	se.s.seq++
	keep := se.s.OnMessage == nil
	if keep {
		se.s.msgs = append(se.s.msgs, m)
	}
	se.s.mu.Unlock()
	if !keep {
		se.s.OnMessage(m)
	}
	return nil
}

func (se *session) Reset()        { se.from, se.to = "", nil }
func (se *session) Logout() error { return nil }

// parse takes m.Data apart into the header, the subject and the text and HTML parts.
func (m *Message) parse() error {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return err
	}
	m.Header = msg.Header
	if m.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return fmt.Errorf("subject: %w", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("Content-Type %q: %w", msg.Header.Get("Content-Type"), err)
	}
	m.MediaType = mt
	if !strings.HasPrefix(mt, "multipart/") {
		body, err := io.ReadAll(msg.Body)
		m.Text = string(body)
		return err
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart() // undoes quoted-printable
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		body, err := io.ReadAll(part)
		if err != nil {
			return err
		}
		ct := part.Header.Get("Content-Type")
		m.Parts = append(m.Parts, ct)
		switch {
		case strings.HasPrefix(ct, "text/plain"):
			m.Text = string(body)
		case strings.HasPrefix(ct, "text/html"):
			m.HTML = string(body)
		}
	}
}
