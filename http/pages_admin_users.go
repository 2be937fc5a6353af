package http

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/gorilla/mux"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/projections"
)

// The User Administrator's pages beyond the User List (issue 9): one page per user with
// the actions an administrator may take, Create user, and the signed-in Change Password
// in Settings. Every button runs the same command as the API; the page then says what
// happened (read from the user's aggregate, not the read model, which may lag).

// PathNewUser is the Create user page (outside /admin/users/{login}, so no login is shadowed).
const PathNewUser = "/admin/new-user"

func (s *Server) mountAdminPages(page func(http.HandlerFunc) http.Handler) {
	r := s.router
	get, post := http.MethodGet, http.MethodPost
	r.Handle(PathNewUser, page(s.handleNewUserPage)).Methods(get)
	r.Handle(PathNewUser, page(s.handleNewUserSubmit)).Methods(post)
	r.Handle(PathAdminUsers+"/{login}", page(s.handleUserPage)).Methods(get)
	r.Handle(PathAdminUsers+"/{login}/{action}", page(s.handleUserActionSubmit)).Methods(post)
	r.Handle(PathAdminUsers+"/{login}/role/{change}", page(s.handleUserRoleSubmit)).Methods(post)
	r.Handle(PathSettingsPassword, page(s.handlePasswordPage)).Methods(get)
	r.Handle(PathSettingsPassword, page(s.handlePasswordSubmit)).Methods(post)
}

type userPageData struct {
	Login, DisplayName, Status, Email string
	UserAdmin, Enabled, MustChange    bool
	Locked, AdminLocked, Deactivated  bool
	Deleted, Self                     bool
	CanReset                          bool
	WhyNoReset                        string
}

// statusText is the admin list's status of u, as the read model names it.
func statusText(u domain.User) string {
	switch {
	case u.Deleted:
		return projections.StatusDeleted
	case u.Deactivated:
		return projections.StatusDeactivated
	case u.AdminLocked:
		return projections.StatusAdminLocked
	case u.Locked:
		return projections.StatusLocked
	}
	return projections.StatusActive
}

// userPageLink is the way back from a refusal on a user's page.
func userPageLink(login string) link {
	return link{URL: PathAdminUsers + "/" + url.PathEscape(login), Text: "Back to " + login}
}

// doneNotices are what the user page says after each action (?done=…).
var doneNotices = map[string]string{
	"lock": "is now locked. Only a user administrator can unlock the account.", "unlock": "is now unlocked.",
	"deactivate": "is now deactivated.", "reactivate": "is now reactivated.", "delete": "has been deleted.",
	"grant": "now has the User Administrative role.", "revoke": "no longer has the User Administrative role.",
}

// GET /admin/users/{login}
func (s *Server) handleUserPage(w http.ResponseWriter, r *http.Request) {
	p, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	s.renderUserPage(w, r, p, http.StatusOK, domain.NormalizeLogin(mux.Vars(r)["login"]), page{})
}

func (s *Server) renderUserPage(w http.ResponseWriter, r *http.Request, p *Principal, status int, login string, pg page) {
	ctx := r.Context()
	code := p.User.Provider
	back := link{URL: PathAdminUsers, Text: "Back to the User List"}
	var u domain.User
	if domain.ValidLogin(login) {
		var err error
		if u, err = s.cmds.LoadUser(ctx, code, login); err != nil {
			s.renderError(w, r, err, back)
			return
		}
	}
	if !u.Registered {
		s.renderError(w, r, domain.ErrUserNotFound, back)
		return
	}
	prov, err := s.providerAllows(ctx, code)
	if err != nil {
		s.renderError(w, r, err, back)
		return
	}
	d := userPageData{Login: u.Login, DisplayName: u.DisplayName, Status: statusText(u), UserAdmin: u.Roles[domain.RoleUserAdmin],
		Enabled: u.SelfResetEnabled, MustChange: u.MustChangePassword, Locked: u.Locked || u.FailedLogins > 0,
		AdminLocked: u.AdminLocked, Deactivated: u.Deactivated, Deleted: u.Deleted,
		Self: u.Provider == p.User.Provider && u.Login == p.User.Login}
	if u.Configured {
		d.Email = domain.MaskEmail(u.RecoveryEmail)
	}
	switch {
	case !prov:
		d.WhyNoReset = sentence(domain.ErrProviderNotAllowed.Message)
	case !u.SelfResetEnabled:
		d.WhyNoReset = sentence(domain.ErrUserNotEnabled.Message) + " Enable it in the User List first."
	case !u.Configured:
		d.WhyNoReset = sentence(domain.ErrNotConfigured.Message) + " The user configures it in their Settings."
	case !u.Active():
		d.WhyNoReset = "A locked, deactivated or deleted account gets no Password token."
	default:
		d.CanReset = true
	}
	if pg.Notice == "" && pg.Error == "" {
		switch done := r.URL.Query().Get("done"); {
		case done == "reset" && u.Configured:
			pg.Notice = "A Password token was sent to " + d.Email + ". It is valid for " +
				humanDuration(s.cmds.Policy().ResetTokenTTL) + "."
		case doneNotices[done] != "":
			pg.Notice = u.Login + " " + doneNotices[done]
		}
	}
	pg.Title, pg.Tab, pg.Data = "User "+u.Login, "admin", d
	s.render(w, r, status, "user", pg)
}

// userActions are the buttons of the user page and the commands they run.
var userActions = map[string]func(AdminCommands, context.Context, commands.UserCommand) error{
	"lock": AdminCommands.AdminLock, "unlock": AdminCommands.AdminUnlock,
	"deactivate": AdminCommands.Deactivate, "reactivate": AdminCommands.Reactivate,
	"delete": AdminCommands.Delete,
}

// adminPageTarget is adminTarget for the pages: the admin's own provider, {login}, the
// parsed form. When it returns false it has answered.
func (s *Server) adminPageTarget(w http.ResponseWriter, r *http.Request) (*Principal, commands.UserCommand, bool) {
	p, ok := s.requireAdmin(w, r)
	if !ok {
		return nil, commands.UserCommand{}, false
	}
	login := domain.NormalizeLogin(mux.Vars(r)["login"])
	if e := parsePageForm(r); e != nil {
		s.renderError(w, r, e, userPageLink(login))
		return nil, commands.UserCommand{}, false
	}
	if s.adminCmds() == nil {
		s.renderError(w, r, errNotConfigured, settingsLink)
		return nil, commands.UserCommand{}, false
	}
	if !domain.ValidLogin(login) {
		s.renderError(w, r, domain.ErrUserNotFound, link{URL: PathAdminUsers, Text: "Back to the User List"})
		return nil, commands.UserCommand{}, false
	}
	return p, commands.UserCommand{Actor: p.Actor(), Provider: p.User.Provider, Login: login}, true
}

// POST /admin/users/{login}/{action}: lock, unlock, deactivate, reactivate, delete, password-reset
func (s *Server) handleUserActionSubmit(w http.ResponseWriter, r *http.Request) {
	action := mux.Vars(r)["action"]
	run, known := userActions[action]
	if !known && action != "password-reset" {
		s.renderError(w, r, NewError(http.StatusNotFound, CodeNotFound, "no such action"), link{URL: PathAdminUsers, Text: "Back to the User List"})
		return
	}
	p, c, ok := s.adminPageTarget(w, r)
	if !ok {
		return
	}
	var err error
	switch {
	case action == "password-reset":
		_, err = s.sendReset(r.Context(), c)
		action = "reset"
	case action == "delete" && !confirmsLogin(formValue(r, "confirm_login"), c.Login):
		err = errConfirmMismatch
	default:
		err = run(s.adminCmds(), r.Context(), c)
	}
	s.afterUserAction(w, r, p, c.Login, action, err)
}

// POST /admin/users/{login}/role/{grant|revoke}
func (s *Server) handleUserRoleSubmit(w http.ResponseWriter, r *http.Request) {
	change := mux.Vars(r)["change"]
	if change != "grant" && change != "revoke" {
		s.renderError(w, r, NewError(http.StatusNotFound, CodeNotFound, "no such action"), link{URL: PathAdminUsers, Text: "Back to the User List"})
		return
	}
	p, c, ok := s.adminPageTarget(w, r)
	if !ok {
		return
	}
	rc := commands.RoleCommand{UserCommand: c, Role: domain.RoleUserAdmin}
	var err error
	if change == "grant" {
		err = s.adminCmds().GrantRole(r.Context(), rc)
	} else {
		err = s.adminCmds().RevokeRole(r.Context(), rc)
	}
	s.afterUserAction(w, r, p, c.Login, change, err)
}

// afterUserAction shows a refusal on the user's page, or sends the browser there to see
// the outcome. An admin who just gave up their own role goes to Settings instead.
func (s *Server) afterUserAction(w http.ResponseWriter, r *http.Request, p *Principal, login, action string, err error) {
	if err != nil {
		e := s.pageError(r, err)
		s.setRetryAfter(w, e)
		s.renderUserPage(w, r, p, e.Status, login, page{Error: sentence(e.Message)})
		return
	}
	if action == "revoke" && login == p.User.Login {
		redirect(w, r, PathSettings)
		return
	}
	redirect(w, r, PathAdminUsers+"/"+url.PathEscape(login)+"?done="+action)
}

type newUserData struct {
	Created *createdUser
}

type createdUser struct{ Login, Password string }

// GET /admin/new-user
func (s *Server) handleNewUserPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	s.render(w, r, http.StatusOK, "user_new", page{Title: "Create user", Tab: "admin", Data: newUserData{}})
}

// POST /admin/new-user: the temporary password is on this answer only (never stored,
// never in a URL); the page is not cached.
func (s *Server) handleNewUserSubmit(w http.ResponseWriter, r *http.Request) {
	p, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	pg := page{Title: "Create user", Tab: "admin", Data: newUserData{}}
	if e := parsePageForm(r); e != nil {
		pg.Error = sentence(e.Message)
		s.render(w, r, e.Status, "user_new", pg)
		return
	}
	login, name := formValue(r, "login_name"), formValue(r, "display_name")
	pg.Form = map[string]string{"login_name": domain.Clip(login, maxIdentLen), "display_name": domain.Clip(name, 200),
		"user_admin": formValue(r, "user_admin")}
	a := s.adminCmds()
	if a == nil {
		s.renderError(w, r, errNotConfigured, settingsLink)
		return
	}
	norm := domain.NormalizeLogin(login)
	if !domain.ValidLogin(norm) || name == "" || len(name) > 200 {
		pg.Error = "Enter a Login Name (letters, digits and . _ - @) and a name."
		s.render(w, r, http.StatusBadRequest, "user_new", pg)
		return
	}
	var roles []string
	if pg.Form["user_admin"] != "" {
		roles = []string{domain.RoleUserAdmin}
	}
	pw, err := a.CreateUser(r.Context(), commands.CreateUser{Actor: p.Actor(), Provider: p.User.Provider, Login: norm, DisplayName: name, Roles: roles})
	if err != nil {
		e := s.pageError(r, err)
		pg.Error = sentence(e.Message)
		s.render(w, r, e.Status, "user_new", pg)
		return
	}
	pg.Form, pg.Data = nil, newUserData{Created: &createdUser{Login: norm, Password: pw}}
	s.render(w, r, http.StatusOK, "user_new", pg)
}

// ---- Settings: Change Password ----

type passwordPageData struct {
	MinLength, MaxLength int
}

func (s *Server) renderPasswordPage(w http.ResponseWriter, r *http.Request, status int, pg page) {
	pol := s.cmds.Policy()
	pg.Title, pg.Tab, pg.Data = "Change Password", "settings", passwordPageData{MinLength: pol.MinPasswordLength, MaxLength: pol.MaxPasswordLength}
	s.render(w, r, status, "password", pg)
}

// GET /settings/password
func (s *Server) handlePasswordPage(w http.ResponseWriter, r *http.Request) {
	var pg page
	if PrincipalFrom(r.Context()).User.MustChangePassword {
		pg.Notice = "Your password is a temporary one. Choose your own password before you continue."
	}
	s.renderPasswordPage(w, r, http.StatusOK, pg)
}

// POST /settings/password
func (s *Server) handlePasswordSubmit(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	fail := func(e *Error) {
		s.setRetryAfter(w, e)
		s.renderPasswordPage(w, r, e.Status, page{Error: sentence(e.Message), Reasons: e.Reasons})
	}
	if e := parsePageForm(r); e != nil {
		fail(e)
		return
	}
	current, next, confirm := r.PostForm.Get("current_password"), r.PostForm.Get("new_password"), r.PostForm.Get("confirm_password")
	if current == "" || next == "" {
		fail(NewError(http.StatusBadRequest, CodeBadRequest, "enter your current Password and a new one"))
		return
	}
	if next != confirm {
		fail(errPasswordMismatch)
		return
	}
	if e := s.pageLimit(r, LimitReauth, p.accountKey()); e != nil {
		fail(e)
		return
	}
	if err := s.ChangeOwnPassword(r.Context(), p, current, next); err != nil {
		if errors.Is(err, domain.ErrInvalidCredentials) {
			fail(errCurrentPassword)
			return
		}
		fail(s.pageError(r, err))
		return
	}
	redirect(w, r, PathSettings+"?password_changed=1")
}
