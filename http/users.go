package http

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"selfreset/domain"
	"selfreset/projections"
)

// UserQuery asks for one page of a provider's admin user list.
type UserQuery struct {
	Provider string // normalized provider code
	Search   string // filters login or display name (case-insensitive substring); "" for all
	After    string // keyset cursor: only logins after this one; "" from the start
	Limit    int    // at most this many rows
	// Status keeps only accounts in this status (see UserStatuses); "" for all.
	Status string
	// Sort is SortByLogin (the default when "") or SortByName (display name, then login;
	// the cursor is then AfterName plus After).
	Sort      string
	AfterName string
}

// Sort orders of the admin user list.
const (
	SortByLogin = "login"
	SortByName  = "name"
)

// userStatuses are the statuses the list can be filtered by: the read model's.
var userStatuses = []string{projections.StatusActive, projections.StatusLocked, projections.StatusAdminLocked,
	projections.StatusDeactivated, projections.StatusDeleted}

// validStatus reports whether s is "" or one of userStatuses.
func validStatus(s string) bool {
	return s == "" || slices.Contains(userStatuses, s)
}

// UserSummary is one row of the admin user list. RecoveryEmailMasked is already masked.
type UserSummary struct {
	Login               string
	DisplayName         string
	Status              string
	Roles               []string
	SelfResetEnabled    bool
	SelfResetConfigured bool
	RecoveryEmailMasked string
}

// UserLister reads the admin user list read model, ordered by login.
type UserLister interface {
	ListUsers(ctx context.Context, q UserQuery) ([]UserSummary, error)
}

// PGUserLister reads the projections' admin_users table (projections.AdminUsers, in
// projections.Schema; columns provider, login, display_name, roles as comma-separated text, status,
// self_reset_enabled, self_reset_configured, recovery_email_masked).
type PGUserLister struct {
	db DB
}

var _ UserLister = (*PGUserLister)(nil)

// NewPGUserLister returns a lister on db.
func NewPGUserLister(db DB) *PGUserLister { return &PGUserLister{db: db} }

// The list's queries: keyset pagination on (provider, login) or (provider, display_name,
// login), with the status filter as an equality so the indexes of
// projections/migrations/0007 serve every combination (docs/read-models.md has the plans).
// The first page passes "" as the cursor (every login is greater) rather than skipping
// the condition with an OR, which would keep a cached generic plan from using the cursor
// as an index condition.
const (
	sqlListColumns = `SELECT login, display_name, status, roles,
			self_reset_enabled, self_reset_configured, COALESCE(recovery_email_masked, '')
		FROM ` + projections.Schema + `.admin_users`
	sqlListFilter = `
		  AND ($3::text = '' OR login ILIKE $3::text ESCAPE '\' OR display_name ILIKE $3::text ESCAPE '\')`
	sqlListByLogin = sqlListColumns + `
		WHERE provider = $1 AND login > $2::text` + sqlListFilter + `
		ORDER BY login
		LIMIT $4`
	sqlListByLoginStatus = sqlListColumns + `
		WHERE provider = $1 AND status = $5 AND login > $2::text` + sqlListFilter + `
		ORDER BY login
		LIMIT $4`
	sqlListByName = sqlListColumns + `
		WHERE provider = $1 AND (display_name, login) > ($5::text, $2::text)` + sqlListFilter + `
		ORDER BY display_name, login
		LIMIT $4`
	sqlListByNameStatus = sqlListColumns + `
		WHERE provider = $1 AND status = $5 AND (display_name, login) > ($6::text, $2::text)` + sqlListFilter + `
		ORDER BY display_name, login
		LIMIT $4`
)

// ListUsers implements UserLister with keyset pagination.
func (l *PGUserLister) ListUsers(ctx context.Context, q UserQuery) ([]UserSummary, error) {
	pattern := ""
	if q.Search != "" {
		pattern = "%" + escapeLike(q.Search) + "%"
	}
	sql := map[[2]bool]string{
		{false, false}: sqlListByLogin, {false, true}: sqlListByLoginStatus,
		{true, false}: sqlListByName, {true, true}: sqlListByNameStatus,
	}[[2]bool{q.Sort == SortByName, q.Status != ""}]
	args := []any{q.Provider, q.After, pattern, q.Limit}
	if q.Status != "" {
		args = append(args, q.Status)
	}
	if q.Sort == SortByName {
		args = append(args, q.AfterName)
	}
	rows, err := l.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("http: list users: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (UserSummary, error) {
		var (
			u     UserSummary
			roles string
		)
		err := row.Scan(&u.Login, &u.DisplayName, &u.Status, &roles,
			&u.SelfResetEnabled, &u.SelfResetConfigured, &u.RecoveryEmailMasked)
		u.Roles = splitRoles(roles)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("http: list users: %w", err)
	}
	return out, nil
}

// splitRoles reads the read model's roles column (comma-separated, sorted).
func splitRoles(s string) []string {
	roles := []string{}
	for r := range strings.SplitSeq(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			roles = append(roles, r)
		}
	}
	return roles
}

// escapeLike makes s match literally inside a LIKE pattern with ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// listCursor is where the next page starts: the last row's login, and its display name
// when the list is sorted by name. By login it is encodeCursor of the login (as before
// sorting existed); by name encodeCursor of a JSON pair (name, login).
func listCursor(sort string, last UserSummary) string {
	if sort != SortByName {
		return encodeCursor(last.Login)
	}
	b, _ := json.Marshal([2]string{last.DisplayName, last.Login}) // strings always marshal
	return encodeCursor(string(b))
}

// parseListCursor reads a cursor listCursor gave out for sort into q.
func parseListCursor(sort, cursor string, q *UserQuery) bool {
	if sort != SortByName {
		login, ok := decodeCursor(cursor)
		q.After = login
		return ok
	}
	// A JSON pair of two identifiers, each escaped at most 6 bytes a byte, and the framing.
	text, ok := decodeCursorText(cursor, 12*maxIdentLen+8)
	if !ok {
		return false
	}
	var pair [2]string
	if err := json.Unmarshal([]byte(text), &pair); err != nil || pair[1] == "" ||
		!domain.ValidText(pair[0]) || !domain.ValidText(pair[1]) || len(pair[1]) > maxIdentLen {
		return false
	}
	q.AfterName, q.After = pair[0], pair[1]
	return true
}
