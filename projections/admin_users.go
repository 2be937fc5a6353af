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
	// adminUserFields are the columns an account's row is read back by (adminUser.fields).
	adminUserFields = `display_name, roles, locked, admin_locked, deactivated, deleted,
		self_reset_enabled, self_reset_configured, recovery_email_masked, last_reset_at, registered_at`
	sqlSelectAdminUser = `SELECT ` + adminUserFields + ` FROM admin_users WHERE provider = $1 AND login = $2`
	// sqlSelectAdminUsers reads the rows of the accounts whose providers and logins are
	// given as two arrays.
	sqlSelectAdminUsers = `SELECT provider, login, ` + adminUserFields + ` FROM admin_users
		JOIN unnest($1::text[], $2::text[]) AS k (provider, login) USING (provider, login)`
	adminUserInsert = `INSERT INTO admin_users (provider, login, display_name, roles, status,
			locked, admin_locked, deactivated, deleted, self_reset_enabled, self_reset_configured,
			recovery_email_masked, last_reset_at, registered_at, updated_at) `
	adminUserOnConflict = ` ON CONFLICT (provider, login) DO UPDATE SET display_name = excluded.display_name,
			roles = excluded.roles, status = excluded.status, locked = excluded.locked,
			admin_locked = excluded.admin_locked, deactivated = excluded.deactivated,
			deleted = excluded.deleted, self_reset_enabled = excluded.self_reset_enabled,
			self_reset_configured = excluded.self_reset_configured,
			recovery_email_masked = excluded.recovery_email_masked,
			last_reset_at = excluded.last_reset_at, registered_at = excluded.registered_at,
			updated_at = excluded.updated_at`
	sqlUpsertAdminUser = adminUserInsert + `VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)` +
		adminUserOnConflict
	// sqlUpsertAdminUsers writes many rows at once, one array per column.
	sqlUpsertAdminUsers = adminUserInsert + `SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
			$5::text[], $6::boolean[], $7::boolean[], $8::boolean[], $9::boolean[], $10::boolean[], $11::boolean[],
			$12::text[], $13::timestamptz[], $14::timestamptz[], $15::timestamptz[])` + adminUserOnConflict
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
	default:
		return u.setFlag(e)
	}
	return true
}

// flagEvents are the events that only set (on) or clear (off) one flag of the row; off
// is empty for a flag no event clears.
type flagEvents struct {
	on, off string
	flag    *bool
}

// setFlag folds e into u if it is one of the flag events, and says so.
func (u *adminUser) setFlag(e domain.Event) bool {
	typ := e.EventType()
	for _, f := range []flagEvents{
		{domain.SelfResetEnabled{}.EventType(), domain.SelfResetDisabled{}.EventType(), &u.Enabled},
		{domain.AccountLocked{}.EventType(), domain.AccountUnlocked{}.EventType(), &u.Locked},
		{domain.AccountAdminLocked{}.EventType(), domain.AccountAdminUnlocked{}.EventType(), &u.AdminLocked},
		{domain.AccountDeactivated{}.EventType(), domain.AccountReactivated{}.EventType(), &u.Deactivated},
		{domain.AccountDeleted{}.EventType(), "", &u.Deleted},
	} {
		if typ == f.on || typ == f.off {
			*f.flag = typ == f.on
			return true
		}
	}
	return false
}

func (u *adminUser) grant(role string) {
	if role != "" && !slices.Contains(u.Roles, role) {
		u.Roles = append(u.Roles, role)
		slices.Sort(u.Roles)
	}
}

// fields returns where to scan adminUserFields into; roles receives the roles column,
// for setRoles.
func (u *adminUser) fields(roles *string) []any {
	return []any{&u.DisplayName, roles, &u.Locked, &u.AdminLocked, &u.Deactivated, &u.Deleted, &u.Enabled,
		&u.Configured, &u.EmailMasked, &u.LastResetAt, &u.Registered}
}

// setRoles sets the roles from the roles column (comma-separated).
func (u *adminUser) setRoles(roles string) {
	u.Roles = nil
	if roles != "" {
		u.Roles = strings.Split(roles, ",")
	}
}

// Apply implements Projection.
func (AdminUsers) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	at := eventTime(e.Record)
	if ok, err := applyProvider(ctx, tx, e, at); ok || err != nil {
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
	err = tx.QueryRow(ctx, sqlSelectAdminUser, provider, login).Scan(u.fields(&roles)...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("read admin_users row: %w", err)
	default:
		u.setRoles(roles)
	}
	if !u.apply(e.Event, at) {
		return nil
	}
	_, err = tx.Exec(ctx, sqlUpsertAdminUser, provider, login, u.DisplayName, strings.Join(u.Roles, ","),
		u.status(), u.Locked, u.AdminLocked, u.Deactivated, u.Deleted, u.Enabled, u.Configured,
		u.EmailMasked, u.LastResetAt, u.Registered, at)
	return err
}

// applyProvider writes e to the providers table if it is a provider's event, and says so.
func applyProvider(ctx context.Context, tx pgx.Tx, e Envelope, at time.Time) (bool, error) {
	switch ev := e.Event.(type) {
	case domain.ProviderRegistered:
		_, err := tx.Exec(ctx, sqlUpsertProvider, domain.NormalizeProviderCode(ev.Code), ev.Name, at)
		return true, err
	case domain.ProviderSelfResetAllowed, domain.ProviderSelfResetRevoked:
		code, err := domain.ParseProviderStream(e.Record.Stream)
		if err != nil {
			return true, err
		}
		_, isAllowed := ev.(domain.ProviderSelfResetAllowed)
		_, err = tx.Exec(ctx, sqlSetProviderAllowed, code, isAllowed, at)
		return true, err
	}
	return false, nil
}

// accountKey names an account's row.
type accountKey struct{ provider, login string }

// ApplyPage implements pageApplier: provider events as Apply writes them; the rows of the
// accounts the page changes read in one query, every event folded into its row in order
// as Apply would (the roles round-trip through their column after each event, as they do
// there), and written back in one upsert.
func (AdminUsers) ApplyPage(ctx context.Context, tx pgx.Tx, events []Envelope) error {
	type change struct {
		event domain.Event
		at    time.Time
	}
	var keys []accountKey
	changes := map[accountKey][]change{}
	for _, e := range events {
		at := eventTime(e.Record)
		if ok, err := applyProvider(ctx, tx, e, at); ok || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		provider, login, err := domain.ParseUserStream(e.Record.Stream)
		if err != nil {
			continue
		}
		if probe := (adminUser{}); !probe.apply(e.Event, at) {
			continue
		}
		k := accountKey{provider, login}
		if _, seen := changes[k]; !seen {
			keys = append(keys, k)
		}
		changes[k] = append(changes[k], change{e.Event, at})
	}
	if len(keys) == 0 {
		return nil
	}
	users, err := readAdminUsers(ctx, tx, keys)
	if err != nil {
		return err
	}
	var cols adminUserColumns
	for _, k := range keys {
		u := users[k]
		var at time.Time
		for _, c := range changes[k] {
			u.apply(c.event, c.at)
			u.setRoles(strings.Join(u.Roles, ","))
			at = c.at
		}
		cols.add(k, u, at)
	}
	_, err = tx.Exec(ctx, sqlUpsertAdminUsers, cols.args()...)
	return err
}

// readAdminUsers reads the rows of keys that exist.
func readAdminUsers(ctx context.Context, tx pgx.Tx, keys []accountKey) (map[accountKey]adminUser, error) {
	providers, logins := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		providers[i], logins[i] = k.provider, k.login
	}
	rows, err := tx.Query(ctx, sqlSelectAdminUsers, providers, logins)
	if err != nil {
		return nil, fmt.Errorf("read admin_users rows: %w", err)
	}
	defer rows.Close()
	out := make(map[accountKey]adminUser, len(keys))
	for rows.Next() {
		var k accountKey
		var u adminUser
		var roles string
		if err := rows.Scan(append([]any{&k.provider, &k.login}, u.fields(&roles)...)...); err != nil {
			return nil, fmt.Errorf("read admin_users rows: %w", err)
		}
		u.setRoles(roles)
		out[k] = u
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read admin_users rows: %w", err)
	}
	return out, nil
}

// adminUserColumns holds rows of admin_users column by column, for sqlUpsertAdminUsers.
type adminUserColumns struct {
	provider, login, name, roles, status                      []string
	locked, adminLocked, deactivated, deleted, enabled, confd []bool
	emailMasked                                               []*string
	lastResetAt, registered                                   []*time.Time
	updated                                                   []time.Time
}

func (c *adminUserColumns) add(k accountKey, u adminUser, updated time.Time) {
	c.provider, c.login = append(c.provider, k.provider), append(c.login, k.login)
	c.name, c.roles = append(c.name, u.DisplayName), append(c.roles, strings.Join(u.Roles, ","))
	c.status = append(c.status, u.status())
	c.locked, c.adminLocked = append(c.locked, u.Locked), append(c.adminLocked, u.AdminLocked)
	c.deactivated, c.deleted = append(c.deactivated, u.Deactivated), append(c.deleted, u.Deleted)
	c.enabled, c.confd = append(c.enabled, u.Enabled), append(c.confd, u.Configured)
	c.emailMasked = append(c.emailMasked, u.EmailMasked)
	c.lastResetAt, c.registered = append(c.lastResetAt, u.LastResetAt), append(c.registered, u.Registered)
	c.updated = append(c.updated, updated)
}

func (c *adminUserColumns) args() []any {
	return []any{c.provider, c.login, c.name, c.roles, c.status, c.locked, c.adminLocked, c.deactivated,
		c.deleted, c.enabled, c.confd, c.emailMasked, c.lastResetAt, c.registered, c.updated}
}
