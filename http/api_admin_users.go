package http

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"selfreset/commands"
	"selfreset/domain"
)

// The User Administrator's tools (issue 9) in the JSON API, and the signed-in Change
// Password. Every action runs the same command handlers as the pages and the CLI; each
// refreshes the admin from their own stream and records them as the actor.

// AdminCommands is the part of *commands.Handler behind these routes.
type AdminCommands interface {
	CreateUser(ctx context.Context, c commands.CreateUser) (string, error)
	GrantRole(ctx context.Context, c commands.RoleCommand) error
	RevokeRole(ctx context.Context, c commands.RoleCommand) error
	AdminLock(ctx context.Context, c commands.UserCommand) error
	AdminUnlock(ctx context.Context, c commands.UserCommand) error
	Deactivate(ctx context.Context, c commands.UserCommand) error
	Reactivate(ctx context.Context, c commands.UserCommand) error
	Delete(ctx context.Context, c commands.UserCommand) error
	SendPasswordReset(ctx context.Context, c commands.UserCommand) (string, error)
	ChangePassword(ctx context.Context, c commands.ChangePassword) (domain.User, error)
}

// CodeConfirmMismatch: a deletion's typed confirmation is not the login name.
const CodeConfirmMismatch = "confirmation_mismatch"

var errConfirmMismatch = &Error{Status: http.StatusBadRequest, Code: CodeConfirmMismatch,
	Message: "type the user's login name exactly to confirm the deletion"}

// errCurrentPassword is a signed-in Change Password with the wrong current password.
var errCurrentPassword = &Error{Status: http.StatusUnauthorized, Code: domain.ErrInvalidCredentials.Code,
	Message: "the current password is not correct"}

func (s *Server) adminRoutes(api apiRoutes, auth func(http.Handler) http.Handler) {
	h := func(f http.HandlerFunc) http.Handler { return auth(f) }
	user := "/providers/{code}/users/{login}"
	api.Handle("/providers/{code}/users", h(s.handleCreateUser)).Methods(http.MethodPost)
	api.Handle(user, h(s.handleDeleteUser)).Methods(http.MethodDelete)
	api.Handle(user+"/roles/{role}", h(s.handleGrantRole)).Methods(http.MethodPut)
	api.Handle(user+"/roles/{role}", h(s.handleRevokeRole)).Methods(http.MethodDelete)
	api.Handle(user+"/lock", h(s.adminAction(AdminCommands.AdminLock))).Methods(http.MethodPost)
	api.Handle(user+"/unlock", h(s.adminAction(AdminCommands.AdminUnlock))).Methods(http.MethodPost)
	api.Handle(user+"/deactivate", h(s.adminAction(AdminCommands.Deactivate))).Methods(http.MethodPost)
	api.Handle(user+"/reactivate", h(s.adminAction(AdminCommands.Reactivate))).Methods(http.MethodPost)
	api.Handle(user+"/password-reset", h(s.handleSendPasswordReset)).Methods(http.MethodPost)
	api.Handle("/me/password", h(s.handleChangeMyPassword)).Methods(http.MethodPost)
}

// adminCmds is the command side's administration part; nil when it has none.
func (s *Server) adminCmds() AdminCommands {
	a, _ := s.cmds.(AdminCommands)
	return a
}

// adminTarget is routeUser for the commands only AdminCommands offer: 501 where the
// handler lacks them. When it returns false it has answered.
func (s *Server) adminTarget(w http.ResponseWriter, r *http.Request) (commands.UserCommand, bool) {
	c, ok := s.routeUser(w, r)
	if ok && s.adminCmds() == nil {
		s.WriteError(w, r, errNotConfigured)
		return commands.UserCommand{}, false
	}
	return c, ok
}

// adminAction serves POST …/{login}/lock, unlock, deactivate and reactivate: 204, or the refusal.
func (s *Server) adminAction(run func(a AdminCommands, ctx context.Context, c commands.UserCommand) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.adminTarget(w, r)
		if !ok {
			return
		}
		if !readNoParams(w, r) {
			return
		}
		if err := run(s.adminCmds(), r.Context(), c); err != nil {
			s.WriteError(w, r, err)
			return
		}
		noContent(w)
	}
}

type createUserRequest struct {
	LoginName   string   `json:"login_name"`
	DisplayName string   `json:"display_name"`
	Roles       []string `json:"roles"`
}

type createUserResponse struct {
	LoginName          string `json:"login_name"`
	TemporaryPassword  string `json:"temporary_password"`
	MustChangePassword bool   `json:"must_change_password"`
}

// POST /api/v1/providers/{code}/users
func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	p, code, ok := routeProvider(w, r)
	if !ok {
		return
	}
	a := s.adminCmds()
	if a == nil {
		s.WriteError(w, r, errNotConfigured)
		return
	}
	req, ok := readJSON[createUserRequest](w, r)
	if !ok {
		return
	}
	login := domain.NormalizeLogin(req.LoginName)
	if !domain.ValidLogin(login) || req.DisplayName == "" || len(req.Roles) > 8 {
		writeAPIError(w, NewError(http.StatusBadRequest, domain.ErrInvalidInput.Code,
			"login_name (letters, digits, . _ - @) and display_name are required"))
		return
	}
	pw, err := a.CreateUser(r.Context(), commands.CreateUser{Actor: p.Actor(), Provider: code, Login: login,
		DisplayName: req.DisplayName, Roles: req.Roles})
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	w.Header().Set("Location", APIPrefix+"/providers/"+code+"/users/"+login)
	WriteJSON(w, http.StatusCreated, createUserResponse{LoginName: login, TemporaryPassword: pw, MustChangePassword: true})
}

type deleteUserRequest struct {
	ConfirmLogin string `json:"confirm_login"`
}

// confirmsLogin reports whether typed names login (compared as logins are: case-folded).
func confirmsLogin(typed, login string) bool {
	return typed != "" && domain.NormalizeLogin(typed) == login
}

// DELETE /api/v1/providers/{code}/users/{login}
func (s *Server) handleDeleteUser(w http.ResponseWriter, r *http.Request) {
	c, ok := s.adminTarget(w, r)
	if !ok {
		return
	}
	req, ok := readJSON[deleteUserRequest](w, r)
	if !ok {
		return
	}
	if !confirmsLogin(req.ConfirmLogin, c.Login) {
		writeAPIError(w, errConfirmMismatch)
		return
	}
	if err := s.adminCmds().Delete(r.Context(), c); err != nil {
		s.WriteError(w, r, err)
		return
	}
	noContent(w)
}

// PUT /api/v1/providers/{code}/users/{login}/roles/{role}
func (s *Server) handleGrantRole(w http.ResponseWriter, r *http.Request) {
	s.roleChange(w, r, AdminCommands.GrantRole)
}

// DELETE /api/v1/providers/{code}/users/{login}/roles/{role}
func (s *Server) handleRevokeRole(w http.ResponseWriter, r *http.Request) {
	s.roleChange(w, r, AdminCommands.RevokeRole)
}

func (s *Server) roleChange(w http.ResponseWriter, r *http.Request, run func(AdminCommands, context.Context, commands.RoleCommand) error) {
	c, ok := s.adminTarget(w, r)
	if !ok {
		return
	}
	role := mux.Vars(r)["role"]
	if !domain.KnownRole(role) {
		s.WriteError(w, r, domain.ErrUnknownRole)
		return
	}
	if err := run(s.adminCmds(), r.Context(), commands.RoleCommand{UserCommand: c, Role: role}); err != nil {
		s.WriteError(w, r, err)
		return
	}
	noContent(w)
}

type sendResetResponse struct {
	SentTo           string `json:"sent_to"` // masked recovery email
	ExpiresInSeconds int    `json:"expires_in_seconds"`
}

// POST /api/v1/providers/{code}/users/{login}/password-reset
func (s *Server) handleSendPasswordReset(w http.ResponseWriter, r *http.Request) {
	c, ok := s.adminTarget(w, r)
	if !ok {
		return
	}
	if !readNoParams(w, r) {
		return
	}
	sentTo, err := s.sendReset(r.Context(), c)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusAccepted, sendResetResponse{SentTo: sentTo,
		ExpiresInSeconds: int(s.cmds.Policy().ResetTokenTTL / time.Second)})
}

// sendReset issues the token and returns the masked address it goes to.
func (s *Server) sendReset(ctx context.Context, c commands.UserCommand) (string, error) {
	if _, err := s.adminCmds().SendPasswordReset(ctx, c); err != nil {
		return "", err
	}
	u, err := s.cmds.LoadUser(ctx, c.Provider, c.Login)
	if err != nil {
		return "", err
	}
	return domain.MaskEmail(u.RecoveryEmail), nil
}

type changePasswordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
	ConfirmPassword string `json:"confirm_password"`
}

func (q changePasswordRequest) check() *Error {
	if e := missing("current_password and new_password are required", q.CurrentPassword, q.NewPassword); e != nil {
		return e
	}
	if q.NewPassword != q.ConfirmPassword {
		return errPasswordMismatch
	}
	return nil
}

// POST /api/v1/me/password
func (s *Server) handleChangeMyPassword(w http.ResponseWriter, r *http.Request) {
	p, req, ok := readSelfJSON[changePasswordRequest](s, w, r, LimitReauth)
	if !ok {
		return
	}
	if err := s.ChangeOwnPassword(r.Context(), p, req.CurrentPassword, req.NewPassword); err != nil {
		if errors.Is(err, domain.ErrInvalidCredentials) {
			writeAPIError(w, errCurrentPassword)
			return
		}
		s.WriteError(w, r, err)
		return
	}
	noContent(w)
}

// ChangeOwnPassword changes p's password. The change ends every session of the user
// (their SessionEpoch moves on); p's own session is carried over to the new epoch, so
// only the other sessions end.
func (s *Server) ChangeOwnPassword(ctx context.Context, p *Principal, current, next string) error {
	a := s.adminCmds()
	if a == nil {
		return errNotConfigured
	}
	u, err := a.ChangePassword(ctx, commands.ChangePassword{SelfUser: self(p), Current: current, New: next})
	if err != nil {
		return err
	}
	// A request racing on this session between the change and here found it stale and
	// ended it: the password is changed all the same, and this session is over too.
	if err := s.cfg.Sessions.SetEpoch(ctx, p.Session.ID, u.SessionEpoch); err != nil && !errors.Is(err, ErrSessionNotFound) {
		return err
	}
	p.Session.Epoch, p.User = u.SessionEpoch, u
	return nil
}

// passwordChangeAllowed lists what a session with a temporary password may still do:
// change it, or sign out.
func passwordChangeAllowed(r *http.Request) bool {
	switch r.URL.Path {
	case APIPrefix + "/me/password":
		return r.Method == http.MethodPost
	case APIPrefix + "/sessions/current":
		return r.Method == http.MethodDelete
	case PathSettingsPassword:
		return true
	}
	return false
}

var errPasswordChangeRequired = &Error{Status: http.StatusForbidden, Code: domain.ErrPasswordChangeRequired.Code,
	Message: domain.ErrPasswordChangeRequired.Message + " (POST " + APIPrefix + "/me/password)"}
