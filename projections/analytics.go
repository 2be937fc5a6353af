package projections

import (
	"context"

	"github.com/jackc/pgx/v5"

	"selfreset/domain"
)

// Analytics is the analysts' read model of sign-ins, configuration and enablement (issue
// 10): one fact per sign-in outcome in login_activity_facts and per configuration step in
// configuration_facts (summed per provider per UTC day by the views login_activity_daily
// and configuration_funnel_daily), and one row per period in which self-service reset was
// enabled for an account in enablement_history. Tables and views:
// migrations/0006_analytics.up.sql.
//
// Facts are keyed by the event and inserted with ON CONFLICT DO NOTHING. An enablement
// period is keyed by its SelfResetEnabled event; SelfResetDisabled closes the account's
// open period, which only the next enable can open again, so applying it twice changes
// nothing. Nothing here holds an email address, a hash or an IP; a login typed for an
// account that does not exist is not kept.
type Analytics struct{}

var _ ReadModel = Analytics{}

// Name implements Projection.
func (Analytics) Name() string { return AnalyticsName }

// Tables implements ReadModel.
func (Analytics) Tables() []string {
	return []string{"login_activity_facts", "configuration_facts", "enablement_history"}
}

// Kinds of login_activity_facts.
const (
	LoginSucceededFact = "succeeded"
	LoginFailedFact    = "failed"
	LoginLockedFact    = "locked"
	LoginUnlockedFact  = "unlocked"
)

// Kinds of configuration_facts.
const (
	ConfigCodeSent     = "code_sent"
	ConfigCodeRejected = "code_rejected"
	ConfigVerified     = "verified"
	ConfigConfigured   = "configured"
)

// The model's SQL, all of it.
const (
	sqlInsertLoginFact = `INSERT INTO login_activity_facts
		(event_id, kind, provider, login, day, occurred_at, reason, step_up, failed_attempts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (event_id) DO NOTHING`
	sqlInsertConfigFact = `INSERT INTO configuration_facts
		(event_id, kind, provider, login, day, occurred_at, code_id, reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (event_id) DO NOTHING`
	sqlOpenEnablement = `INSERT INTO enablement_history (enabled_event_id, provider, login, enabled_at, enabled_by)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (enabled_event_id) DO NOTHING`
	sqlCloseEnablement = `UPDATE enablement_history SET disabled_at = $3, disabled_by = $4
		WHERE provider = $1 AND login = $2 AND disabled_at IS NULL`
)

// Apply implements Projection.
func (Analytics) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	at := eventTime(e.Record)
	if domain.IsUnmatchedStream(e.Record.Stream) {
		if ev, ok := e.Event.(domain.LoginFailed); ok && ev.Provider != "" {
			return insertLoginFact(ctx, tx, e, ev.Provider, "", LoginFailedFact, ev.Reason, ev.StepUp, &ev.FailedAttempts)
		}
		return nil
	}
	provider, login, err := domain.ParseUserStream(e.Record.Stream)
	if err != nil {
		return nil // provider events say nothing about accounts
	}
	config := func(kind, codeID string, reason domain.Reason) error {
		_, err := tx.Exec(ctx, sqlInsertConfigFact, e.Record.ID, kind, provider, login, utcDay(at), at,
			nullString(codeID), nullString(reason))
		return err
	}
	switch ev := e.Event.(type) {
	case domain.LoginSucceeded:
		return insertLoginFact(ctx, tx, e, provider, login, LoginSucceededFact, "", false, nil)
	case domain.LoginFailed:
		return insertLoginFact(ctx, tx, e, provider, login, LoginFailedFact, ev.Reason, ev.StepUp, &ev.FailedAttempts)
	case domain.AccountLocked:
		return insertLoginFact(ctx, tx, e, provider, login, LoginLockedFact, "", false, &ev.FailedAttempts)
	case domain.AccountUnlocked:
		return insertLoginFact(ctx, tx, e, provider, login, LoginUnlockedFact, ev.Reason, false, nil)
	case domain.RecoveryEmailCodeSent:
		return config(ConfigCodeSent, ev.CodeID, "")
	case domain.RecoveryEmailCodeRejected:
		return config(ConfigCodeRejected, ev.CodeID, ev.Reason)
	case domain.RecoveryEmailVerified:
		return config(ConfigVerified, ev.CodeID, "")
	case domain.SelfResetConfigured:
		return config(ConfigConfigured, "", "")
	case domain.SelfResetEnabled:
		_, err := tx.Exec(ctx, sqlOpenEnablement, e.Record.ID, provider, login, at, ev.By)
		return err
	case domain.SelfResetDisabled:
		_, err := tx.Exec(ctx, sqlCloseEnablement, provider, login, at, ev.By)
		return err
	}
	return nil
}

func insertLoginFact(ctx context.Context, tx pgx.Tx, e Envelope, provider, login, kind string, reason domain.Reason, stepUp bool, attempts *int) error {
	at := eventTime(e.Record)
	_, err := tx.Exec(ctx, sqlInsertLoginFact, e.Record.ID, kind, domain.NormalizeProviderCode(provider), nullString(login),
		utcDay(at), at, nullString(reason), stepUp, attempts)
	return err
}
