package commands

import (
	"context"
	"crypto/rand"
	"time"

	"selfreset/domain"
	"selfreset/secret"
)

// ---- the User Administrator's tools (issue 9) ----

// CreateUser opens an account with a generated temporary password, which the user must
// change at first sign-in.
type CreateUser struct {
	Actor       domain.Actor
	Provider    string
	Login       string
	DisplayName string
	Roles       []string
}

// TemporaryPassword returns a fresh random temporary password: 26 characters of base32
// (130 bits), shown once to the administrator and never stored but as its hash.
func TemporaryPassword() string { return rand.Text() }

// CreateUser returns the temporary password; it is in no event and no log.
func (h *Handler) CreateUser(ctx context.Context, c CreateUser) (password string, err error) {
	defer h.observe("create_user", time.Now(), &err)
	actor, err := h.refreshActor(ctx, c.Actor)
	if err != nil {
		return "", err
	}
	password = TemporaryPassword()
	err = h.registerUser(ctx, RegisterUser{Actor: actor, Provider: c.Provider, Login: c.Login, DisplayName: c.DisplayName,
		Password: password, Roles: c.Roles}, true)
	if err != nil {
		return "", err
	}
	return password, nil
}

// countUserAdmin counts login among the provider's user administrators (idempotent).
func (h *Handler) countUserAdmin(ctx context.Context, actor domain.Actor, code, login string) error {
	return h.updateProvider(ctx, actor.ID(), code, func(p domain.Provider) ([]domain.Event, error) {
		return p.CountUserAdmin(actor, domain.NormalizeLogin(login))
	})
}

// uncountUserAdmin takes login out of the count first, refused when no other user
// administrator would remain; the role leaves the user's stream only afterwards. When
// that second step fails the count is one short of the truth, which errs on the safe
// side (a revoke may be refused, never wrongly allowed) and a repeat repairs it.
func (h *Handler) uncountUserAdmin(ctx context.Context, actor domain.Actor, code, login string) error {
	return h.updateProvider(ctx, actor.ID(), code, func(p domain.Provider) ([]domain.Event, error) {
		return p.UncountUserAdmin(actor, domain.NormalizeLogin(login))
	})
}

// precheck runs decide on the user as they are now, without appending, so that a
// refusal on the user (not found, forbidden, deleted, self) is reported before the
// provider's count is touched.
func (h *Handler) precheck(ctx context.Context, c UserCommand, actor domain.Actor, decide func(u domain.User, p domain.Provider, a domain.Actor) ([]domain.Event, error)) (domain.User, []domain.Event, error) {
	p, _, err := h.loadProvider(ctx, c.Provider)
	if err != nil {
		return domain.User{}, nil, err
	}
	u, _, err := h.loadUser(ctx, c.Provider, c.Login)
	if err != nil {
		return domain.User{}, nil, err
	}
	events, err := decide(u, p, actor)
	return u, events, err
}

// withoutUserAdmin runs decide (a role revoke or a deletion) after taking the target out
// of the provider's user-administrator count when they hold the role or are counted.
func (h *Handler) withoutUserAdmin(ctx context.Context, c UserCommand, decide func(u domain.User, p domain.Provider, a domain.Actor) ([]domain.Event, error)) error {
	actor, err := h.refreshActor(ctx, c.Actor)
	if err != nil {
		return err
	}
	u, events, err := h.precheck(ctx, c, actor, decide)
	if err != nil {
		return err
	}
	p, err := h.LoadProvider(ctx, c.Provider)
	if err != nil {
		return err
	}
	if p.UserAdmins[u.Login] || (u.Roles[domain.RoleUserAdmin] && !u.Deleted) {
		if err := h.uncountUserAdmin(ctx, actor, c.Provider, c.Login); err != nil {
			return err
		}
	}
	if len(events) == 0 {
		return nil
	}
	return h.updateUser(ctx, actor.ID(), c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		return decide(u, p, actor)
	})
}

// SendPasswordReset is the admin's "Send password reset": a token to the user's
// configured recovery email (the mailer sends it on ResetTokenIssued).
func (h *Handler) SendPasswordReset(ctx context.Context, c UserCommand) (tokenID string, err error) {
	defer h.observe("send_password_reset", time.Now(), &err)
	token, err := h.secrets.Issue(secret.KindResetToken)
	if err != nil {
		return "", err
	}
	err = h.admin(ctx, c, func(u domain.User, p domain.Provider, a domain.Actor) ([]domain.Event, error) {
		return u.AdminSendReset(h.policy, p, a, token, h.clock.Now())
	})
	if err != nil {
		return "", err
	}
	return token.ID, nil
}

// ---- Change Password while signed in ----

// ChangePassword is a signed-in user's own Change Password. The caller checks that the
// new password and its confirmation agree.
type ChangePassword struct {
	SelfUser
	Current, New string
}

// ChangePassword returns the user as the change left them (the caller keeps its own
// session alive under the new SessionEpoch). A wrong current password is
// domain.ErrInvalidCredentials and counts toward the failed-login lock.
func (h *Handler) ChangePassword(ctx context.Context, c ChangePassword) (_ domain.User, err error) {
	defer h.observe("change_password", time.Now(), &err)
	code, login := domain.NormalizeProviderCode(c.Provider), domain.NormalizeLogin(c.Login)
	var (
		checked, currentOK, same bool
		checkedHash, newHash     string
	)
	common := h.common.IsCommon(c.New)
	for range h.tries {
		u, l, err := h.loadUser(ctx, code, login)
		if err != nil {
			return domain.User{}, err
		}
		if !u.Registered {
			return domain.User{}, domain.ErrUserNotFound
		}
		// Verify (and hash) once, again only if the password changed meanwhile.
		if !checked || u.PasswordHash != checkedHash {
			if currentOK, err = h.hasher.Verify(ctx, c.Current, u.PasswordHash); err != nil {
				return domain.User{}, err
			}
			if same, err = h.hasher.Verify(ctx, c.New, u.PasswordHash); err != nil {
				return domain.User{}, err
			}
			checked, checkedHash = true, u.PasswordHash
		}
		cand := domain.PasswordCandidate{Password: c.New, Login: u.Login, IsCommon: common, SameAsCurrent: same}
		if currentOK && newHash == "" && h.policy.CheckPassword(cand) == nil {
			if newHash, err = h.hasher.Hash(ctx, c.New); err != nil {
				return domain.User{}, err
			}
		}
		events, derr := u.ChangePassword(h.policy, domain.PasswordChange{CurrentOK: currentOK, Candidate: cand, Hash: newHash}, h.clock.Now())
		// Settled as for sign-in: a wrong current password counts toward the same lock.
		out, retry, err := h.settlePassword(ctx, code, login, c.actor(), u, l, events, derr)
		if retry {
			continue
		}
		return out, err
	}
	return domain.User{}, ErrTooMuchContention
}
