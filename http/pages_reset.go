package http

import (
	"errors"
	"net/http"
	"time"

	"selfreset/domain"
	"selfreset/links"
	"selfreset/reset"
)

// The Forgot Password pages. Like the API (both call the reset package) they never tell
// whether an account matched: the Reset Password page answers every submission with the same
// redirect to the Change Password page of that request (only the reset id differs), and
// Resend decides from the reset id alone.

// resetSentNote is the neutral note on the Change Password page after Submit.
func (s *Server) resetSentNote(again bool) string {
	what := "a Password token was sent"
	if again {
		what = "a new Password token was sent (use the latest one)"
	}
	return "If the details match a configured account, " + what + " to the email; it is valid for " +
		humanDuration(s.tokenTTL()) + "."
}

type forgotData struct {
	ValidFor string
}

func (s *Server) renderForgot(w http.ResponseWriter, r *http.Request, status int, pg page) {
	pg.Title, pg.Data = "Reset Password", forgotData{ValidFor: humanDuration(s.tokenTTL())}
	s.render(w, r, status, "forgot", pg)
}

// GET /forgot-password
func (s *Server) handleForgotPage(w http.ResponseWriter, r *http.Request) {
	s.renderForgot(w, r, http.StatusOK, page{})
}

// POST /forgot-password
func (s *Server) handleForgotSubmit(w http.ResponseWriter, r *http.Request) {
	if e := parsePageForm(r); e != nil {
		s.renderForgot(w, r, e.Status, page{Error: sentence(e.Message)})
		return
	}
	login, code, email := formValue(r, "login_name"), formValue(r, "provider_code"), formValue(r, "email")
	pg := page{Form: map[string]string{"login_name": domain.Clip(login, maxIdentLen),
		"provider_code": domain.Clip(code, maxIdentLen), "email": domain.Clip(email, maxIdentLen)}}
	if login == "" || code == "" || email == "" {
		pg.Error = "Enter your Login Name, Provider Code and Email."
		s.renderForgot(w, r, http.StatusBadRequest, pg)
		return
	}
	if overLong(login, code, email) {
		pg.Error = "The Login Name, Provider Code and Email are at most 254 characters each."
		s.renderForgot(w, r, http.StatusBadRequest, pg)
		return
	}
	if e := s.pageLimit(r, LimitForgot, AccountKey(code, login)); e != nil {
		s.setRetryAfter(w, e)
		pg.Error = sentence(e.Message)
		s.renderForgot(w, r, e.Status, pg)
		return
	}
	a, err := s.resets.RequestReset(r.Context(), code, login, email)
	if err != nil {
		e := s.pageError(r, resetError(err))
		s.setRetryAfter(w, e)
		pg.Error = sentence(e.Message)
		s.renderForgot(w, r, e.Status, pg)
		return
	}
	s.setResetCookie(w, a.ResetID, a.ExpiresIn)
	redirect(w, r, links.ChangePasswordFor(a.ResetID)+"?sent=1")
}

// setResetCookie remembers this browser's latest reset id for the email link. Max-Age
// only (no Expires), so the answer does not depend on the time.
func (s *Server) setResetCookie(w http.ResponseWriter, resetID string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: resetCookieName, Value: resetID, Path: PathChangePassword,
		MaxAge: max(int(ttl/time.Second), 1), HttpOnly: true, Secure: !s.cfg.InsecureCookies, SameSite: http.SameSiteLaxMode})
}

func (s *Server) clearResetCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: resetCookieName, Value: "", Path: PathChangePassword, MaxAge: -1,
		HttpOnly: true, Secure: !s.cfg.InsecureCookies, SameSite: http.SameSiteLaxMode})
}

// GET /change-password?provider=…&login=… (the link in token emails sent before the link
// carried a reset id; today's emails link to /change-password/{reset_id}, which needs no
// cookie)
//
// This browser's latest reset id (a cookie) leads back to its Change Password page.
// Elsewhere the page says where to go.
func (s *Server) handleChangeLanding(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(resetCookieName); err == nil {
		if ref, ok := s.resets.Open(c.Value); ok {
			q := r.URL.Query()
			code, login := q.Get("provider"), q.Get("login")
			if (code == "" || domain.NormalizeProviderCode(code) == ref.Provider) &&
				(login == "" || domain.NormalizeLogin(login) == ref.Login) {
				redirect(w, r, links.ChangePasswordFor(c.Value))
				return
			}
		}
	}
	s.render(w, r, http.StatusOK, "change_landing", page{Title: "Change Password"})
}

type changeData struct {
	ResetID        string
	ValidFor       string
	MinLength      int
	MaxLength      int
	Expired        bool
	ExpiredMessage string
	// ErrorNote and ErrorReasons are the seed's note on the Password Reset Error, shown
	// after Submit (and Resend) beside the neutral note, the same for every request.
	ErrorNote    string
	ErrorReasons []string
}

// renderChange shows the Change Password page of the request ref names.
func (s *Server) renderChange(w http.ResponseWriter, r *http.Request, status int, resetID string, ref reset.Ref, pg page) {
	pol := s.cmds.Policy()
	d := changeData{ResetID: resetID, ValidFor: humanDuration(s.tokenTTL()),
		MinLength: pol.MinPasswordLength, MaxLength: pol.MaxPasswordLength}
	if pg.Notice != "" {
		d.ErrorNote, d.ErrorReasons = domain.ResetErrorNote, domain.ResetErrorReasons
	}
	if s.resets.Expired(ref) {
		d.Expired, d.ExpiredMessage = true, sentence(domain.ErrResendAfterExpiry.Message)
		pg.Notice, d.ErrorNote, d.ErrorReasons = "", "", nil
	}
	pg.Title, pg.Data = "Change Password", d
	s.render(w, r, status, "change", pg)
}

// resetNotFound is the page for a reset id this server did not seal.
func (s *Server) resetNotFound(w http.ResponseWriter, r *http.Request) {
	s.renderMessage(w, r, http.StatusNotFound, "Change Password",
		"This Change Password page is not valid.",
		"Go back to the login page and click Forgot Password? to receive a Password token.",
		link{URL: PathForgotPassword, Text: "Forgot Password?"}, link{URL: PathLogin, Text: "Back to the login page"})
}

// GET /change-password/{reset_id}
func (s *Server) handleChangePage(w http.ResponseWriter, r *http.Request) {
	resetID, ref, ok := s.openReset(w, r, s.resetNotFound)
	if !ok {
		return
	}
	var pg page
	switch q := r.URL.Query(); {
	case q.Get("sent") != "":
		pg.Notice = s.resetSentNote(false)
	case q.Get("resent") != "":
		pg.Notice = s.resetSentNote(true)
	}
	s.renderChange(w, r, http.StatusOK, resetID, ref, pg)
}

// changeForm opens the reset the route names and reads the form posted from its Change
// Password page; fail shows that page again with an error (and the policy's reasons, for
// a rejected password). When ok is false it has answered.
func (s *Server) changeForm(w http.ResponseWriter, r *http.Request) (resetID string, ref reset.Ref, fail func(*Error), ok bool) {
	resetID, ref, ok = s.openReset(w, r, s.resetNotFound)
	if !ok {
		return resetID, ref, nil, false
	}
	fail = func(e *Error) {
		s.setRetryAfter(w, e)
		s.renderChange(w, r, e.Status, resetID, ref, page{Error: sentence(e.Message), Reasons: e.Reasons})
	}
	if e := parsePageForm(r); e != nil {
		fail(e)
		return resetID, ref, fail, false
	}
	return resetID, ref, fail, true
}

// POST /change-password/{reset_id}
func (s *Server) handleChangeSubmit(w http.ResponseWriter, r *http.Request) {
	resetID, ref, fail, ok := s.changeForm(w, r)
	if !ok {
		return
	}
	token := formValue(r, "token")
	newPassword, confirm := r.PostForm.Get("new_password"), r.PostForm.Get("confirm_password")
	if token == "" || newPassword == "" || confirm == "" {
		fail(NewError(http.StatusBadRequest, CodeBadRequest, "enter the Password Token, the New Password and Confirm New Password"))
		return
	}
	if e := s.pageLimit(r, LimitToken, ref.Provider+"/"+ref.Login); e != nil {
		fail(e)
		return
	}
	err := s.completeReset(r.Context(), resetID, token, newPassword, confirm)
	if err == nil {
		s.clearResetCookie(w)
		s.render(w, r, http.StatusOK, "reset_done", page{Title: "Password Reset"})
		return
	}
	if errors.Is(err, ErrResetNotFound) {
		s.resetNotFound(w, r)
		return
	}
	// The reset service answers a wrong token alike whether or not the request matched
	// (invalid_token, or token_expired once the reset id has expired; never
	// too_many_attempts or busy), so the page does too: it words the answer, and
	// renderChange decides the rest from the reset id alone.
	e := s.pageError(r, err)
	if e.Code == domain.ErrTokenExpired.Code {
		e = &Error{Status: e.Status, Code: e.Code, Message: domain.ErrResendAfterExpiry.Message}
	}
	fail(e)
}

// POST /change-password/{reset_id}/resend
func (s *Server) handleResendSubmit(w http.ResponseWriter, r *http.Request) {
	resetID, ref, fail, ok := s.changeForm(w, r)
	if !ok {
		return
	}
	if e := s.pageLimit(r, LimitResend, ref.Provider+"/"+ref.Login); e != nil {
		fail(e)
		return
	}
	a, err := s.resets.ResendReset(r.Context(), resetID)
	err = resetError(err)
	switch {
	case errors.Is(err, ErrResetNotFound):
		s.resetNotFound(w, r)
		return
	case err != nil:
		// After expiry: the seed's "Password Reset Error" message, decided from the reset id alone.
		fail(s.pageError(r, err))
		return
	}
	s.setResetCookie(w, a.ResetID, a.ExpiresIn)
	redirect(w, r, links.ChangePasswordFor(a.ResetID)+"?resent=1")
}
