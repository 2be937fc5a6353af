package commands

import (
	"context"
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
	err = h.updateUser(ctx, c.actor(), c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
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
	return h.updateUser(ctx, c.actor(), c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		return u.VerifyEmailCode(h.policy, p, c.Code, match, h.clock.Now())
	})
}

// ConfigureSelfReset is the seed's Update.
type ConfigureSelfReset struct {
	SelfUser
}

func (h *Handler) ConfigureSelfReset(ctx context.Context, c ConfigureSelfReset) (err error) {
	defer h.observe("configure_self_reset", time.Now(), &err)
	return h.updateUser(ctx, c.actor(), c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
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
	err = h.updateUser(ctx, domain.ActorAnonymous, code, login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
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

// RecordUnmatchedToken records a Password token typed on the Change Password page of a
// request that reached no token (see the reset package). It does the work a wrong token
// on a matched request does (load the provider and the account, append one event), so
// the answer's timing does not tell the two apart.
type RecordUnmatchedToken struct {
	Provider, Login string
}

func (h *Handler) RecordUnmatchedToken(ctx context.Context, c RecordUnmatchedToken) (err error) {
	defer h.observe("record_unmatched_token", time.Now(), &err)
	code, login := domain.NormalizeProviderCode(c.Provider), domain.NormalizeLogin(c.Login)
	if _, _, err := h.loadProvider(ctx, code); err != nil {
		return err
	}
	if _, _, err := h.loadUser(ctx, code, login); err != nil {
		return err
	}
	return h.recordUnmatched(ctx, code, login, domain.ResetTokenRejected{Reason: domain.ReasonNoTokenForRequest,
		Provider: domain.Clip(code, 64), Login: domain.Clip(login, 64)})
}

// ResendResetToken is the Change Password page's Resend.
type ResendResetToken struct {
	Provider, Login string
}

// ResendResetToken returns the new token's id. An unknown account gets
// domain.ErrUnknownAccount and nothing is recorded (the original request already was).
func (h *Handler) ResendResetToken(ctx context.Context, c ResendResetToken) (tokenID string, err error) {
	defer h.observe("resend_reset_token", time.Now(), &err)
	token, err := h.secrets.Issue(secret.KindResetToken)
	if err != nil {
		return "", err
	}
	err = h.updateUser(ctx, domain.ActorAnonymous, c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		if !u.Registered {
			return nil, domain.ErrUnknownAccount
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
}

func (h *Handler) ResetPassword(ctx context.Context, c ResetPassword) (err error) {
	defer h.observe("reset_password", time.Now(), &err)
	match := h.secrets.Matcher(secret.KindResetToken)
	return h.updateUser(ctx, domain.ActorAnonymous, c.Provider, c.Login, func(u domain.User, p domain.Provider) ([]domain.Event, error) {
		now := h.clock.Now()
		// Check the token before spending argon2id time on the new password; a refusal
		// comes with the events that record it.
		if events, err := u.CheckResetToken(h.policy, p, c.Token, match, now); err != nil {
			return events, err
		}
		cand := domain.PasswordCandidate{Password: c.NewPassword, Login: u.Login, IsCommon: h.common.IsCommon(c.NewPassword)}
		if err := h.policy.CheckPassword(cand); err != nil {
			return nil, err
		}
		same, err := h.hasher.Verify(ctx, c.NewPassword, u.PasswordHash)
		if err != nil {
			return nil, err
		}
		cand.SameAsCurrent = same
		hash := ""
		if !same {
			if hash, err = h.hasher.Hash(ctx, c.NewPassword); err != nil {
				return nil, err
			}
		}
		return u.ResetPassword(h.policy, p, domain.NewPassword{Token: c.Token, Candidate: cand, Hash: hash}, match, now)
	})
}
