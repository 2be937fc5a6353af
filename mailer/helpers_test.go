package mailer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"selfreset/internal/testkit"
)

// ---- clock and jitter ----

func newClock() *testkit.Clock {
	return testkit.NewClock(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
}

// fixedRand always returns the same jitter.
type fixedRand float64

func (r fixedRand) Float64() float64 { return float64(r) }

// ---- SMTP replies the tests arrange (testkit.SMTPServer) ----

var (
	errMailbox   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errRejection = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message rejected"}
)

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

// parseMail fails the test unless m is the mailer's kind of message: multipart/alternative
// with a text and an HTML part and nothing else.
func parseMail(t *testing.T, m testkit.Message) testkit.Message {
	t.Helper()
	if m.Err != nil {
		t.Fatalf("read message: %v", m.Err)
	}
	if m.MediaType != "multipart/alternative" {
		t.Fatalf("Content-Type %q: want multipart/alternative", m.Header.Get("Content-Type"))
	}
	for _, ct := range m.Parts {
		if !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "text/html") {
			t.Fatalf("unexpected part %q", ct)
		}
	}
	if m.Text == "" || m.HTML == "" {
		t.Fatalf("want a text and an HTML part; text=%q html=%q", m.Text, m.HTML)
	}
	return m
}
