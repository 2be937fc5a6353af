package http

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gorilla/mux"

	"selfreset/commands"
	"selfreset/domain"
)

// The Admin tab: User → Self Password Reset, the User List with its "Enable/Disable
// Self Pass Reset" column. The list comes from the admin-list read model; the buttons
// run the same commands as the API, decided on the aggregates.

// requireAdmin renders 403 unless the signed-in user administers their own provider.
func (s *Server) requireAdmin(w http.ResponseWriter, r *http.Request) (*Principal, bool) {
	p := PrincipalFrom(r.Context())
	if !adminOf(p, p.User.Provider) {
		s.renderMessage(w, r, http.StatusForbidden, "Not allowed",
			"Only users with the User Administrative role can open the Admin tab.", "", settingsLink)
		return nil, false
	}
	return p, true
}

// GET /admin
func (s *Server) handleAdminPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.requireAdmin(w, r); !ok {
		return
	}
	s.render(w, r, http.StatusOK, "admin", page{Title: "Admin", Tab: "admin"})
}

type userRow struct {
	Login, DisplayName, Status string
	Enabled, Configured        bool
	Email                      string // masked
	Deleted                    bool
}

type userListData struct {
	Provider        string
	ProviderAllowed bool
	Query           string
	Cursor          string
	Status          string
	Sort            string
	Statuses        []string
	Users           []userRow
	FirstURL        string
	NextURL         string
}

// userListQuery is where a list page is: search, status filter, sort, cursor and page size.
type userListQuery struct {
	q, cursor    string
	status, sort string
	limit        int
	uq           UserQuery // decoded cursor, filter and sort
}

func (lq userListQuery) url(cursor string) string {
	v := url.Values{}
	if lq.q != "" {
		v.Set("q", lq.q)
	}
	if lq.status != "" {
		v.Set("status", lq.status)
	}
	if lq.sort != "" && lq.sort != SortByLogin {
		v.Set("sort", lq.sort)
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	if lq.limit != defaultPageSize {
		v.Set("limit", strconv.Itoa(lq.limit))
	}
	if len(v) == 0 {
		return PathAdminUsers
	}
	return PathAdminUsers + "?" + v.Encode()
}

// parseUserListQuery reads q, cursor and limit (as the API's list does) from vals.
func parseUserListQuery(vals url.Values) (userListQuery, *Error) {
	lq := userListQuery{q: vals.Get("q"), cursor: vals.Get("cursor"), status: vals.Get("status"), sort: vals.Get("sort"), limit: defaultPageSize}
	if !validStatus(lq.status) {
		return lq, NewError(http.StatusBadRequest, CodeBadRequest, "choose a status from the list")
	}
	if lq.sort != "" && lq.sort != SortByLogin && lq.sort != SortByName {
		return lq, NewError(http.StatusBadRequest, CodeBadRequest, "choose a sort order from the list")
	}
	lq.uq = UserQuery{Status: lq.status, Sort: lq.sort}
	if len(lq.q) > maxSearchLen {
		return lq, NewError(http.StatusBadRequest, CodeBadRequest, "the search is too long (at most 100 characters)")
	}
	if v := vals.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return lq, NewError(http.StatusBadRequest, CodeBadRequest, "limit must be a number from 1 to "+strconv.Itoa(maxPageSize))
		}
		lq.limit = n
	}
	if lq.cursor != "" && !parseListCursor(lq.sort, lq.cursor, &lq.uq) {
		return lq, NewError(http.StatusBadRequest, CodeBadRequest, "this page of the list is not one this server gave out")
	}
	return lq, nil
}

// GET /admin/users
func (s *Server) handleUserListPage(w http.ResponseWriter, r *http.Request) {
	p, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	lq, e := parseUserListQuery(q)
	if e != nil {
		s.renderMessage(w, r, e.Status, "User List", sentence(e.Message), "", link{URL: PathAdminUsers, Text: "Back to the User List"})
		return
	}
	s.renderUserList(w, r, p, http.StatusOK, lq, domain.NormalizeLogin(q.Get("changed")), "")
}

// renderUserList shows one page of the list. changed names a user whose row is read from
// their aggregate rather than the read model (which may not have caught up with the
// change just made); errText is shown above the list.
func (s *Server) renderUserList(w http.ResponseWriter, r *http.Request, p *Principal, status int, lq userListQuery, changed, errText string) {
	ctx := r.Context()
	code := p.User.Provider
	if s.cfg.Users == nil {
		s.renderError(w, r, errNotConfigured, settingsLink)
		return
	}
	allowed, err := s.providerAllows(ctx, code)
	if err != nil {
		s.renderError(w, r, err, settingsLink)
		return
	}
	uq := lq.uq
	uq.Provider, uq.Search, uq.Limit = code, lq.q, lq.limit+1
	rows, err := s.cfg.Users.ListUsers(ctx, uq)
	if err != nil {
		s.renderError(w, r, err, settingsLink)
		return
	}
	d := userListData{Provider: code, ProviderAllowed: allowed, Query: lq.q, Cursor: lq.cursor, FirstURL: lq.url(""),
		Status: lq.status, Sort: lq.sort, Statuses: userStatuses}
	if len(rows) > lq.limit {
		rows = rows[:lq.limit]
		d.NextURL = lq.url(listCursor(lq.sort, rows[lq.limit-1]))
	}
	pg := page{Title: "User List", Tab: "admin", Error: errText}
	for _, u := range rows {
		row := userRow{Login: u.Login, DisplayName: u.DisplayName, Status: u.Status, Enabled: u.SelfResetEnabled,
			Configured: u.SelfResetConfigured, Email: u.RecoveryEmailMasked, Deleted: u.Status == "deleted"}
		if changed != "" && u.Login == changed {
			row, pg.Notice = s.freshRow(ctx, code, row)
		}
		d.Users = append(d.Users, row)
	}
	pg.Data = d
	s.render(w, r, status, "users", pg)
}

// freshRow reads a user's row from their aggregate, and says what their state now is.
func (s *Server) freshRow(ctx context.Context, code string, row userRow) (userRow, string) {
	u, err := s.cmds.LoadUser(ctx, code, row.Login)
	if err != nil || !u.Registered {
		return row, ""
	}
	row.Enabled, row.Configured, row.Deleted = u.SelfResetEnabled, u.Configured, u.Deleted
	row.Email = ""
	if u.Configured && u.RecoveryEmail != "" {
		row.Email = domain.MaskEmail(u.RecoveryEmail)
	}
	state := "disabled"
	if u.SelfResetEnabled {
		state = "enabled"
	}
	return row, "Self Password Reset is now " + state + " for " + u.Login + "."
}

// userSelfResetSubmit serves POST /admin/users/{login}/self-reset/enable and …/disable:
// back to the User List page the form came from, or that page with the refusal.
func (s *Server) userSelfResetSubmit(run func(ctx context.Context, c commands.UserCommand) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.requireAdmin(w, r)
		if !ok {
			return
		}
		if e := parsePageForm(r); e != nil {
			s.renderError(w, r, e, link{URL: PathAdminUsers, Text: "Back to the User List"})
			return
		}
		lq, e := parseUserListQuery(r.PostForm)
		if e != nil {
			lq = userListQuery{limit: defaultPageSize}
		}
		code, login := p.User.Provider, domain.NormalizeLogin(mux.Vars(r)["login"])
		var err error
		if !domain.ValidLogin(login) {
			err = domain.ErrUserNotFound
		} else {
			err = run(r.Context(), commands.UserCommand{Actor: p.Actor(), Provider: code, Login: login})
		}
		if err != nil {
			pe := s.pageError(r, err)
			s.renderUserList(w, r, p, pe.Status, lq, "", sentence(pe.Message))
			return
		}
		target := lq.url(lq.cursor)
		sep := "?"
		if target != PathAdminUsers {
			sep = "&"
		}
		redirect(w, r, target+sep+"changed="+url.QueryEscape(login)+"#user-"+url.PathEscape(login))
	}
}
