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
	password = TemporaryPassword()
	err = h.unit().registerUser(ctx, RegisterUser{Actor: c.Actor, Provider: c.Provider, Login: c.Login, DisplayName: c.DisplayName,
		Password: password, Roles: c.Roles}, true)
	if err != nil {
		return "", err
	}
	return password, nil
}

// countUserAdmin counts login among the provider's user administrators (idempotent).
func (un *unit) countUserAdmin(ctx context.Context, actor domain.Actor, code, login string) error {
	return un.updateProvider(ctx, actor.ID(), code, func(p domain.Provider) ([]domain.Event, error) {
		return p.CountUserAdmin(actor, domain.NormalizeLogin(login))
	})
}

// uncountUserAdmin takes login out of the count first, refused when no other user
// administrator would remain; the role leaves the user's stream only afterwards. When
// that second step fails the count is one short of the truth, which errs on the safe
// side (a revoke may be refused, never wrongly allowed) and a repeat repairs it.
func (un *unit) uncountUserAdmin(ctx context.Context, actor domain.Actor, code, login string) error {
	return un.updateProvider(ctx, actor.ID(), code, func(p domain.Provider) ([]domain.Event, error) {
		return p.UncountUserAdmin(actor, domain.NormalizeLogin(login))
	})
}

// precheck runs decide on the user as they are now, without appending, so that a
// refusal on the user (not found, forbidden, deleted, self) is reported before the
// provider's count is touched.
func (un *unit) precheck(ctx context.Context, c UserCommand, actor domain.Actor, decide func(u domain.User, p domain.Provider, a domain.Actor) ([]domain.Event, error)) (domain.User, domain.Provider, []domain.Event, error) {
	p, _, err := un.provider(ctx, c.Provider)
	if err != nil {
		return domain.User{}, p, nil, err
	}
	u, _, err := un.user(ctx, c.Provider, c.Login)
	if err != nil {
		return domain.User{}, p, nil, err
	}
	events, err := decide(u, p, actor)
	return u, p, events, err
}

// withoutUserAdmin runs decide (a role revoke or a deletion) after taking the target out
// of the provider's user-administrator count when they hold the role or are counted.
// The precheck's folds serve the count and the decision (the unit's views).
func (un *unit) withoutUserAdmin(ctx context.Context, c UserCommand, decide adminDecision) error {
	actor, err := un.refreshActor(ctx, c.Actor)
	if err != nil {
		return err
	}
	u, p, events, err := un.precheck(ctx, c, actor, decide)
	if err != nil {
		return err
	}
	if p.UserAdmins[u.Login] || (u.Roles[domain.RoleUserAdmin] && !u.Deleted) {
		if err := un.uncountUserAdmin(ctx, actor, c.Provider, c.Login); err != nil {
			return err
		}
	}
	if len(events) == 0 {
		return nil
	}
	return un.updateUser(ctx, actor.ID(), c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
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
	err = h.unit().admin(ctx, c, func(u domain.User, p domain.Provider, a domain.Actor) ([]domain.Event, error) {
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
		checked, currentOK bool
		checkedHash        string
	)
	common := h.common.IsCommon(c.New)
	next := &newPasswordWork{hasher: h.hasher, password: c.New}
	un := h.unit()
	for range h.tries {
		u, l, err := un.user(ctx, code, login)
		if err != nil {
			return domain.User{}, err
		}
		if !u.Registered {
			return domain.User{}, domain.ErrUserNotFound
		}
		// Verify once, again only if the password changed meanwhile.
		if !checked || u.PasswordHash != checkedHash {
			if currentOK, err = h.hasher.Verify(ctx, c.Current, u.PasswordHash); err != nil {
				return domain.User{}, err
			}
			checked, checkedHash = true, u.PasswordHash
		}
		cand := domain.PasswordCandidate{Password: c.New, IsCommon: common}
		events, derr := u.ChangePassword(h.policy, domain.PasswordChange{CurrentOK: currentOK, Candidate: cand,
			Work: next.against(ctx, u.PasswordHash)}, h.clock.Now())
		// Settled as for sign-in: a wrong current password counts toward the same lock.
		out, retry, err := un.settlePassword(ctx, code, login, c.actor(), l, events, derr)
		if retry {
			continue
		}
		return out, err
	}
	return domain.User{}, ErrTooMuchContention
}

// newPasswordWork is the hashing a new password needs, for the domain to ask for once
// every cheaper rule passed (domain.PasswordWork): compare it with the current hash, and
// hash it when it differs. It is done once per command: a retry after a lost race reuses
// it while the current hash is the same.
type newPasswordWork struct {
	hasher   PasswordHasher
	password string
	done     bool
	current  string // the hash the work compared with
	same     bool
	hash     string
}

func (w *newPasswordWork) against(ctx context.Context, current string) domain.PasswordWork {
	return func() (bool, string, error) {
		if w.done && w.current == current {
			return w.same, w.hash, nil
		}
		same, err := w.hasher.Verify(ctx, w.password, current)
		if err != nil {
			return false, "", err
		}
		hash := ""
		if !same {
			if hash, err = w.hasher.Hash(ctx, w.password); err != nil {
				return false, "", err
			}
		}
		w.done, w.current, w.same, w.hash = true, current, same, hash
		return same, hash, nil
	}
}
