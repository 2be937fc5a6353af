package mailer_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// ---- clock and jitter ----

// clock is a movable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// fixedRand always returns the same jitter.
type fixedRand float64

func (r fixedRand) Float64() float64 { return float64(r) }

// ---- an in-process SMTP server ----

// received is a message the test server accepted.
type received struct {
	From string
	To   []string
	Data []byte
	TLS  bool
	User string // authenticated user, if any
}

// smtpServer is a go-smtp server on 127.0.0.1:0 that stores what it accepts and can be
// told to refuse.
type smtpServer struct {
	Addr string

	mu       sync.Mutex
	inbox    []received
	refuse   map[string]*smtp.SMTPError // by recipient: reply to RCPT TO
	tempFail int                        // answer the next n RCPT TO with 451
	dataFail *smtp.SMTPError            // reply to the end of DATA
	users    map[string]string          // AUTH PLAIN accounts; nil: no AUTH
}

type serverOptions struct {
	tls      *tls.Config // offer STARTTLS with it
	implicit bool        // TLS from the first byte
	users    map[string]string
}

func startSMTP(t *testing.T, o serverOptions) *smtpServer {
	t.Helper()
	s := &smtpServer{refuse: map[string]*smtp.SMTPError{}, users: o.users}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &session{s: s, tls: isTLS}, nil
	}))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.TLSConfig = o.tls
	srv.AllowInsecureAuth = o.tls == nil
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.implicit {
		ln = tls.NewListener(ln, o.tls)
	}
	s.Addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *smtpServer) Inbox() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.inbox...)
}

func (s *smtpServer) Refuse(rcpt string, e *smtp.SMTPError) {
	s.mu.Lock()
	s.refuse[rcpt] = e
	s.mu.Unlock()
}

func (s *smtpServer) TempFail(n int) { s.mu.Lock(); s.tempFail = n; s.mu.Unlock() }

func (s *smtpServer) FailData(e *smtp.SMTPError) { s.mu.Lock(); s.dataFail = e; s.mu.Unlock() }

var (
	errMailbox   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errGreylist  = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, try again later"}
	errRejection = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message rejected"}
)

type session struct {
	s    *smtpServer
	tls  bool
	user string
	from string
	to   []string
}

func (se *session) AuthMechanisms() []string {
	if se.s.users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if pw, ok := se.s.users[username]; !ok || pw != password {
			return smtp.ErrAuthFailed
		}
		se.user = username
		return nil
	}), nil
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.s.users != nil && se.user == "" {
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
		return errGreylist
	}
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	se.s.mu.Lock()
	defer se.s.mu.Unlock()
	if se.s.dataFail != nil {
		return se.s.dataFail
	}
	se.s.inbox = append(se.s.inbox, received{From: se.from, To: se.to, Data: b, TLS: se.tls, User: se.user})
	return nil
}

func (se *session) Reset()        { se.from, se.to = "", nil }
func (se *session) Logout() error { return nil }

// ---- TLS ----

// selfSigned returns a server config for 127.0.0.1 and a client config that trusts it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: roots}
}

// ---- reading mail back ----

// parsed is a received message taken apart.
type parsed struct {
	Header mail.Header
	Text   string
	HTML   string
}

func parseMail(t *testing.T, raw []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("read message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: want multipart/alternative (%v)", msg.Header.Get("Content-Type"), err)
	}
	p := parsed{Header: msg.Header}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart() // decodes quoted-printable
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("next part: %v", err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		switch ct := part.Header.Get("Content-Type"); {
		case strings.HasPrefix(ct, "text/plain"):
			p.Text = string(body)
		case strings.HasPrefix(ct, "text/html"):
			p.HTML = string(body)
		default:
			t.Fatalf("unexpected part %q", ct)
		}
	}
	if p.Text == "" || p.HTML == "" {
		t.Fatalf("want a text and an HTML part; text=%q html=%q", p.Text, p.HTML)
	}
	return p
}

var (
	tokenLine = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{10}$`) // Crockford base32, 10 characters
	codeLine  = regexp.MustCompile(`^[0-9]{6}$`)
)

// aloneOnLine returns the one line of text that matches re in full.
func aloneOnLine(t *testing.T, text string, re *regexp.Regexp) string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if re.MatchString(line) {
			found = append(found, line)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one line matching %s, found %q in:\n%s", re, found, text)
	}
	return found[0]
}
