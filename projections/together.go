package projections

import (
	"context"
	"slices"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
)

// member is one consumer of a session: its handler of one event (eventHandler) and where
// the session believes its checkpoint is.
type member struct {
	p   Projection
	one message.HandlerFunc
	cur cursor
}

// deliverAll applies batch to every member of a session. The members whose writes are
// pipelined and whose checkpoints the session knows share one pass (applyTogether): one
// transaction, sent in one round trip, with each one's writes and checkpoint move. Five
// consumers each with a pass of its own cost five transactions and five round trips per
// batch, and each decoded every event; that was a fifth of a Forgot Password decision's
// machine CPU (docs/benchmarks.md, twelfth session). Each checkpoint still moves with its
// own consumer's writes, so exactly-once holds per consumer as before.
//
// A shared pass that fails writes nothing. The member whose Apply failed, if one did, has
// had its attempt at the batch and applies its events one by one (deliverEach, which
// retries and parks); the others share a pass again. A failure that is no member's own
// (the checkpoint moved by a rebuild, a write that failed in the pipeline) sends each
// member its own way (deliver). Until the members it holds up are done, a consumer that
// fails holds up the others of its session; a failing consumer no longer runs apart from
// the rest, which is the price of the shared pass.
func (r *Runner) deliverAll(ctx context.Context, conn *pgx.Conn, members []*member, batch []eventstore.RecordedEvent) error {
	last := batch[len(batch)-1].Position
	type failure struct {
		m     *member
		tried string // the event its Apply failed at
	}
	var together, alone []*member
	var failed []failure
	for _, m := range members {
		switch {
		case m.cur.known && !m.cur.pos.Less(last):
			// its checkpoint covers the batch (it was ahead of the session's oldest)
		case m.cur.known && pipelined(m.p):
			together = append(together, m)
		default:
			alone = append(alone, m)
		}
	}
	for len(together) > 1 {
		m, at, err := r.applyTogether(ctx, conn, together, batch)
		if err == nil {
			together = nil
			break
		}
		if err := stopped(ctx, conn); err != nil {
			return err
		}
		if m == nil {
			r.log.Warn("projections: a shared pass failed; each consumer applies the batch on its own", "consumers", len(together), "events", len(batch), "error", err)
			alone = append(alone, together...)
			together = nil
			break
		}
		r.log.Warn("projections: batch not applied; applying its events one by one", "consumer", m.p.Name(), "events", len(batch), "error", err)
		failed = append(failed, failure{m, at})
		together = slices.DeleteFunc(together, func(o *member) bool { return o == m })
	}
	for _, m := range append(alone, together...) { // together holds one member at most now
		if err := r.deliver(ctx, conn, m.p, m.one, batch, &m.cur); err != nil {
			return err
		}
	}
	for _, f := range failed {
		if err := r.deliverEach(ctx, conn, f.m.one, batch, &f.m.cur, f.tried); err != nil {
			return err
		}
	}
	return nil
}

// applyTogether applies batch to ms, members whose writes are pipelined and whose
// checkpoints the session knows, in one pass (pipelinedPass), decoding each event once
// for all of them. On failure nothing is written, and failed is the member whose Apply
// failed, at the event tried, if it was one.
func (r *Runner) applyTogether(ctx context.Context, conn *pgx.Conn, ms []*member, batch []eventstore.RecordedEvent) (failed *member, tried string, err error) {
	envs := make([]Envelope, 0, len(batch))
	for _, rec := range batch {
		e, err := r.decode(rec)
		if err != nil {
			return nil, "", err
		}
		envs = append(envs, e)
	}
	parts := make([]passPart, len(ms))
	for i, m := range ms {
		parts[i] = passPart{p: m.p, from: m.cur.pos}
		if h := r.cfg.hooks.beforeLock; h != nil {
			for _, e := range envs {
				h(m.p.Name(), e)
			}
		}
	}
	i, tried, err := r.pipelinedPass(ctx, conn, parts, envs)
	if err != nil {
		if i >= 0 {
			failed = ms[i]
		}
		return failed, tried, err
	}
	for _, m := range ms {
		m.cur.pos = batch[len(batch)-1].Position
	}
	return nil, "", nil
}
