package commands

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"selfreset/domain"
	"selfreset/eventstore"
)

// ---- providers ----

// RegisterProvider opens a provider (operators only).
type RegisterProvider struct {
	Actor          domain.Actor
	Code, Name     string
	AllowSelfReset bool
}

func (h *Handler) RegisterProvider(ctx context.Context, c RegisterProvider) (err error) {
	defer h.observe("register_provider", time.Now(), &err)
	code := domain.NormalizeProviderCode(c.Code)
	if !domain.ValidProviderCode(code) {
		return domain.ErrInvalidInput
	}
	return h.unit().updateProvider(ctx, c.Actor.ID(), code, func(p domain.Provider) ([]domain.Event, error) {
		events, err := p.RegisterProvider(c.Actor, code, c.Name)
		if err != nil || !c.AllowSelfReset {
			return events, err
		}
		for _, e := range events {
			p.Apply(e)
		}
		more, err := p.AllowSelfReset(c.Actor)
		return append(events, more...), err
	})
}

// ProviderCommand names a provider and who acts on it.
type ProviderCommand struct {
	Actor domain.Actor
	Code  string
}

func (h *Handler) AllowProviderSelfReset(ctx context.Context, c ProviderCommand) (err error) {
	defer h.observe("allow_provider_self_reset", time.Now(), &err)
	return h.unit().updateProvider(ctx, c.Actor.ID(), c.Code, func(p domain.Provider) ([]domain.Event, error) {
		return p.AllowSelfReset(c.Actor)
	})
}

func (h *Handler) RevokeProviderSelfReset(ctx context.Context, c ProviderCommand) (err error) {
	defer h.observe("revoke_provider_self_reset", time.Now(), &err)
	return h.unit().updateProvider(ctx, c.Actor.ID(), c.Code, func(p domain.Provider) ([]domain.Event, error) {
		return p.RevokeSelfReset(c.Actor)
	})
}

// ---- administering users ----

// RegisterUser opens an account with an initial password.
type RegisterUser struct {
	Actor       domain.Actor
	Provider    string
	Login       string
	DisplayName string
	Password    string
	Roles       []string
}

func (h *Handler) RegisterUser(ctx context.Context, c RegisterUser) (err error) {
	defer h.observe("register_user", time.Now(), &err)
	return h.unit().registerUser(ctx, c, false)
}

// registerUser registers the account for the actor refreshed from their own stream and,
// when it holds the User Administrative role, counts it on the provider's stream.
// temporary marks the password as one to change.
func (un *unit) registerUser(ctx context.Context, c RegisterUser, temporary bool) error {
	h := un.h
	actor, err := un.refreshActor(ctx, c.Actor)
	if err != nil {
		return err
	}
	c.Actor = actor
	login := domain.NormalizeLogin(c.Login)
	if !domain.ValidLogin(login) || !domain.ValidProviderCode(domain.NormalizeProviderCode(c.Provider)) {
		return domain.ErrInvalidInput
	}
	if err := h.policy.CheckPassword(domain.PasswordCandidate{Password: c.Password, Login: login, IsCommon: h.common.IsCommon(c.Password)}); err != nil {
		return err
	}
	hash, err := h.hasher.Hash(ctx, c.Password)
	if err != nil {
		return err
	}
	err = un.updateUser(ctx, c.Actor.ID(), c.Provider, login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		return u.RegisterUser(p, c.Actor, domain.RegisterUserCommand{Login: login, DisplayName: c.DisplayName, PasswordHash: hash,
			Roles: c.Roles, MustChangePassword: temporary})
	})
	if err != nil || !slices.Contains(c.Roles, domain.RoleUserAdmin) {
		return err
	}
	return un.countUserAdmin(ctx, c.Actor, c.Provider, login)
}

// UserCommand names a user and who acts on them.
type UserCommand struct {
	Actor    domain.Actor
	Provider string
	Login    string
}

// RoleCommand grants or revokes a role.
type RoleCommand struct {
	UserCommand
	Role string
}

// GrantRole gives the role on the user's stream, then counts a user administrator on the
// provider's (again when the role was already held, which repairs an interrupted grant).
func (h *Handler) GrantRole(ctx context.Context, c RoleCommand) (err error) {
	defer h.observe("grant_role", time.Now(), &err)
	un := h.unit()
	actor, err := un.refreshActor(ctx, c.Actor)
	if err != nil {
		return err
	}
	err = un.updateUser(ctx, actor.ID(), c.Provider, c.Login, func(u domain.User, _ domain.Provider) ([]domain.Event, error) {
		return u.GrantRole(actor, c.Role)
	})
	if err != nil || c.Role != domain.RoleUserAdmin {
		return err
	}
	return un.countUserAdmin(ctx, actor, c.Provider, c.Login)
}

// RevokeRole takes the role away; the User Administrative role never from the provider's
// last user administrator (see uncountUserAdmin).
func (h *Handler) RevokeRole(ctx context.Context, c RoleCommand) (err error) {
	defer h.observe("revoke_role", time.Now(), &err)
	decide := byActor(func(u domain.User, a domain.Actor) ([]domain.Event, error) { return u.RevokeRole(a, c.Role) })
	if c.Role != domain.RoleUserAdmin {
		return h.unit().admin(ctx, c.UserCommand, decide)
	}
	return h.unit().withoutUserAdmin(ctx, c.UserCommand, decide)
}

func (h *Handler) EnableSelfReset(ctx context.Context, c UserCommand) error {
	return h.adminCommand(ctx, "enable_self_reset", c, domain.User.EnableSelfReset)
}

func (h *Handler) DisableSelfReset(ctx context.Context, c UserCommand) error {
	return h.adminCommand(ctx, "disable_self_reset", c, byActor(domain.User.DisableSelfReset))
}

func (h *Handler) AdminLock(ctx context.Context, c UserCommand) error {
	return h.adminCommand(ctx, "admin_lock", c, byActor(domain.User.AdminLock))
}

func (h *Handler) AdminUnlock(ctx context.Context, c UserCommand) error {
	return h.adminCommand(ctx, "admin_unlock", c, byActor(domain.User.AdminUnlock))
}

func (h *Handler) Deactivate(ctx context.Context, c UserCommand) error {
	return h.adminCommand(ctx, "deactivate", c, byActor(domain.User.Deactivate))
}

func (h *Handler) Reactivate(ctx context.Context, c UserCommand) error {
	return h.adminCommand(ctx, "reactivate", c, byActor(domain.User.Reactivate))
}

// Delete ends the account; a user administrator's only when another remains.
func (h *Handler) Delete(ctx context.Context, c UserCommand) (err error) {
	defer h.observe("delete", time.Now(), &err)
	return h.unit().withoutUserAdmin(ctx, c, byActor(domain.User.Delete))
}

// adminCommand observes (under name) and runs one administrative decision.
func (h *Handler) adminCommand(ctx context.Context, name string, c UserCommand, decide adminDecision) (err error) {
	defer h.observe(name, time.Now(), &err)
	return h.unit().admin(ctx, c, decide)
}

// adminDecision is an administrative decision on a user of a provider, by an actor.
type adminDecision func(u domain.User, p domain.Provider, actor domain.Actor) ([]domain.Event, error)

// byActor is an adminDecision for a domain method that needs no provider.
func byActor(decide func(domain.User, domain.Actor) ([]domain.Event, error)) adminDecision {
	return func(u domain.User, _ domain.Provider, a domain.Actor) ([]domain.Event, error) { return decide(u, a) }
}

// admin runs an administrative decision after refreshing a signed-in actor from their own
// stream, so a revoked admin role or a locked admin account takes effect at once.
func (un *unit) admin(ctx context.Context, c UserCommand, decide adminDecision) error {
	actor, err := un.refreshActor(ctx, c.Actor)
	if err != nil {
		return err
	}
	return un.updateUser(ctx, actor.ID(), c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		return decide(u, p, actor)
	})
}

// refreshActor reads a signed-in actor from their own stream (once per command: when
// they act on their own account, the decision reuses this fold).
func (un *unit) refreshActor(ctx context.Context, a domain.Actor) (domain.Actor, error) {
	if a.System {
		return a, nil
	}
	u, _, err := un.user(ctx, a.Provider, a.Login)
	if err != nil {
		return a, err
	}
	if !u.Registered {
		return a, domain.ErrForbidden
	}
	return domain.UserActor(u), nil
}

// ---- signing in ----

// Login checks credentials. SessionID is recorded on success so auditors can follow a session.
type Login struct {
	Provider, Login, Password string
	SessionID                 string
}

// Login returns the signed-in user, or domain.ErrInvalidCredentials for every kind of
// refusal (unknown user, wrong password, any lock) so callers cannot tell them apart;
// only the right password on an admin-locked or deactivated account learns
// domain.ErrAccountAdminLocked (see User.SignInRefusal).
func (h *Handler) Login(ctx context.Context, c Login) (_ domain.User, err error) {
	defer h.observe("login", time.Now(), &err)
	return h.authenticate(ctx, c.Provider, c.Login, c.Password, func(u domain.User, ok bool) ([]domain.Event, error) {
		return u.SignIn(h.policy, ok, c.SessionID)
	})
}

// VerifyPasswordForSettings is the settings page's re-entry of the login password.
type VerifyPasswordForSettings struct {
	Provider, Login, Password string
}

func (h *Handler) VerifyPasswordForSettings(ctx context.Context, c VerifyPasswordForSettings) (err error) {
	defer h.observe("verify_password_for_settings", time.Now(), &err)
	_, err = h.authenticate(ctx, c.Provider, c.Login, c.Password, func(u domain.User, ok bool) ([]domain.Event, error) {
		return u.ReconfirmPassword(h.policy, ok)
	})
	return err
}

func (h *Handler) authenticate(ctx context.Context, code, login, password string, decide func(u domain.User, ok bool) ([]domain.Event, error)) (domain.User, error) {
	code, login = domain.NormalizeProviderCode(code), domain.NormalizeLogin(login)
	actor := domain.UserActorID(code, login)
	var checked, verified bool
	var verifiedHash string
	un := h.unit()
	for range h.tries {
		u, l, err := un.user(ctx, code, login)
		if err != nil {
			return domain.User{}, err
		}
		// Verify once (again only if the hash changed meanwhile), and even without an
		// account, against a dummy hash, so that timing tells nothing.
		if !checked || u.PasswordHash != verifiedHash {
			if verified, err = h.hasher.Verify(ctx, password, u.PasswordHash); err != nil {
				return domain.User{}, err
			}
			checked, verifiedHash = true, u.PasswordHash
		}
		if !u.Registered {
			err := h.recordUnmatched(ctx, code, login, domain.LoginFailed{Reason: domain.ReasonUnknownAccount, Provider: domain.Clip(code, 64), Login: domain.Clip(login, 64)})
			if err != nil {
				return domain.User{}, err
			}
			return domain.User{}, domain.ErrInvalidCredentials
		}
		events, derr := decide(u, verified)
		if refined := u.SignInRefusal(verified); derr != nil && refined != nil {
			derr = refined
		}
		out, retry, err := un.settlePassword(ctx, code, login, actor, l, events, derr)
		if retry {
			continue
		}
		return out, err
	}
	// Only a caller holding the right password gets here.
	return domain.User{}, ErrTooMuchContention
}

// settlePassword appends the outcome of a password-checked decision on the account folded
// at l: a refusal is recorded with recordFailedPassword and returned; a success is
// appended at l's revision and the account returned as it left it. retry reports a lost
// race: fold and decide again.
func (un *unit) settlePassword(ctx context.Context, code, login, actor string, l loaded, events []domain.Event, derr error) (out domain.User, retry bool, err error) {
	if derr != nil {
		if err := un.recordFailedPassword(ctx, code, login, actor, events); err != nil {
			return domain.User{}, false, err
		}
		return domain.User{}, false, derr
	}
	err = un.appendUser(ctx, code, login, l.expected(), actor, events)
	if errors.Is(err, eventstore.ErrConflict) {
		return domain.User{}, true, nil
	}
	if err != nil {
		return domain.User{}, false, err
	}
	// The view moved on with the append (or, if another writer slipped in between, is
	// folded afresh: what the caller gets back is then the stream as it stands).
	out, _, err = un.user(ctx, code, login)
	return out, false, err
}

// recordFailedPassword records a refused password check (sign-in, step-up, the signed-in
// Change Password) and then the failed-login lock if it is due. The refusal is appended
// without an expected revision: racing failures must neither escape the count nor answer
// differently from an unknown account (which never conflicts). The fold counts them, so
// stale numbers are harmless.
func (un *unit) recordFailedPassword(ctx context.Context, code, login, actor string, events []domain.Event) error {
	if err := un.appendUser(ctx, code, login, eventstore.Any, actor, events); err != nil {
		return err
	}
	return un.lockIfDue(ctx, code, login, actor)
}

// lockIfDue appends the failed-login lock when the folded count calls for it
// (domain.User.LockDue), with an expected revision: of racing attempts exactly one lock
// lands, and the others reload, see it and append nothing. Should the races outlast the
// retries, the count itself still refuses every sign-in, and the next attempt records
// the lock. The first round decides on the view the refusal left when no other writer
// came in between; otherwise, and after a conflict, on a fresh fold.
func (un *unit) lockIfDue(ctx context.Context, code, login, actor string) error {
	for range lockTries * un.h.tries {
		u, l, err := un.user(ctx, code, login)
		if err != nil {
			return err
		}
		events := u.LockDue(un.h.policy)
		if len(events) == 0 {
			return nil
		}
		err = un.appendUser(ctx, code, login, l.expected(), actor, events)
		if !errors.Is(err, eventstore.ErrConflict) {
			return err
		}
	}
	un.h.log.LogAttrs(ctx, slog.LevelWarn, "failed-login lock not recorded under contention; the next attempt records it",
		slog.String("stream", domain.UserStream(code, login)))
	return nil
}

// lockTries multiplies the handler's retries for the lock: a burst of wrong passwords
// conflicts with it once per racing refusal, and each retry is one stream read.
const lockTries = 4
