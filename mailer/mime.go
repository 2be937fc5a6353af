package mailer

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// messageID is the Message-ID of m: stable per delivery, so a re-send after a crash
// carries the same one and mail clients can fold duplicates.
func messageID(m Message) string {
	local := m.ID
	if local == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		local = hex.EncodeToString(b[:])
	}
	domain := "selfreset.invalid"
	if a, err := mail.ParseAddress(m.From); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok && d != "" {
			domain = d
		}
	}
	return "<" + local + "@" + domain + ">"
}

// buildMIME renders m as an RFC 5322 message with a multipart/alternative body (text,
// then HTML), CRLF line endings, both parts quoted-printable UTF-8.
func buildMIME(m Message, msgID string) ([]byte, error) {
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return nil, fmt.Errorf("mailer: from address %q: %w", m.From, err)
	}
	to, err := mail.ParseAddress(m.To)
	if err != nil {
		return nil, fmt.Errorf("mailer: recipient address: %w", err)
	}
	for _, v := range []string{m.Subject, msgID} {
		if strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("mailer: header value contains a line break")
		}
	}
	date := m.Date
	if date.IsZero() {
		date = time.Now()
	}

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	header := func(k, v string) { fmt.Fprintf(&buf, "%s: %s\r\n", k, v) }
	header("Date", date.Format(time.RFC1123Z))
	header("From", from.String())
	header("To", to.String())
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	header("Message-ID", msgID)
	header("MIME-Version", "1.0")
	header("Auto-Submitted", "auto-generated") // RFC 3834: no auto-replies, please
	header("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	buf.WriteString("\r\n")

	for _, part := range []struct{ typ, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", part.typ+"; charset=utf-8")
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(part.body)); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
