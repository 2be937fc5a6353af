package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/domain"
)

// AdminUsers is the admin user list (DESIGN §5): per provider and login the display name,
// roles, status, whether self-service reset is enabled and configured, the masked recovery
// email and the last self-service reset; and the providers table.
//
// Each change reads the account's row, folds the event into it in Go and writes the whole
// row back with one portable upsert, so the statements stay the same on any SQL database
// with ON CONFLICT. UserRegistered rewrites every column, so replaying the history over
// existing rows converges on the same rows.
type AdminUsers struct{}

var _ ReadModel = AdminUsers{}

// Name implements Projection.
func (AdminUsers) Name() string { return AdminUsersName }

// Tables implements ReadModel.
func (AdminUsers) Tables() []string { return []string{"providers", "admin_users"} }

// The model's SQL, all of it (tables: migrations/0002_admin_users.up.sql).
const (
	sqlUpsertProvider = `INSERT INTO providers (code, name, self_reset_allowed, updated_at)
		VALUES ($1, $2, false, $3)
		ON CONFLICT (code) DO UPDATE SET name = excluded.name,
			self_reset_allowed = excluded.self_reset_allowed, updated_at = excluded.updated_at`
	sqlSetProviderAllowed = `UPDATE providers SET self_reset_allowed = $2, updated_at = $3 WHERE code = $1`
	sqlSelectAdminUser    = `SELECT display_name, roles, locked, admin_locked, deactivated, deleted,
		self_reset_enabled, self_reset_configured, recovery_email_masked, last_reset_at, registered_at
		FROM admin_users WHERE provider = $1 AND login = $2`
	sqlUpsertAdminUser = `INSERT INTO admin_users (provider, login, display_name, roles, status,
			locked, admin_locked, deactivated, deleted, self_reset_enabled, self_reset_configured,
			recovery_email_masked, last_reset_at, registered_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		ON CONFLICT (provider, login) DO UPDATE SET display_name = excluded.display_name,
			roles = excluded.roles, status = excluded.status, locked = excluded.locked,
			admin_locked = excluded.admin_locked, deactivated = excluded.deactivated,
			deleted = excluded.deleted, self_reset_enabled = excluded.self_reset_enabled,
			self_reset_configured = excluded.self_reset_configured,
			recovery_email_masked = excluded.recovery_email_masked,
			last_reset_at = excluded.last_reset_at, registered_at = excluded.registered_at,
			updated_at = excluded.updated_at`
)

// Account statuses, most severe first.
const (
	StatusActive      = "active"
	StatusLocked      = "locked" // by failed logins; a self-service reset lifts it
	StatusAdminLocked = "admin_locked"
	StatusDeactivated = "deactivated"
	StatusDeleted     = "deleted"
)

// adminUser is one row of admin_users.
type adminUser struct {
	DisplayName string
	Roles       []string
	Locked      bool
	AdminLocked bool
	Deactivated bool
	Deleted     bool
	Enabled     bool
	Configured  bool
	EmailMasked *string
	LastResetAt *time.Time
	Registered  *time.Time
}

func (u adminUser) status() string {
	switch {
	case u.Deleted:
		return StatusDeleted
	case u.Deactivated:
		return StatusDeactivated
	case u.AdminLocked:
		return StatusAdminLocked
	case u.Locked:
		return StatusLocked
	}
	return StatusActive
}

// apply folds e into u and reports whether the row changed.
func (u *adminUser) apply(e domain.Event, at time.Time) bool {
	switch e := e.(type) {
	case domain.UserRegistered:
		*u = adminUser{DisplayName: e.DisplayName, Registered: &at}
		for _, r := range e.Roles {
			u.grant(r)
		}
	case domain.RoleGranted:
		u.grant(e.Role)
	case domain.RoleRevoked:
		u.Roles = slices.DeleteFunc(u.Roles, func(r string) bool { return r == e.Role })
	case domain.SelfResetEnabled:
		u.Enabled = true
	case domain.SelfResetDisabled:
		u.Enabled = false
	case domain.SelfResetConfigured:
		u.Configured = true
		masked := domain.MaskEmail(e.Email)
		u.EmailMasked = &masked
	case domain.PasswordChanged:
		if e.Method != domain.PasswordChangedBySelfReset {
			return false
		}
		t := e.ChangedAt.UTC()
		u.LastResetAt = &t
	case domain.AccountLocked:
		u.Locked = true
	case domain.AccountUnlocked:
		u.Locked = false
	case domain.AccountAdminLocked:
		u.AdminLocked = true
	case domain.AccountAdminUnlocked:
		u.AdminLocked = false
	case domain.AccountDeactivated:
		u.Deactivated = true
	case domain.AccountReactivated:
		u.Deactivated = false
	case domain.AccountDeleted:
		u.Deleted = true
	default:
		return false
	}
	return true
}

func (u *adminUser) grant(role string) {
	if role != "" && !slices.Contains(u.Roles, role) {
		u.Roles = append(u.Roles, role)
		slices.Sort(u.Roles)
	}
}

// Apply implements Projection.
func (AdminUsers) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	at := eventTime(e.Record)
	switch ev := e.Event.(type) {
	case domain.ProviderRegistered:
		_, err := tx.Exec(ctx, sqlUpsertProvider, domain.NormalizeProviderCode(ev.Code), ev.Name, at)
		return err
	case domain.ProviderSelfResetAllowed, domain.ProviderSelfResetRevoked:
		code, err := domain.ParseProviderStream(e.Record.Stream)
		if err != nil {
			return err
		}
		_, isAllowed := ev.(domain.ProviderSelfResetAllowed)
		_, err = tx.Exec(ctx, sqlSetProviderAllowed, code, isAllowed, at)
		return err
	}
	provider, login, err := domain.ParseUserStream(e.Record.Stream)
	if err != nil {
		return nil // not an account's event (e.g. the unmatched-requests stream)
	}
	// Most of an account's events (refusals, failed logins) leave its row alone: skip the
	// read for them. apply reports a change for every event it handles, whatever the row.
	if probe := (adminUser{}); !probe.apply(e.Event, at) {
		return nil
	}
	var u adminUser
	var roles string
	err = tx.QueryRow(ctx, sqlSelectAdminUser, provider, login).Scan(&u.DisplayName, &roles,
		&u.Locked, &u.AdminLocked, &u.Deactivated, &u.Deleted, &u.Enabled, &u.Configured,
		&u.EmailMasked, &u.LastResetAt, &u.Registered)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("read admin_users row: %w", err)
	default:
		if roles != "" {
			u.Roles = strings.Split(roles, ",")
		}
	}
	if !u.apply(e.Event, at) {
		return nil
	}
	_, err = tx.Exec(ctx, sqlUpsertAdminUser, provider, login, u.DisplayName, strings.Join(u.Roles, ","),
		u.status(), u.Locked, u.AdminLocked, u.Deactivated, u.Deleted, u.Enabled, u.Configured,
		u.EmailMasked, u.LastResetAt, u.Registered, at)
	return err
}
