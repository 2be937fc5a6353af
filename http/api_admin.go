package http

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"selfreset/commands"
	"selfreset/domain"
)

// Admin user list paging.
const (
	defaultPageSize = 50
	maxPageSize     = 200
	maxSearchLen    = 100
)

type userListItem struct {
	LoginName           string   `json:"login_name"`
	DisplayName         string   `json:"display_name"`
	Status              string   `json:"status"`
	Roles               []string `json:"roles"`
	SelfResetEnabled    bool     `json:"self_reset_enabled"`
	SelfResetConfigured bool     `json:"self_reset_configured"`
	RecoveryEmail       *string  `json:"recovery_email"`
}

type userListResponse struct {
	Users      []userListItem `json:"users"`
	NextCursor *string        `json:"next_cursor"`
}

var errForbidden = &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: domain.ErrForbidden.Message}

// adminOf checks, on the caller's own aggregate, that they administer provider code.
func adminOf(p *Principal, code string) bool {
	return p.Actor().CanAdminister(domain.NormalizeProviderCode(code))
}

// routeProvider is the route's {code}, normalized, when the caller administers that
// provider (checked on their own aggregate). Otherwise it has answered 403 and reports false.
func routeProvider(w http.ResponseWriter, r *http.Request) (*Principal, string, bool) {
	p := PrincipalFrom(r.Context())
	code := domain.NormalizeProviderCode(mux.Vars(r)["code"])
	if !adminOf(p, code) {
		writeAPIError(w, errForbidden)
		return p, code, false
	}
	return p, code, true
}

// routeUser is the user the route's {code} and {login} name, as a command's target by
// the caller. The provider is checked before the login is looked at, so that nobody
// learns which logins exist at providers they do not administer; an invalid login is
// 404. When it reports false it has answered.
func (s *Server) routeUser(w http.ResponseWriter, r *http.Request) (commands.UserCommand, bool) {
	p, code, ok := routeProvider(w, r)
	if !ok {
		return commands.UserCommand{}, false
	}
	login := domain.NormalizeLogin(mux.Vars(r)["login"])
	if !domain.ValidLogin(login) {
		s.WriteError(w, r, domain.ErrUserNotFound)
		return commands.UserCommand{}, false
	}
	return commands.UserCommand{Actor: p.Actor(), Provider: code, Login: login}, true
}

// GET /api/v1/providers/{code}/users
func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request) {
	_, code, ok := routeProvider(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	search := q.Get("q")
	if len(search) > maxSearchLen {
		writeAPIError(w, NewError(http.StatusBadRequest, CodeBadRequest, "q is too long"))
		return
	}
	limit := defaultPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			writeAPIError(w, NewError(http.StatusBadRequest, CodeBadRequest, "limit must be a number from 1 to "+strconv.Itoa(maxPageSize)))
			return
		}
		limit = n
	}
	uq := UserQuery{Provider: code, Search: search, Limit: limit + 1, Status: q.Get("status"), Sort: q.Get("sort")}
	if !validStatus(uq.Status) {
		writeAPIError(w, NewError(http.StatusBadRequest, CodeBadRequest, "status must be one of "+strings.Join(userStatuses, ", ")))
		return
	}
	if uq.Sort != "" && uq.Sort != SortByLogin && uq.Sort != SortByName {
		writeAPIError(w, NewError(http.StatusBadRequest, CodeBadRequest, "sort must be login or name"))
		return
	}
	if v := q.Get("cursor"); v != "" && !parseListCursor(uq.Sort, v, &uq) {
		writeAPIError(w, NewError(http.StatusBadRequest, CodeBadRequest, "cursor is not one this server gave out"))
		return
	}
	if s.cfg.Users == nil {
		s.WriteError(w, r, errNotConfigured)
		return
	}
	rows, err := s.cfg.Users.ListUsers(r.Context(), uq)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	resp := userListResponse{Users: make([]userListItem, 0, min(len(rows), limit))}
	if len(rows) > limit {
		rows = rows[:limit]
		c := listCursor(uq.Sort, rows[limit-1])
		resp.NextCursor = &c
	}
	for _, u := range rows {
		item := userListItem{LoginName: u.Login, DisplayName: u.DisplayName, Status: u.Status, Roles: u.Roles,
			SelfResetEnabled: u.SelfResetEnabled, SelfResetConfigured: u.SelfResetConfigured}
		if item.Roles == nil {
			item.Roles = []string{}
		}
		if u.RecoveryEmailMasked != "" {
			m := u.RecoveryEmailMasked
			item.RecoveryEmail = &m
		}
		resp.Users = append(resp.Users, item)
	}
	WriteJSON(w, http.StatusOK, resp)
}

// adminSelfReset serves PUT (enable) and DELETE (disable)
// /api/v1/providers/{code}/users/{login}/self-reset: 204, or the refusal.
func (s *Server) adminSelfReset(run func(ctx context.Context, c commands.UserCommand) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.routeUser(w, r)
		if !ok {
			return
		}
		if err := run(r.Context(), c); err != nil {
			s.WriteError(w, r, err)
			return
		}
		noContent(w)
	}
}
