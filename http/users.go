package http

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"selfreset/projections"
)

// UserQuery asks for one page of a provider's admin user list.
type UserQuery struct {
	Provider string // normalized provider code
	Search   string // filters login or display name (case-insensitive substring); "" for all
	After    string // keyset cursor: only logins after this one; "" from the start
	Limit    int    // at most this many rows
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
// projections.Schema;
// columns provider, login, display_name, roles as comma-separated text, status,
// self_reset_enabled, self_reset_configured, recovery_email_masked).
type PGUserLister struct {
	db DB
}

var _ UserLister = (*PGUserLister)(nil)

// NewPGUserLister returns a lister on db.
func NewPGUserLister(db DB) *PGUserLister { return &PGUserLister{db: db} }

// ListUsers implements UserLister with keyset pagination on (provider, login).
func (l *PGUserLister) ListUsers(ctx context.Context, q UserQuery) ([]UserSummary, error) {
	pattern := ""
	if q.Search != "" {
		pattern = "%" + escapeLike(q.Search) + "%"
	}
	rows, err := l.db.Query(ctx, sqlListUsers, q.Provider, q.After, pattern, q.Limit)
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

const sqlListUsers = `SELECT login, display_name, status, roles,
		self_reset_enabled, self_reset_configured, COALESCE(recovery_email_masked, '')
	FROM ` + projections.Schema + `.admin_users
	WHERE provider = $1
	  AND ($2::text = '' OR login > $2::text)
	  AND ($3::text = '' OR login ILIKE $3::text ESCAPE '\' OR display_name ILIKE $3::text ESCAPE '\')
	ORDER BY login
	LIMIT $4`

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
