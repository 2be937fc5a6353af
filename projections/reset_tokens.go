package projections

import (
	"context"

	"github.com/jackc/pgx/v5"

	"selfreset/domain"
)

// ResetTokens is the token-validity read model (DESIGN §5): one row per password token
// with its account, issue and expiry times, state (active, used, revoked, superseded) and
// wrong attempts. "Is this token valid now" is
//
//	SELECT 1 FROM reset_tokens WHERE token_id = $1 AND state = 'active' AND expires_at > now()
//
// or the view reset_tokens_valid_now. The command side never relies on it: it decides on
// the aggregate. Expiry is not an event, so an expired token keeps state 'active'.
//
// Every statement is idempotent and ResetTokenIssued rewrites its row, so a replay of the
// history over existing rows converges on the same rows.
type ResetTokens struct{}

// Name implements Projection.
func (ResetTokens) Name() string { return ResetTokensName }

// Tables implements ReadModel.
func (ResetTokens) Tables() []string { return []string{"reset_tokens"} }

// The model's SQL, all of it (table and view: migrations/0003_reset_tokens.up.sql).
const (
	sqlIssueToken = `INSERT INTO reset_tokens (token_id, provider, login, issued_at, expires_at, state,
			wrong_attempts, resend, supersedes, superseded_by, used_at, ended_at, end_reason, updated_at)
		VALUES ($1, $2, $3, $4, $5, 'active', 0, $6, $7, NULL, NULL, NULL, NULL, $8)
		ON CONFLICT (token_id) DO UPDATE SET provider = excluded.provider, login = excluded.login,
			issued_at = excluded.issued_at, expires_at = excluded.expires_at, state = excluded.state,
			wrong_attempts = excluded.wrong_attempts, resend = excluded.resend,
			supersedes = excluded.supersedes, superseded_by = excluded.superseded_by,
			used_at = excluded.used_at, ended_at = excluded.ended_at, end_reason = excluded.end_reason,
			updated_at = excluded.updated_at`
	sqlSupersedeToken = `UPDATE reset_tokens SET state = 'superseded', superseded_by = $2, ended_at = $3,
			end_reason = 'superseded', updated_at = $3
		WHERE token_id = $1 AND state = 'active'`
	sqlTokenWrongAttempts = `UPDATE reset_tokens SET wrong_attempts = $2, updated_at = $3 WHERE token_id = $1`
	sqlRevokeToken        = `UPDATE reset_tokens SET state = 'revoked', ended_at = $2, end_reason = $3, updated_at = $2
		WHERE token_id = $1 AND state = 'active'`
	sqlUseToken = `UPDATE reset_tokens SET state = 'used', used_at = $2, ended_at = $2, end_reason = 'used', updated_at = $2
		WHERE token_id = $1`
)

// Apply implements Projection.
func (ResetTokens) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	provider, login, err := domain.ParseUserStream(e.Record.Stream)
	if err != nil {
		return nil // tokens live on account streams only
	}
	at := eventTime(e.Record)
	switch ev := e.Event.(type) {
	case domain.ResetTokenIssued:
		if ev.Supersedes != "" {
			if _, err := tx.Exec(ctx, sqlSupersedeToken, ev.Supersedes, ev.TokenID, ev.IssuedAt.UTC()); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, sqlIssueToken, ev.TokenID, provider, login, ev.IssuedAt.UTC(), ev.ExpiresAt.UTC(),
			ev.Resend, nullString(ev.Supersedes), at)
		return err
	case domain.ResetTokenRejected:
		// Only wrong guesses count against a token (as on the aggregate); Attempts is the
		// running total, so applying it twice changes nothing.
		if ev.TokenID == "" || ev.Reason != domain.ReasonWrongToken {
			return nil
		}
		_, err := tx.Exec(ctx, sqlTokenWrongAttempts, ev.TokenID, ev.Attempts, at)
		return err
	case domain.ResetTokenRevoked:
		_, err := tx.Exec(ctx, sqlRevokeToken, ev.TokenID, at, nullString(ev.Reason))
		return err
	case domain.PasswordChanged:
		if ev.TokenID == "" {
			return nil
		}
		_, err := tx.Exec(ctx, sqlUseToken, ev.TokenID, ev.ChangedAt.UTC())
		return err
	}
	return nil
}
