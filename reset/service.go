// Package reset is the self-service password reset protocol, shared by the JSON API and
// the HTML pages (DESIGN §2): reset ids, the answers that never tell whether anything
// matched, and the durable intake of the asynchronous commands (request a token, resend
// it) through watermill's cqrs CommandBus over PostgreSQL (see intake.go).
//
// Its answers must not tell whether an account matched (DESIGN §4), so:
//
//   - RequestReset answers with a sealed reset id once the command is durably queued, the
//     same work for every request; a worker decides later.
//   - ResendReset decides from the reset id alone (issued-at + token lifetime), which for
//     a matched request is exactly when its current token expires, since every answer
//     hands back a fresh reset id for the token it sends. The queued command resends only
//     when the account's current token was issued for this request or a later one.
//   - A reset id reaches the account's token only when the request named the account's
//     recovery email (the reset id carries a keyed hash of the email entered) and the
//     current token was issued for this request or a later one. A reset id made with a
//     wrong email, or for someone else's login before their token, never reaches it.
//   - CompleteReset runs the command only for a reset id that reaches the token;
//     otherwise it records the attempt on the unmatched stream (the same work as a wrong
//     token) and answers as an unmatched request would (invalid_token, or token_expired
//     once the reset id has expired). When the command runs, every refusal that a wrong
//     value can cause (a wrong token, the try that uses up the attempts, losing a race
//     with concurrent tries) gets that same answer. Only the right value learns more
//     (used, superseded, revoked, expired, the password policy), as the domain decides.
package reset

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/secret"
)

// Commands is the part of *commands.Handler the reset protocol uses.
type Commands interface {
	RequestResetToken(ctx context.Context, c commands.RequestResetToken) (string, error)
	ResendResetToken(ctx context.Context, c commands.ResendResetToken) (string, error)
	ResetPassword(ctx context.Context, c commands.ResetPassword) error
	Policy() domain.Policy
}

var _ Commands = (*commands.Handler)(nil)

// Sender queues an asynchronous command durably: it returns nil only once the command
// is stored (the intake's *Bus).
type Sender interface {
	Send(ctx context.Context, cmd any) error
}

// Errors the protocol answers with besides domain refusals. The transport maps them.
var (
	// ErrNotFound: the reset id was not sealed by this service.
	ErrNotFound = errors.New("reset: no such password reset")
	// ErrResendExpired: the reset id's token lifetime has passed; start again from
	// Forgot Password.
	ErrResendExpired = errors.New("reset: the password token has expired")
	// ErrPasswordMismatch: the new password and its confirmation differ.
	ErrPasswordMismatch = errors.New("reset: the new password and its confirmation do not match")
	// ErrUnavailable: the command could not be queued (PostgreSQL unreachable); nothing
	// was accepted, the client should try again.
	ErrUnavailable = errors.New("reset: the request could not be stored; try again")
)

// Config wires a Service. Commands, Keyring and Intake are required.
type Config struct {
	Commands Commands
	Keyring  *secret.Keyring
	Clock    domain.Clock // defaults to domain.SystemClock; must be the commands' clock
	Intake   Sender
	Logger   *slog.Logger
	// PublishTimeout bounds queuing one command (default 5s): past it the answer is
	// ErrUnavailable rather than a hang.
	PublishTimeout time.Duration
	// Front, when set, counts the answers in progress for this process's intake worker
	// (WorkerConfig.Front).
	Front *Front
}

// Service is the reset protocol.
type Service struct {
	cmds    Commands
	keys    *secret.Keyring
	clock   domain.Clock
	intake  Sender
	log     *slog.Logger
	timeout time.Duration
	front   *Front
}

// New builds a Service.
func New(c Config) (*Service, error) {
	if c.Commands == nil || c.Keyring == nil || c.Intake == nil {
		return nil, errors.New("reset: New needs Commands, Keyring and Intake")
	}
	c.Clock = cmp.Or[domain.Clock](c.Clock, domain.SystemClock{})
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	return &Service{cmds: c.Commands, keys: c.Keyring, clock: c.Clock, intake: c.Intake, log: c.Logger,
		timeout: c.PublishTimeout, front: c.Front}, nil
}

// Accepted is the answer to a request or resend: the reset id to use from now on and
// how long its token lives.
type Accepted struct {
	ResetID   string
	ExpiresIn time.Duration
}

// TokenTTL is the password token lifetime.
func (s *Service) TokenTTL() time.Duration { return s.cmds.Policy().ResetTokenTTL }

// Policy is the rules the commands enforce (the pages show password lengths).
func (s *Service) Policy() domain.Policy { return s.cmds.Policy() }

// Open checks a reset id; ok is false for anything this service did not seal.
func (s *Service) Open(resetID string) (Ref, bool) { return openResetID(s.keys, resetID) }

// Expired reports whether ref's token lifetime has passed (decided from the id alone).
func (s *Service) Expired(ref Ref) bool {
	return !s.clock.Now().Before(ref.IssuedAt.Add(s.TokenTTL()))
}

// RequestReset is Forgot Password: it queues the command and answers with a reset id
// and the token lifetime, the same whether or not anything matches. ctx's request
// metadata (commands.WithMetadata) travels with the command. The error is ErrUnavailable
// (wrapping the cause) when the command could not be queued.
func (s *Service) RequestReset(ctx context.Context, provider, login, email string) (Accepted, error) {
	defer s.front.answer()()
	code := domain.Clip(domain.NormalizeProviderCode(provider), domain.MaxIdentLen)
	login = domain.Clip(domain.NormalizeLogin(login), domain.MaxIdentLen)
	ref := newResetRef(s.keys, code, login, email, s.clock.Now())
	sealed, err := s.keys.Encrypt(emailLabel, []byte(email))
	if err != nil {
		return Accepted{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := s.send(ctx, &RequestToken{Provider: code, Login: login, SealedEmail: sealed}); err != nil {
		return Accepted{}, err
	}
	return Accepted{ResetID: sealResetID(s.keys, ref), ExpiresIn: s.TokenTTL()}, nil
}

// ResendReset is the Change Password page's Resend. It answers from the reset id alone:
// ErrNotFound, ErrResendExpired, or a fresh reset id and the token lifetime. The command
// is queued either way for a reset id of ours (after expiry the owner of a matched
// request gets a Password Reset Error email), so the work does not depend on a match.
func (s *Service) ResendReset(ctx context.Context, resetID string) (Accepted, error) {
	defer s.front.answer()()
	ref, ok := openResetID(s.keys, resetID)
	if !ok {
		return Accepted{}, ErrNotFound
	}
	now := s.clock.Now()
	if err := s.send(ctx, &ResendToken{ResetID: resetID, RequestedAt: now}); err != nil {
		return Accepted{}, err
	}
	if !now.Before(ref.IssuedAt.Add(s.TokenTTL())) {
		return Accepted{}, ErrResendExpired
	}
	// The fresh id names the same request (and email) at the time of the new token.
	next := ref
	next.IssuedAt = now.Truncate(time.Millisecond)
	return Accepted{ResetID: sealResetID(s.keys, next), ExpiresIn: s.TokenTTL()}, nil
}

func (s *Service) send(ctx context.Context, cmd any) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.intake.Send(ctx, cmd); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// tokenForRequest reports whether u's current token was issued for the request ref names
// (or a later one of the same account), and that request named u's recovery email.
func tokenForRequest(k *secret.Keyring, u domain.User, ref Ref) bool {
	return u.Registered && u.Token != nil && !u.Token.IssuedAt.Before(ref.IssuedAt) &&
		ref.emailMatches(k, u.RecoveryEmail)
}

// unmatchedAnswer is Complete's answer for a request that reached no token:
// domain.ErrInvalidToken, or domain.ErrTokenExpired once the reset id's lifetime has
// passed. It depends on the reset id and the time alone.
func (s *Service) unmatchedAnswer(ref Ref) error {
	if s.Expired(ref) {
		return domain.ErrTokenExpired
	}
	return domain.ErrInvalidToken
}

// sayNothing lists the refusals of ResetPassword that a wrong value (or a concurrent
// one) can cause. They are answered as an unmatched request would be: anything else, such
// as the busy of a lost race, would tell that the reset id reached a token, that is, that
// the login, provider and email all matched. (The domain answers a fifth wrong value with
// invalid_token too; too_many_attempts goes only to whoever then types the right one.)
var sayNothing = []error{domain.ErrInvalidToken, commands.ErrTooMuchContention,
	domain.ErrUnknownAccount, domain.ErrNoActiveToken}

// tokenError maps the refusals of ResetPassword for the request ref names: those in
// sayNothing get the unmatched answer; used, superseded and revoked tokens (which only
// the right value learns) are invalid_token with a plain message saying which.
func (s *Service) tokenError(ref Ref, err error) error {
	for _, e := range sayNothing {
		if errors.Is(err, e) {
			return s.unmatchedAnswer(ref)
		}
	}
	for _, e := range []*domain.Error{domain.ErrTokenUsed, domain.ErrTokenSuperseded, domain.ErrTokenRevoked} {
		if errors.Is(err, e) {
			return &domain.Error{Code: domain.ErrInvalidToken.Code, Message: e.Message}
		}
	}
	return err
}

// CompleteReset is Change Password. It returns the request's Ref and nil when the
// password changed (the caller then ends the user's sessions), or an error: ErrNotFound,
// ErrPasswordMismatch, an invalid_token domain error (wrong, or, to the right value only,
// used, superseded or revoked, said plainly), domain.ErrTokenExpired, a password
// rejection (with reasons), or a store failure. A wrong value gets the same answer, and
// costs the same work, whether or not the request matched: never too_many_attempts or busy.
func (s *Service) CompleteReset(ctx context.Context, resetID, token, newPassword, confirmPassword string) (Ref, error) {
	ref, ok := openResetID(s.keys, resetID)
	if !ok {
		return Ref{}, ErrNotFound
	}
	if newPassword != confirmPassword {
		return ref, ErrPasswordMismatch
	}
	if token == "" || len(token) > 64 {
		return ref, domain.ErrInvalidToken
	}
	// One fold of the account serves both the match and the decision: the command asks
	// tokenForRequest on it, and for a request that reached no token records the try on
	// the unmatched stream (the same work as a wrong token on a matched request, so the
	// answer's timing does not tell the two apart either).
	err := s.cmds.ResetPassword(ctx, commands.ResetPassword{Provider: ref.Provider, Login: ref.Login, Token: token, NewPassword: newPassword,
		ForRequest: func(u domain.User) bool { return tokenForRequest(s.keys, u, ref) }})
	switch {
	case errors.Is(err, commands.ErrNotForRequest):
		return ref, s.unmatchedAnswer(ref)
	case err != nil:
		if errors.Is(err, commands.ErrTooMuchContention) {
			s.log.LogAttrs(ctx, slog.LevelWarn, "password token check lost every race; answered as a wrong token")
		}
		return ref, s.tokenError(ref, err)
	}
	return ref, nil
}
