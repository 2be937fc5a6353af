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
func (ResetActivity) Tables() []string { return []string{activityFacts().name} }

// Fact kinds.
const (
	FactRequest       = "request"
	FactTokenIssued   = "token_issued"
	FactRejected      = "rejected"
	FactTokenRejected = "token_rejected"
	FactCompleted     = "completed"
)

// activityFacts is the model's table (and view: migrations/0004_reset_activity.up.sql).
func activityFacts() factTable {
	return newFactTable("reset_activity_facts", "event_id, kind",
		column{"reason", "text"}, column{"resend", "boolean"}, column{"token_id", "text"})
}

type fact struct {
	kind    string
	reason  domain.Reason
	resend  bool
	tokenID string
}

// Apply implements Projection.
func (ResetActivity) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	return activityFacts().insert(ctx, tx, activityRows(e))
}

// ApplyBatch implements batchApplier: the facts of a live pass in one statement.
func (ResetActivity) ApplyBatch(ctx context.Context, tx pgx.Tx, events []Envelope) error {
	return activityFacts().insert(ctx, tx, activityPage(events))
}

// ApplyPage implements pageApplier: the page's facts in one COPY. A fact already there
// (an event applied twice) fails the COPY, and the rebuild then applies the page event
// by event, as Apply does.
func (ResetActivity) ApplyPage(ctx context.Context, tx pgx.Tx, events []Envelope) error {
	return activityFacts().copy(ctx, tx, activityPage(events))
}

// activityPage returns the rows of activityFacts that events yield.
func activityPage(events []Envelope) [][]any {
	var rows [][]any
	for _, e := range events {
		rows = append(rows, activityRows(e)...)
	}
	return rows
}

// activityRows returns the rows of activityFacts e yields.
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
	rows := make([][]any, len(facts))
	for i, f := range facts {
		rows[i] = factRow(e, f.kind, provider, login, nullString(f.reason), f.resend, nullString(f.tokenID))
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
