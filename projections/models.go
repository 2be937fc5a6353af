package projections

import (
	"time"

	"github.com/google/uuid"

	"selfreset/eventstore"
)

// Consumer names of the built-in read models.
const (
	AdminUsersName    = "admin_users"
	ResetTokensName   = "reset_tokens"
	ResetActivityName = "reset_activity"
	AnalyticsName     = "analytics"
)

// ReadModels returns the built-in read models, in the order Run starts them.
func ReadModels() []ReadModel {
	return []ReadModel{AdminUsers{}, ResetTokens{}, ResetActivity{}, Analytics{}}
}

// The built-in models that apply a rebuild's pages at once. The rebuild finds them by a
// type assertion, so without these an ApplyPage that missed the interface would only make
// it slow. (ReadModels above already holds every model to ReadModel.)
var (
	_ pageApplier = AdminUsers{}
	_ pageApplier = ResetActivity{}
	_ pageApplier = Analytics{}

	_ batchApplier = ResetActivity{}
	_ batchApplier = Analytics{}
)

// eventTime is the domain time of an event: when the decision was made (from the command
// side's clock), never when a projection happened to run.
func eventTime(r eventstore.RecordedEvent) time.Time { return r.OccurredAt.UTC() }

// utcDay is the calendar day (UTC) of t, as a date value.
func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// pgUUID is id as pgx encodes it straight into a uuid column (a uuid.UUID goes through
// its text form), which matters for the rebuild's COPY of a million facts.
func pgUUID(id uuid.UUID) [16]byte { return id }

// nullString maps "" to SQL NULL.
func nullString[S ~string](s S) *string {
	if s == "" {
		return nil
	}
	v := string(s)
	return &v
}
