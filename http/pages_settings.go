package http

import (
	"context"
	"errors"
	"net/http"

	"selfreset/commands"
	"selfreset/domain"
)

// ---- Login and Logout ----

// GET /login
func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	if p, err := s.Authenticate(r); err == nil && p != nil {
		redirect(w, r, PathSettings)
		return
	}
	pg := page{Title: "Login"}
	if r.URL.Query().Get("logged_out") != "" {
		pg.Notice = "You have logged out."
	}
	s.render(w, r, http.StatusOK, "login", pg)
}

// POST /login
func (s *Server) handleLoginSubmit(w http.ResponseWriter, r *http.Request) {
	pg := page{Title: "Login"}
	if e := parsePageForm(r); e != nil {
		pg.Error = sentence(e.Message)
		s.render(w, r, e.Status, "login", pg)
		return
	}
	login, code, password := formValue(r, "login_name"), formValue(r, "provider_code"), r.PostForm.Get("password")
	pg.Form = map[string]string{"login_name": domain.Clip(login, maxIdentLen), "provider_code": domain.Clip(code, maxIdentLen)}
	if login == "" || code == "" || password == "" {
		pg.Error = "Enter your Login Name, Provider Code and Password."
		s.render(w, r, http.StatusBadRequest, "login", pg)
		return
	}
	invalid := func() {
		pg.Error = sentence(domain.ErrInvalidCredentials.Message)
		s.render(w, r, http.StatusUnauthorized, "login", pg)
	}
	if overLong(login, code) {
		invalid()
		return
	}
	if e := s.pageLimit(r, LimitLogin, AccountKey(code, login)); e != nil {
		s.setRetryAfter(w, e)
		pg.Error = sentence(e.Message)
		s.render(w, r, e.Status, "login", pg)
		return
	}
	token, sess, err := s.StartSession(r.Context(), code, login, password)
	if errors.Is(err, domain.ErrInvalidCredentials) {
		invalid()
		return
	}
	if err != nil {
		e := s.pageError(r, err)
		s.setRetryAfter(w, e)
		pg.Error = sentence(e.Message)
		s.render(w, r, e.Status, "login", pg)
		return
	}
	// A browser that was signed in as someone else ends that session: one cookie, one session.
	if old, err := s.Authenticate(r); err == nil && old != nil && old.ViaCookie {
		_ = s.EndSession(r.Context(), old)
	}
	s.SetSessionCookie(w, token, sess.ExpiresAt)
	redirect(w, r, PathSettings)
}

// POST /logout
func (s *Server) handleLogoutSubmit(w http.ResponseWriter, r *http.Request) {
	if p, err := s.Authenticate(r); err == nil && p != nil {
		if err := s.EndSession(r.Context(), p); err != nil && !errors.Is(err, ErrSessionNotFound) {
			s.renderError(w, r, err)
			return
		}
	}
	s.ClearSessionCookie(w)
	redirect(w, r, PathLogin+"?logged_out=1")
}

// ---- Settings ----

// providerAllows reports whether the provider allows Self Password Reset, when the
// command side can tell; otherwise it assumes so and lets the commands refuse.
func (s *Server) providerAllows(ctx context.Context, code string) (bool, error) {
	pl, ok := s.cmds.(providerLoader)
	if !ok {
		return true, nil
	}
	p, err := pl.LoadProvider(ctx, code)
	if err != nil {
		return false, err
	}
	return p.SelfResetAllowed, nil
}

type settingsData struct {
	State        string
	CanConfigure bool
	Why          string
}

// GET /settings
func (s *Server) handleSettingsPage(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	u := p.User
	allowed, err := s.providerAllows(r.Context(), u.Provider)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	var d settingsData
	switch {
	case !allowed:
		d.State, d.Why = "Not available", sentence(domain.ErrProviderNotAllowed.Message)
	case !u.SelfResetEnabled:
		d.State = "Not enabled"
		d.Why = sentence(domain.ErrUserNotEnabled.Message) + " Your User Administrator can enable it."
	case u.Configured:
		d.State, d.CanConfigure = "Configured with "+domain.MaskEmail(u.RecoveryEmail), true
	default:
		d.State, d.CanConfigure = "Enabled, not configured yet", true
	}
	pg := page{Title: "Settings", Tab: "settings", Data: d}
	if r.URL.Query().Get("password_changed") != "" {
		pg.Notice = "Your password was changed. Every other session has been signed out."
	}
	if r.URL.Query().Get("configured") != "" && u.Configured && d.CanConfigure {
		pg.Notice = "Self Password Reset is configured. A Password token for Forgot Password? will be sent to " +
			domain.MaskEmail(u.RecoveryEmail) + "."
	}
	s.render(w, r, http.StatusOK, "settings", pg)
}

// ---- Configure Self Password Reset ----

type configureData struct {
	SteppedUp       bool
	StepUpFor       string
	Configured      bool
	ConfiguredEmail string // masked
	CodePending     bool
	PendingEmail    string // as the user typed it; shown to them only, during the step-up
	CodeValidFor    string
	Verified        bool
	VerifiedEmail   string
}

// configureBlocked is why the user cannot configure at all (nil when they can).
func (s *Server) configureBlocked(ctx context.Context, u domain.User) (*domain.Error, error) {
	allowed, err := s.providerAllows(ctx, u.Provider)
	if err != nil {
		return nil, err
	}
	if !allowed {
		return domain.ErrProviderNotAllowed, nil
	}
	if !u.SelfResetEnabled {
		return domain.ErrUserNotEnabled, nil
	}
	return nil, nil
}

var settingsLink = link{URL: PathSettings, Text: "Back to Settings"}

// renderConfigure shows the configuration page for the user as the event store has them
// now (a command may just have changed them), with an optional error.
func (s *Server) renderConfigure(w http.ResponseWriter, r *http.Request, status int, pg page) {
	p := PrincipalFrom(r.Context())
	u, err := s.cmds.LoadUser(r.Context(), p.Session.Provider, p.Session.Login)
	if err != nil {
		s.renderError(w, r, err, settingsLink)
		return
	}
	blocked, err := s.configureBlocked(r.Context(), u)
	if err != nil {
		s.renderError(w, r, err, settingsLink)
		return
	}
	if blocked != nil {
		s.renderMessage(w, r, http.StatusConflict, "Self Password Reset", sentence(blocked.Message), "", settingsLink)
		return
	}
	now := s.clock.Now()
	d := configureData{SteppedUp: p.Session.SteppedUp(now), StepUpFor: humanDuration(s.cfg.StepUpTTL)}
	if u.Configured {
		d.Configured, d.ConfiguredEmail = true, domain.MaskEmail(u.RecoveryEmail)
	}
	if c := u.Code; c != nil && !c.Dead && now.Before(c.ExpiresAt) {
		d.CodePending, d.PendingEmail, d.CodeValidFor = true, c.Email, humanDuration(c.ExpiresAt.Sub(now))
	}
	if u.VerifiedEmail != "" && !(u.Configured && u.RecoveryEmail == u.VerifiedEmail) {
		d.Verified, d.VerifiedEmail = true, u.VerifiedEmail
	}
	pg.Title, pg.Tab, pg.Data = "Self Password Reset", "settings", d
	s.render(w, r, status, "configure", pg)
}

// GET /settings/self-reset
func (s *Server) handleSelfResetPage(w http.ResponseWriter, r *http.Request) {
	var pg page
	q := r.URL.Query()
	switch {
	case q.Get("reauth") != "":
		pg.Error = sentence(domain.ErrReauthRequired.Message)
	case q.Get("sent") != "":
		pg.Notice = "A 6 digit code was sent to the email. Enter it below and click Submit."
	case q.Get("verified") != "":
		pg.Notice = "Your email is verified. Click Update to complete the configuration."
	}
	s.renderConfigure(w, r, http.StatusOK, pg)
}

// steppedUpForm parses a configure step's form and sends the browser back to step 1
// unless the password was re-entered on this session recently enough. When either fails
// it has answered, and it returns false.
func (s *Server) steppedUpForm(w http.ResponseWriter, r *http.Request) bool {
	if e := parsePageForm(r); e != nil {
		s.configureFailed(w, r, e, nil)
		return false
	}
	if PrincipalFrom(r.Context()).Session.SteppedUp(s.clock.Now()) {
		return true
	}
	redirect(w, r, PathSelfReset+"?reauth=1")
	return false
}

// configureFailed shows a refusal of the configuration flow on its page.
func (s *Server) configureFailed(w http.ResponseWriter, r *http.Request, e *Error, form map[string]string) {
	s.setRetryAfter(w, e)
	s.renderConfigure(w, r, e.Status, page{Error: sentence(e.Message), Reasons: e.Reasons, Form: form})
}

// POST /settings/self-reset/verify-password (step 1: the login Password and Verify)
func (s *Server) handleSelfResetVerifyPassword(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if e := parsePageForm(r); e != nil {
		s.configureFailed(w, r, e, nil)
		return
	}
	password := r.PostForm.Get("password")
	if password == "" {
		s.configureFailed(w, r, NewError(http.StatusBadRequest, CodeBadRequest, "enter your login Password"), nil)
		return
	}
	if e := s.pageLimit(r, LimitReauth, p.accountKey()); e != nil {
		s.configureFailed(w, r, e, nil)
		return
	}
	if _, err := s.StepUp(r.Context(), p, password); err != nil {
		if errors.Is(err, domain.ErrInvalidCredentials) {
			s.configureFailed(w, r, errStepUpFailed, nil)
			return
		}
		s.configureFailed(w, r, s.pageError(r, err), nil)
		return
	}
	redirect(w, r, PathSelfReset)
}

// configureStep serves steps 2 to 4 of the configuration flow, which share their protocol:
// the form is parsed and the session must be stepped up (steppedUpForm); then run does the
// step and names the page to go to next, or its refusal is shown on the page with the form
// values run kept.
func (s *Server) configureStep(run func(r *http.Request, p *Principal) (next string, form map[string]string, e *Error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.steppedUpForm(w, r) {
			return
		}
		next, form, e := run(r, PrincipalFrom(r.Context()))
		if e != nil {
			s.configureFailed(w, r, e, form)
			return
		}
		redirect(w, r, next)
	}
}

// POST /settings/self-reset/email (step 2: Email and Verify, which sends the 6-digit code)
func (s *Server) selfResetEmailStep(r *http.Request, p *Principal) (string, map[string]string, *Error) {
	email := formValue(r, "email")
	form := map[string]string{"email": domain.Clip(email, maxIdentLen)}
	invalid := NewError(http.StatusBadRequest, domain.ErrInvalidInput.Code, "enter a valid email address")
	if email == "" || overLong(email) || !domain.ValidEmail(domain.NormalizeEmail(email)) {
		return "", form, invalid
	}
	_, err := s.cmds.StartEmailVerification(r.Context(), commands.StartEmailVerification{SelfUser: self(p), Email: email})
	if errors.Is(err, domain.ErrInvalidInput) {
		return "", form, invalid
	}
	if err != nil {
		return "", form, s.pageError(r, err)
	}
	return PathSelfReset + "?sent=1", nil, nil
}

// POST /settings/self-reset/email/verify (step 3: the 6-digit code and Submit)
func (s *Server) selfResetCodeStep(r *http.Request, p *Principal) (string, map[string]string, *Error) {
	code := formValue(r, "code")
	if code == "" {
		return "", nil, NewError(http.StatusBadRequest, CodeBadRequest, "enter the 6 digit code from the email")
	}
	if e := s.pageLimit(r, LimitCode, p.accountKey()); e != nil {
		return "", nil, e
	}
	err := s.cmds.VerifyEmailCode(r.Context(), commands.VerifyEmailCode{SelfUser: self(p), Code: domain.Clip(code, 64)})
	if err != nil {
		e := s.pageError(r, err)
		if errors.Is(err, domain.ErrTooManyAttempts) {
			e = &Error{Status: e.Status, Code: e.Code, Message: "too many wrong codes; enter the Email and click Verify again to receive a new code"}
		}
		return "", nil, e
	}
	return PathSelfReset + "?verified=1", nil, nil
}

// POST /settings/self-reset/configure (step 4: Update)
func (s *Server) selfResetConfigureStep(r *http.Request, p *Principal) (string, map[string]string, *Error) {
	if err := s.cmds.ConfigureSelfReset(r.Context(), commands.ConfigureSelfReset{SelfUser: self(p)}); err != nil {
		return "", nil, s.pageError(r, err)
	}
	return PathSettings + "?configured=1", nil, nil
}
