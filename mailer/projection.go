package mailer

import (
	"context"

	"github.com/jackc/pgx/v5"

	"selfreset/projections"
)

var _ projections.Projection = (*Projection)(nil)

// Apply implements projections.Projection: it queues the mail e calls for, in the
// runner's transaction, which also advances the "mailer" checkpoint.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, e projections.Envelope) error {
	return p.ApplyEvent(ctx, tx, e.Record, e.Event)
}
