package mailer_test

import (
	"fmt"
	htmlpkg "html"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"selfreset/domain"
	"selfreset/internal/testkit"
	"selfreset/mailer"
)

func TestRenderer(t *testing.T) {
	var linked []any
	r, err := mailer.NewRenderer("https://reset.example.org/base", mailer.Paths{ResetLink: func(provider, login, email string, issuedAt time.Time) string {
		linked = []any{provider, login, email, issuedAt}
		return "Opaque_ref-1"
	}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	d := mailer.Delivery{EventID: uuid.New(), Stream: "user-ACME-jane", Kind: mailer.MailResetToken, Recipient: "jane@example.org",
		SecretKind: "reset-token", SecretKeyID: "k1", SecretID: "abc", OccurredAt: at, ExpiresAt: at.Add(5 * time.Minute)}

	subject, text, html, err := r.Render(d, "ABCDE12345")
	if err != nil {
		t.Fatal(err)
	}
	if subject != "Your password token" {
		t.Errorf("subject %q", subject)
	}
	if tok := testkit.AloneOnLine(t, text, testkit.TokenLine); tok != "ABCDE12345" {
		t.Errorf("token %q", tok)
	}
	for _, want := range []string{"valid for 5 minutes, until Fri, 27 Nov 2026 at 09:05 UTC",
		"https://reset.example.org/base/change-password/Opaque_ref-1\n", "https://reset.example.org/base/forgot-password",
		"login name jane at provider code ACME"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(html, `href="https://reset.example.org/base/change-password/Opaque_ref-1"`) || !strings.Contains(html, ">ABCDE12345<") {
		t.Errorf("html:\n%s", html)
	}
	// The link names the token's request: the account, its recovery email, the issue time.
	if want := []any{"ACME", "jane", "jane@example.org", at}; fmt.Sprint(linked) != fmt.Sprint(want) {
		t.Errorf("link minted for %v, want %v", linked, want)
	}
	if strings.Contains(text, "login=") || strings.Contains(html, "login=") {
		t.Error("the login is readable in a link")
	}

	// The code email.
	d.Kind, d.SecretKind, d.ExpiresAt = mailer.MailEmailCode, "email-code", at.Add(10*time.Minute)
	subject, text, _, err = r.Render(d, "042917")
	if err != nil {
		t.Fatal(err)
	}
	if subject != "Your Self Password Reset verification code" || testkit.AloneOnLine(t, text, testkit.CodeLine) != "042917" || !strings.Contains(text, "valid for 10 minutes") {
		t.Errorf("%q\n%s", subject, text)
	}

	// A mail with a secret needs its value, and one without must not get one.
	if _, _, _, err := r.Render(d, ""); err == nil {
		t.Error("rendered a code mail without the code")
	}
	plain := mailer.Delivery{EventID: uuid.New(), Stream: "user-ACME-jane", Kind: mailer.MailPasswordChanged, Recipient: "jane@example.org",
		OccurredAt: at, Reason: domain.PasswordChangedBySelfReset}
	if _, _, _, err := r.Render(plain, "ABCDE12345"); err == nil {
		t.Error("rendered a secret into a mail without one")
	}
	subject, text, _, err = r.Render(plain, "")
	if err != nil {
		t.Fatal(err)
	}
	if subject != "Your password was changed" || !strings.Contains(text, "was changed on Fri, 27 Nov 2026 at 09:00 UTC using Self Password Reset") ||
		!strings.Contains(text, "https://reset.example.org/base/login") {
		t.Errorf("%q\n%s", subject, text)
	}
	// The same email follows a signed-in Change Password, saying so.
	plain.Reason = domain.PasswordChangedBySelf
	if _, text, _, err = r.Render(plain, ""); err != nil || !strings.Contains(text, "09:00 UTC in Settings, while signed in.") {
		t.Errorf("signed-in change: %v\n%s", err, text)
	}
}

func TestResetErrorUsesTheSeedsWords(t *testing.T) {
	r, err := mailer.NewRenderer("https://reset.example.org", mailer.Paths{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*domain.Error{domain.ErrProviderNotAllowed, domain.ErrUserNotEnabled, domain.ErrNotConfigured,
		domain.ErrResendAfterExpiry, domain.ErrAdminLocked, domain.ErrDeactivated, domain.ErrDeleted} {
		d := mailer.Delivery{EventID: uuid.New(), Stream: "user-ACME-jane", Kind: mailer.MailResetError, Recipient: "jane@example.org",
			OccurredAt: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC), Reason: e.Code}
		subject, text, html, err := r.Render(d, "")
		if err != nil {
			t.Fatal(err)
		}
		want := strings.ToUpper(e.Message[:1]) + e.Message[1:] + "."
		if subject != "Password Reset Error" || !strings.Contains(text, "\n"+want+"\n") || !strings.Contains(html, htmlpkg.EscapeString(want)) {
			t.Errorf("%s: %q\n%s", e.Code, subject, text)
		}
	}
	// An unknown code still produces a sensible mail.
	d := mailer.Delivery{EventID: uuid.New(), Stream: "user-ACME-jane", Kind: mailer.MailResetError, Recipient: "jane@example.org", Reason: "martian"}
	if _, text, _, err := r.Render(d, ""); err != nil || !strings.Contains(text, "could not issue a Password token") {
		t.Errorf("unknown reason: %v\n%s", err, text)
	}
}

func TestRendererEscapesHTML(t *testing.T) {
	r, err := mailer.NewRenderer("https://reset.example.org", mailer.Paths{})
	if err != nil {
		t.Fatal(err)
	}
	// Stream names are validated upstream; a malformed one renders without account details.
	d := mailer.Delivery{EventID: uuid.New(), Stream: "user-ACME-<script>", Kind: mailer.MailPasswordChanged, Recipient: "jane@example.org"}
	_, _, html, err := r.Render(d, "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, "<script>") {
		t.Errorf("html:\n%s", html)
	}
}

func TestRendererRejectsBadConfiguration(t *testing.T) {
	if _, err := mailer.NewRenderer("reset.example.org", mailer.Paths{}); err == nil {
		t.Error("relative public URL accepted")
	}
}
