package main

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"selfreset/domain"
	"selfreset/internal/testkit"
	"selfreset/mailer"
)

const (
	bwKimNewPW = "Kim-chose-this-one-77"
	bwKimEmail = "kim@example.org"
)

// adminWalk is the User Administrator's part of the browser walk (issue 9): boss creates
// kim (temporary password shown once), kim signs in and must change it first, then
// configures Self Password Reset; boss locks and unlocks kim, sends kim a password reset
// (the token arrives in kim's inbox) and deletes kim with the typed confirmation.
// It starts and ends signed out.
func adminWalk(t *testing.T, ctx context.Context, w *walker, inbox *testkit.SMTPServer) {
	t.Helper()
	// ---- Create user ----
	w.login("boss", "ACME", bwBossPW)
	w.open("/admin/users")
	w.click(`main a[href="/admin/new-user"]`)
	w.see("Create user", "Login Name", "User Administrative role")
	w.typeIn("#login_name", "kim")
	w.typeIn("#display_name", "Kim Lee")
	w.click(`form[action="/admin/new-user"] button`)
	w.see("The user kim was created.", "only this once")
	w.shot("20-admin-user-created")
	temp := w.value("#temporary_password")
	if len(temp) < 20 {
		t.Fatalf("temporary password %q", temp)
	}
	w.waitForRow("/admin/users", "#user-kim")
	w.click(`#user-kim form[action="/admin/users/kim/self-reset/enable"] button`)
	w.see("Self Password Reset is now enabled for kim.")
	w.click(`form[action="/logout"] button`)

	// ---- kim's first sign-in: Change Password before anything else ----
	w.open("/login")
	w.typeIn("#login_name", "kim")
	w.typeIn("#provider_code", "ACME")
	w.typeIn("#password", temp)
	w.click(`form[action="/login"] button[type=submit]`)
	if loc := w.location(); !strings.Contains(loc, "/settings/password") {
		t.Fatalf("after the first sign-in kim is at %s, not Change Password", loc)
	}
	w.see("Your password is a temporary one", "Current Password", "Confirm New Password")
	w.shot("21-first-sign-in-change-password")
	w.typeIn("#current_password", temp)
	w.typeIn("#new_password", bwKimNewPW)
	w.typeIn("#confirm_password", bwKimNewPW)
	w.click(`form[action="/settings/password"] button`)
	w.see("Your password was changed.", "Enabled, not configured yet")
	// Configure, so that a reset has somewhere to go.
	w.click(`main a[href="/settings/self-reset"]`)
	w.typeIn("#password", bwKimNewPW)
	w.click(`form[action="/settings/self-reset/verify-password"] button`)
	sent := len(inbox.Messages())
	w.typeIn("#email", bwKimEmail)
	w.click(`form[action="/settings/self-reset/email"] button`)
	w.typeIn("#code", fromInbox(t, ctx, inbox, sent, bwKimEmail, mailer.Subjects[mailer.MailEmailCode], testkit.CodeLine))
	w.click(`form[action="/settings/self-reset/email/verify"] button`)
	w.click(`form[action="/settings/self-reset/configure"] button`)
	w.see("Configured with " + domain.MaskEmail(bwKimEmail))
	w.click(`form[action="/logout"] button`)

	// ---- Lock, unlock, send password reset, delete ----
	w.login("boss", "ACME", bwBossPW)
	w.open("/admin/users/kim")
	w.see("Kim Lee", "Lock", "Send password reset", "Type the Login Name kim to confirm.")
	w.shot("22-admin-user-page")
	w.click(`form[action="/admin/users/kim/lock"] button`)
	w.see("kim is now locked.", "admin_locked", "Unlock")
	w.shot("23-admin-user-locked")
	w.click(`form[action="/admin/users/kim/unlock"] button`)
	w.see("kim is now unlocked.", "active")
	sent = len(inbox.Messages())
	w.click(`form[action="/admin/users/kim/password-reset"] button`)
	w.see("A Password token was sent to " + domain.MaskEmail(bwKimEmail) + ".")
	w.shot("24-admin-user-reset-sent")
	fromInbox(t, ctx, inbox, sent, bwKimEmail, mailer.Subjects[mailer.MailResetToken], testkit.TokenLine)
	w.typeIn("#confirm_login", "kim")
	w.click(`form[action="/admin/users/kim/delete"] button`)
	w.see("kim has been deleted.", "deleted")
	w.shot("25-admin-user-deleted")
	w.click(`form[action="/logout"] button`)
}

// value is the value of the form field sel (CSS) finds.
func (w *walker) value(sel string) string {
	w.t.Helper()
	ctx, cancel := w.step()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		w.t.Fatalf("value of %s: %v (at %s)", sel, err, w.location())
	}
	return v
}

// waitForRow opens path and reloads it until sel is on it (the read model catches up).
func (w *walker) waitForRow(path, sel string) {
	w.t.Helper()
	w.open(path)
	w.waitFor(sel, "the User List to show "+sel)
}
