package commands

import (
	"context"
	"errors"
	"time"

	"selfreset/domain"
	"selfreset/secret"
)

// SelfUser names the signed-in user acting on their own account.
type SelfUser struct {
	Provider, Login string
}

func (s SelfUser) actor() string {
	return domain.UserActorID(domain.NormalizeProviderCode(s.Provider), domain.NormalizeLogin(s.Login))
}

// StartEmailVerification sends a 6-digit code to Email. The caller is responsible for the
// step-up (VerifyPasswordForSettings) that guards the settings flow.
type StartEmailVerification struct {
	SelfUser
	Email string
}

// StartEmailVerification returns the id of the code it issued (the mailer derives the code).
func (h *Handler) StartEmailVerification(ctx context.Context, c StartEmailVerification) (codeID string, err error) {
	defer h.observe("start_email_verification", time.Now(), &err)
	code, err := h.secrets.Issue(secret.KindEmailCode)
	if err != nil {
		return "", err
	}
	err = h.unit().updateUser(ctx, c.actor(), c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		return u.StartEmailVerification(h.policy, p, c.Email, code, h.clock.Now())
	})
	return code.ID, err
}

// VerifyEmailCode checks the code the user typed.
type VerifyEmailCode struct {
	SelfUser
	Code string
}

func (h *Handler) VerifyEmailCode(ctx context.Context, c VerifyEmailCode) (err error) {
	defer h.observe("verify_email_code", time.Now(), &err)
	match := h.secrets.Matcher(secret.KindEmailCode)
	return h.unit().updateUser(ctx, c.actor(), c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		return u.VerifyEmailCode(h.policy, p, c.Code, match, h.clock.Now())
	})
}

// ConfigureSelfReset is the seed's Update.
type ConfigureSelfReset struct {
	SelfUser
}

func (h *Handler) ConfigureSelfReset(ctx context.Context, c ConfigureSelfReset) (err error) {
	defer h.observe("configure_self_reset", time.Now(), &err)
	return h.unit().updateUser(ctx, c.actor(), c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		return u.ConfigureSelfReset(p)
	})
}

// RequestResetToken is the Reset Password page's submission.
type RequestResetToken struct {
	Provider, Login, Email string
	// NoticeEmail is Email encrypted with the server key (domain.NoticeEmailLabel): with
	// it a refusal that cannot tell the owner mails the typed address the fixed
	// "Password Reset Error" text. Nil sends nothing there.
	NoticeEmail []byte
}

// RequestResetToken records the decision either way. The error says what happened, for
// operators and tests; callers facing the public must answer every request alike.
// The returned token id is empty when no token was issued.
func (h *Handler) RequestResetToken(ctx context.Context, c RequestResetToken) (tokenID string, err error) {
	defer h.observe("request_reset_token", time.Now(), &err)
	code, login := domain.NormalizeProviderCode(c.Provider), domain.NormalizeLogin(c.Login)
	token, err := h.secrets.Issue(secret.KindResetToken)
	if err != nil {
		return "", err
	}
	emailHash := h.secrets.HashEmail(c.Email)
	// One fold of the account: an unknown one is found by the decision itself.
	unknown := false
	err = h.unit().decideUser(ctx, domain.ActorAnonymous, code, login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		if unknown = !u.Registered; unknown {
			return nil, domain.ErrUnknownAccount
		}
		return u.RequestResetToken(h.policy, p, domain.ResetRequest{Email: c.Email, EmailHash: emailHash, Token: token, SealedEmail: c.NoticeEmail}, h.clock.Now())
	})
	if unknown {
		err := h.recordUnmatched(ctx, code, login, domain.UnmatchedResetRequest(domain.Clip(code, 64), domain.Clip(login, 64),
			domain.Clip(c.Email, 254), emailHash, c.NoticeEmail, h.clock.Now()))
		if err != nil {
			return "", err
		}
		return "", domain.ErrUnknownAccount
	}
	if err != nil {
		return "", err
	}
	return token.ID, nil
}

// ErrNotForRequest means the account's current token was not issued for the request the
// caller named (ResendResetToken.ForRequest, ResetPassword.ForRequest).
var ErrNotForRequest = errors.New("commands: the account's token was not issued for this request")

// ResendResetToken is the Change Password page's Resend.
type ResendResetToken struct {
	Provider, Login string
	// ForRequest, when set, tells on the account's fold whether its token belongs to the
	// request the caller holds (package reset's reset ids); when it does not, nothing is
	// appended and the answer is ErrNotForRequest. One fold serves that check and the decision.
	ForRequest func(domain.User) bool
}

// ResendResetToken returns the new token's id. An unknown account gets
// domain.ErrUnknownAccount and nothing is recorded (the original request already was).
func (h *Handler) ResendResetToken(ctx context.Context, c ResendResetToken) (tokenID string, err error) {
	defer h.observe("resend_reset_token", time.Now(), &err)
	token, err := h.secrets.Issue(secret.KindResetToken)
	if err != nil {
		return "", err
	}
	err = h.unit().decideUser(ctx, domain.ActorAnonymous, c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		if !u.Registered {
			return nil, domain.ErrUnknownAccount
		}
		if c.ForRequest != nil && !c.ForRequest(u) {
			return nil, ErrNotForRequest
		}
		events, err := u.ResendResetToken(h.policy, p, token, h.clock.Now())
		// A Resend names no email; the owner's notice is keyed by its recipient's hash
		// like every other, so the mailer's per-recipient cap counts it.
		for i, e := range events {
			if r, ok := e.(domain.ResetRequestRejected); ok && r.NotifyEmail != "" {
				r.EmailHash = h.secrets.HashEmail(r.NotifyEmail)
				events[i] = r
			}
		}
		return events, err
	})
	if err != nil {
		return "", err
	}
	return token.ID, nil
}

// ResetPassword is the Change Password page's submission. The caller checks that the new
// password and its confirmation agree.
type ResetPassword struct {
	Provider, Login string
	Token           string
	NewPassword     string
	// ForRequest, when set, tells on the account's fold whether its token belongs to the
	// request the caller holds (package reset's reset ids). When it does not, the try is
	// recorded on the unmatched-requests stream instead (the same work as a wrong token:
	// one fold of the provider and the account, one append) and the answer is
	// ErrNotForRequest. One fold serves that check and the decision.
	ForRequest func(domain.User) bool
}

// ResetPassword lets the domain decide on one fold of the account: the token, then the
// password rules, then (asked for by the domain only when those pass) the hashing.
func (h *Handler) ResetPassword(ctx context.Context, c ResetPassword) (err error) {
	defer h.observe("reset_password", time.Now(), &err)
	code, login := domain.NormalizeProviderCode(c.Provider), domain.NormalizeLogin(c.Login)
	match := h.secrets.Matcher(secret.KindResetToken)
	next := &newPasswordWork{hasher: h.hasher, password: c.NewPassword}
	common := h.common.IsCommon(c.NewPassword)
	unmatched := false
	err = h.unit().updateUser(ctx, domain.ActorAnonymous, code, login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		if unmatched = c.ForRequest != nil && !c.ForRequest(u); unmatched {
			return nil, ErrNotForRequest
		}
		np := domain.NewPassword{Token: c.Token, Candidate: domain.PasswordCandidate{Password: c.NewPassword, IsCommon: common},
			Work: next.against(ctx, u.PasswordHash)}
		return u.ResetPassword(h.policy, p, np, match, h.clock.Now())
	})
	if unmatched {
		if err := h.recordUnmatched(ctx, code, login, domain.ResetTokenRejected{Reason: domain.ReasonNoTokenForRequest,
			Provider: domain.Clip(code, 64), Login: domain.Clip(login, 64)}); err != nil {
			return err
		}
	}
	return err
}
