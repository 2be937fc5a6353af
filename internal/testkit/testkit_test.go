package testkit

import (
	"go/parser"
	"go/token"
	"io/fs"
	"net/smtp"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestOnlyTestsImportTestkit keeps the package out of the service: only _test.go files
// (and testkit itself) may import it.
func TestOnlyTestsImportTestkit(t *testing.T) {
	root := filepath.Join("..", "..") // the module root, from internal/testkit
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if abs, _ := filepath.Abs(path); abs == self || (path != root && strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "selfreset/internal/testkit" {
				t.Errorf("%s imports %s: it is for tests only", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSMTPServerStrict: a readable mail is kept taken apart; a strict server refuses a
// multipart mail without a text part.
func TestSMTPServerStrict(t *testing.T) {
	s := (&SMTPServer{Strict: true}).Start(t)
	send := func(body string) error {
		return smtp.SendMail(s.Addr, nil, "a@example.org", []string{"b@example.org"}, []byte(strings.ReplaceAll(body, "\n", "\r\n")))
	}
	good := "Subject: =?utf-8?q?Caf=C3=A9?=\nContent-Type: multipart/alternative; boundary=X\n\n" +
		"--X\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\ncode:\n042917\nBye =3D see you.\n" +
		"--X\nContent-Type: text/html\n\n<p>042917</p>\n--X--\n"
	if err := send(good); err != nil {
		t.Fatal(err)
	}
	noText := "Subject: x\nContent-Type: multipart/alternative; boundary=X\n\n--X\nContent-Type: text/html\n\n<p>hi</p>\n--X--\n"
	if err := send(noText); err == nil || !strings.Contains(err.Error(), "554") {
		t.Fatalf("multipart without text/plain: %v, want 554", err)
	}
	m := s.WaitFor(t, func(m Message) bool { return m.Subject == "Café" }, time.Second)
	if m.Seq != 0 || m.From != "a@example.org" || len(m.To) != 1 || m.To[0] != "b@example.org" ||
		AloneOnLine(t, m.Text, CodeLine) != "042917" || !strings.Contains(m.Text, "Bye = see you.") ||
		!strings.Contains(m.HTML, "<p>042917</p>") || len(s.Messages()) != 1 {
		t.Fatalf("%+v", m)
	}
}
