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

// Name implements Projection.
func (Analytics) Name() string { return AnalyticsName }

// Tables implements ReadModel.
func (Analytics) Tables() []string {
	return []string{loginFacts().name, configFacts().name, "enablement_history"}
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

// The model's fact tables and the SQL of its enablement periods.
func loginFacts() factTable {
	return newFactTable("login_activity_facts", "event_id",
		column{"reason", "text"}, column{"step_up", "boolean"}, column{"failed_attempts", "integer"})
}

func configFacts() factTable {
	return newFactTable("configuration_facts", "event_id", column{"code_id", "text"}, column{"reason", "text"})
}

const (
	sqlOpenEnablement = `INSERT INTO enablement_history (enabled_event_id, provider, login, enabled_at, enabled_by)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (enabled_event_id) DO NOTHING`
	sqlCloseEnablement = `UPDATE enablement_history SET disabled_at = $3, disabled_by = $4
		WHERE provider = $1 AND login = $2 AND disabled_at IS NULL`
)

// Apply implements Projection.
func (Analytics) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	loginFact, configFact := analyticsFacts(e)
	switch {
	case loginFact != nil:
		return loginFacts().insert(ctx, tx, [][]any{loginFact})
	case configFact != nil:
		return configFacts().insert(ctx, tx, [][]any{configFact})
	}
	return applyEnablement(ctx, tx, e)
}

// ApplyPage implements pageApplier: the page's facts in one COPY per table; the
// enablement periods (a few events per account) as Apply writes them, in order. A fact
// already there (an event applied twice) fails the COPY, and the rebuild then applies
// the page event by event, as Apply does.
func (Analytics) ApplyPage(ctx context.Context, tx pgx.Tx, events []Envelope) error {
	return applyAnalytics(ctx, tx, events, factTable.copy)
}

// ApplyBatch implements batchApplier: the facts of a live pass in one statement per
// table, the enablement periods as Apply writes them.
func (Analytics) ApplyBatch(ctx context.Context, tx pgx.Tx, events []Envelope) error {
	return applyAnalytics(ctx, tx, events, factTable.insert)
}

// applyAnalytics writes the enablement periods of events in order, then their facts
// with write, a table at a time.
func applyAnalytics(ctx context.Context, tx pgx.Tx, events []Envelope, write func(factTable, context.Context, pgx.Tx, [][]any) error) error {
	var logins, configs [][]any
	for _, e := range events {
		loginFact, configFact := analyticsFacts(e)
		switch {
		case loginFact != nil:
			logins = append(logins, loginFact)
		case configFact != nil:
			configs = append(configs, configFact)
		default:
			if err := applyEnablement(ctx, tx, e); err != nil {
				return err
			}
		}
	}
	if err := write(loginFacts(), ctx, tx, logins); err != nil {
		return err
	}
	return write(configFacts(), ctx, tx, configs)
}

// analyticsFacts returns the row of loginFacts or of configFacts that e yields, or neither.
func analyticsFacts(e Envelope) (loginFact, configFact []any) {
	loginRow := func(provider, login, kind string, reason domain.Reason, stepUp bool, attempts *int) []any {
		return factRow(e, kind, domain.NormalizeProviderCode(provider), login, nullString(reason), stepUp, attempts)
	}
	if domain.IsUnmatchedStream(e.Record.Stream) {
		if ev, ok := e.Event.(domain.LoginFailed); ok && ev.Provider != "" {
			return loginRow(ev.Provider, "", LoginFailedFact, ev.Reason, ev.StepUp, &ev.FailedAttempts), nil
		}
		return nil, nil
	}
	provider, login, err := domain.ParseUserStream(e.Record.Stream)
	if err != nil {
		return nil, nil // provider events say nothing about accounts
	}
	configRow := func(kind, codeID string, reason domain.Reason) []any {
		return factRow(e, kind, provider, login, nullString(codeID), nullString(reason))
	}
	switch ev := e.Event.(type) {
	case domain.LoginSucceeded:
		return loginRow(provider, login, LoginSucceededFact, "", false, nil), nil
	case domain.LoginFailed:
		return loginRow(provider, login, LoginFailedFact, ev.Reason, ev.StepUp, &ev.FailedAttempts), nil
	case domain.AccountLocked:
		return loginRow(provider, login, LoginLockedFact, "", false, &ev.FailedAttempts), nil
	case domain.AccountUnlocked:
		return loginRow(provider, login, LoginUnlockedFact, ev.Reason, false, nil), nil
	case domain.RecoveryEmailCodeSent:
		return nil, configRow(ConfigCodeSent, ev.CodeID, "")
	case domain.RecoveryEmailCodeRejected:
		return nil, configRow(ConfigCodeRejected, ev.CodeID, ev.Reason)
	case domain.RecoveryEmailVerified:
		return nil, configRow(ConfigVerified, ev.CodeID, "")
	case domain.SelfResetConfigured:
		return nil, configRow(ConfigConfigured, "", "")
	}
	return nil, nil
}

// applyEnablement opens or closes e's account's enablement period, if e is an enable or
// a disable.
func applyEnablement(ctx context.Context, tx pgx.Tx, e Envelope) error {
	provider, login, err := domain.ParseUserStream(e.Record.Stream)
	if err != nil {
		return nil
	}
	at := eventTime(e.Record)
	switch ev := e.Event.(type) {
	case domain.SelfResetEnabled:
		_, err := tx.Exec(ctx, sqlOpenEnablement, e.Record.ID, provider, login, at, ev.By)
		return err
	case domain.SelfResetDisabled:
		_, err := tx.Exec(ctx, sqlCloseEnablement, provider, login, at, ev.By)
		return err
	}
	return nil
}
