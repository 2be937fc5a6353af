package projections

import (
	"context"

	"github.com/jackc/pgx/v5"

	"selfreset/domain"
)

// ResetActivity is the analysts' read model (DESIGN §5): one fact per reset-related event
// in reset_activity_facts, summed per provider per UTC day by the view
// reset_activity_daily (which also counts tokens that expired unused, from reset_tokens).
//
// Facts are keyed by (event id, kind) and inserted with ON CONFLICT DO NOTHING, so the
// model is replay-safe by construction. Kinds:
//
//   - request: a Forgot Password submission (Resend excluded); reason is why it was
//     refused, NULL when a token was issued. Requests that matched no account are counted
//     for the provider code attempted (reason unknown_account), with no login.
//   - token_issued: a token was issued (resend tells a Resend).
//   - rejected: a request or Resend was refused; reason says why.
//   - token_rejected: a token presented on the Change Password page was refused.
//   - completed: a password was changed through self-service reset.
type ResetActivity struct{}

// Name implements Projection.
func (ResetActivity) Name() string { return ResetActivityName }

// Tables implements ReadModel.
func (ResetActivity) Tables() []string { return []string{"reset_activity_facts"} }

// Fact kinds.
const (
	FactRequest       = "request"
	FactTokenIssued   = "token_issued"
	FactRejected      = "rejected"
	FactTokenRejected = "token_rejected"
	FactCompleted     = "completed"
)

// The model's SQL, all of it (table and view: migrations/0004_reset_activity.up.sql).
// factColumns is also the column list of the rebuild's COPY (ApplyPage).
const (
	factColumns   = "event_id, kind, provider, login, day, occurred_at, reason, resend, token_id"
	sqlInsertFact = `INSERT INTO reset_activity_facts (` + factColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (event_id, kind) DO NOTHING`
)

type fact struct {
	kind    string
	reason  domain.Reason
	resend  bool
	tokenID string
}

// Apply implements Projection.
func (ResetActivity) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	for _, row := range activityRows(e) {
		if _, err := tx.Exec(ctx, sqlInsertFact, row...); err != nil {
			return err
		}
	}
	return nil
}

// ApplyPage implements pageApplier: the page's facts in one COPY. A fact already there
// (an event applied twice) fails the COPY, and the rebuild then applies the page event
// by event, as Apply does.
func (ResetActivity) ApplyPage(ctx context.Context, tx pgx.Tx, events []Envelope) error {
	var rows [][]any
	for _, e := range events {
		rows = append(rows, activityRows(e)...)
	}
	return copyRows(ctx, tx, "reset_activity_facts", factColumns, rows)
}

// activityRows returns the rows of reset_activity_facts e yields, in factColumns order.
func activityRows(e Envelope) [][]any {
	var provider, login string
	var facts []fact
	if domain.IsUnmatchedStream(e.Record.Stream) {
		ev, ok := e.Event.(domain.ResetRequestRejected)
		if !ok {
			return nil // unmatched logins are not reset activity
		}
		// The login typed for an account that does not exist may be anything (an email
		// address, a password): analysts get the provider code only.
		provider = ev.Provider
		facts = requestFacts(ev)
	} else {
		var err error
		if provider, login, err = domain.ParseUserStream(e.Record.Stream); err != nil {
			return nil
		}
		switch ev := e.Event.(type) {
		case domain.ResetTokenIssued:
			// A token an administrator sent (By) is issued, but nobody asked Forgot Password.
			if !ev.Resend && ev.By == "" {
				facts = append(facts, fact{kind: FactRequest, tokenID: ev.TokenID})
			}
			facts = append(facts, fact{kind: FactTokenIssued, resend: ev.Resend, tokenID: ev.TokenID})
		case domain.ResetRequestRejected:
			facts = requestFacts(ev)
		case domain.ResetTokenRejected:
			facts = append(facts, fact{kind: FactTokenRejected, reason: ev.Reason, tokenID: ev.TokenID})
		case domain.PasswordChanged:
			if ev.Method == domain.PasswordChangedBySelfReset {
				facts = append(facts, fact{kind: FactCompleted, tokenID: ev.TokenID})
			}
		}
	}
	at := eventTime(e.Record)
	rows := make([][]any, len(facts))
	for i, f := range facts {
		rows[i] = []any{pgUUID(e.Record.ID), f.kind, provider, nullString(login), utcDay(at), at,
			nullString(f.reason), f.resend, nullString(f.tokenID)}
	}
	return rows
}

func requestFacts(ev domain.ResetRequestRejected) []fact {
	var facts []fact
	if !ev.Resend {
		facts = append(facts, fact{kind: FactRequest, reason: ev.Reason})
	}
	return append(facts, fact{kind: FactRejected, reason: ev.Reason, resend: ev.Resend})
}
