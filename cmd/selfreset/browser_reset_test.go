package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"selfreset/domain"
	"selfreset/internal/testkit"
	"selfreset/mailer"
)

// resetErrorWalk is the Password Reset Error part of the browser walk (issue 9): a wrong
// email gets the error email listing the seed's reasons (and the page shows them); the
// emailed link, opened in a fresh browser profile (its own allocator and user data dir,
// no cookies), shows the Change Password form and completes the reset; a throttled owner
// gets the email saying when to try again. jane has had one token so far; this adds
// three requests, the last of them refused. It starts and ends signed out.
func resetErrorWalk(t *testing.T, ctx context.Context, w *walker, inbox *testkit.SMTPServer, chromium string) {
	t.Helper()
	request := func(email string) int {
		t.Helper()
		w.open("/forgot-password")
		before := len(inbox.Messages())
		w.typeIn("#login_name", "jane")
		w.typeIn("#provider_code", "ACME")
		w.typeIn("#email", email)
		w.click(`form[action="/forgot-password"] button`)
		w.see(append([]string{"If the details match a configured account, a Password token was sent to the email",
			domain.ResetErrorNote}, domain.ResetErrorReasons...)...)
		return before
	}
	mail := func(after int, rcpt, subject string) testkit.Message {
		t.Helper()
		return inbox.WaitFor(t, func(m testkit.Message) bool {
			return m.Seq >= after && m.Subject == subject && len(m.To) == 1 && m.To[0] == rcpt
		}, 60*time.Second)
	}
	errSubject := mailer.Subjects[mailer.MailResetError]

	// ---- A wrong email: the typed address gets the reasons, not which one ----
	wrong := "someone.else@example.net"
	before := request(wrong)
	w.shot("30-change-password-reasons")
	m := mail(before, wrong, errSubject)
	text := strings.ReplaceAll(m.Text, "\r\n", "\n")
	for _, reason := range domain.ResetErrorReasons {
		if !strings.Contains(text, reason) {
			t.Errorf("the error email to the typed address lacks %q:\n%s", reason, text)
		}
	}
	for _, s := range []string{"jane", "ACME"} {
		if strings.Contains(text, s) {
			t.Errorf("the error email to the typed address names the account (%q):\n%s", s, text)
		}
	}

	// ---- The emailed link, in a fresh browser profile ----
	before = request(bwEmail)
	m = mail(before, bwEmail, mailer.Subjects[mailer.MailResetToken])
	token := testkit.AloneOnLine(t, m.Text, testkit.TokenLine)
	link := regexp.MustCompile(regexp.QuoteMeta(w.base) + `(/change-password/[A-Za-z0-9_-]+)`).FindStringSubmatch(m.Text)
	if link == nil {
		t.Fatalf("no Change Password link with a reset id in the token email:\n%s", m.Text)
	}
	if strings.Contains(link[1], "jane") || strings.Contains(link[1], "ACME") {
		t.Errorf("the link shows the account: %s", link[1])
	}
	phone := &walker{t: t, ctx: startBrowser(t, ctx, chromium), base: w.base, shots: w.shots}
	phone.open(link[1])
	phone.see("Change Password", "Password Token", "New Password", "Confirm New Password", "Resend")
	phone.shot("31-fresh-profile-change-password")
	phone.typeIn("#token", token)
	phone.typeIn("#new_password", bwJaneThirdPW)
	phone.typeIn("#confirm_password", bwJaneThirdPW)
	phone.click(`form[action^="/change-password/"]:not(.resend) button`)
	phone.see("Your password has been reset successfully", "Login Again")
	phone.shot("32-fresh-profile-reset")
	phone.login("jane", "ACME", bwJaneThirdPW)

	// ---- Throttled: the owner is told when to try again ----
	before = request(bwEmail) // the third token in 15 minutes
	mail(before, bwEmail, mailer.Subjects[mailer.MailResetToken])
	before = request(bwEmail) // the fourth: refused
	m = mail(before, bwEmail, errSubject)
	text = strings.ReplaceAll(m.Text, "\r\n", "\n")
	if !regexp.MustCompile(`You can ask for a new Password token from Forgot Password\? after \w{3}, \d{1,2} \w{3} \d{4} at \d\d:\d\d UTC\.`).MatchString(text) ||
		!strings.Contains(text, "Too many requests for this account") {
		t.Errorf("the throttled owner's email does not say when to try again:\n%s", text)
	}
}
