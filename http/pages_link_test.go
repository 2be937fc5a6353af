package http

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"selfreset/reset"
)

// TestEmailLinkOnAnotherDevice: the token email's link (reset.LinkID, as the mailer
// mints it) opens Change Password in a browser that never saw the Reset Password page,
// with no cookie; Resend works there, and the reset completes. Neither the link nor the
// reset ids show the login or the provider.
func TestEmailLinkOnAnotherDevice(t *testing.T) {
	e := pgPageEnv(t, nil)
	e.enableAndConfigure("jane", janePW, "jane@example.org")
	desk := e.browser()
	r := desk.do(http.MethodPost, "/forgot-password", url.Values{"login_name": {"jane"}, "provider_code": {"ACME"}, "email": {"jane@example.org"}}, nil)
	deskID := resetIDOf(t, r)
	e.drain()
	u := e.user("ACME", "jane")
	link := reset.LinkID(e.keyring, "ACME", "jane", u.RecoveryEmail, u.Token.IssuedAt)
	for _, id := range []string{deskID, link} {
		raw, _ := base64.RawURLEncoding.DecodeString(id)
		for _, s := range []string{"jane", "ACME", "example"} {
			if strings.Contains(id, s) || strings.Contains(string(raw), s) {
				t.Errorf("%q readable in reset id %q", s, id)
			}
		}
	}

	phone := e.browser() // a fresh cookie jar: nothing from the desk
	page := phone.do(http.MethodGet, "/change-password/"+link, nil, nil)
	isPage(t, page, http.StatusOK, "Password Token", "New Password", "Resend")
	if c := page.header.Get("Set-Cookie"); c != "" {
		t.Errorf("the page set a cookie: %q", c)
	}

	// Resend from the phone: a fresh token, and a fresh reset id for this page.
	e.clock.Add(time.Minute)
	r = phone.do(http.MethodPost, "/change-password/"+link+"/resend", url.Values{}, nil)
	phoneID := resetIDOf(t, r)
	e.drain()
	token := e.resetToken("ACME", "jane")
	if e.user("ACME", "jane").Token.IssuedAt.Equal(u.Token.IssuedAt) {
		t.Fatal("Resend from the link's page issued no new token")
	}

	// The new token completes the reset through the id Resend handed the phone.
	newPW := "Phone-pass-6672"
	r = phone.do(http.MethodPost, "/change-password/"+phoneID, url.Values{"token": {token}, "new_password": {newPW}, "confirm_password": {newPW}}, nil)
	isPage(t, r, http.StatusOK, "Your password has been reset successfully.")
	e.login("ACME", "jane", newPW)
}
