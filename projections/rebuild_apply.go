package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"selfreset/eventstore"
	"selfreset/internal/pguuid"
)

// catchUp applies the feed after pos to the shadow tables until the feed has nothing
// more, and returns the last position applied. Three stages run at once: one goroutine
// reads the feed a page ahead (readPages), this one decodes each page once, and every
// model applies the decoded pages on a connection of its own, a transaction per page
// (applyPages). The models' tables are disjoint, so the server applies them in parallel;
// a model's pages still go in feed order. Atomicity across models is not needed here: a
// failure fails the whole rebuild and its schema is dropped; the final swap alone is one
// transaction over every model.
func (r *Runner) catchUp(ctx context.Context, sh *shadow, pos eventstore.Position) (eventstore.Position, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan feedPage, 1)
	go r.readPages(ctx, pos, pages)

	g, gctx := errgroup.WithContext(ctx)
	feeds := make([]chan []Envelope, len(sh.models))
	for i, m := range sh.models {
		feeds[i] = make(chan []Envelope, 1)
		g.Go(func() error { return r.applyPages(gctx, sh, m, feeds[i]) })
	}
	err := sh.dispatch(gctx, r, pages, feeds, &pos)
	for _, f := range feeds {
		close(f)
	}
	if werr := g.Wait(); werr != nil {
		return pos, werr
	}
	if err != nil {
		return pos, err
	}
	return pos, ctx.Err()
}

// dispatch decodes each page from pages and hands it to every model's feed, setting *pos
// to the last position handed on. It stops at the feed's end, a read error or ctx's end.
func (sh *shadow) dispatch(ctx context.Context, r *Runner, pages <-chan feedPage, feeds []chan []Envelope,
	pos *eventstore.Position) error {
	for p := range pages {
		if p.err != nil {
			return fmt.Errorf("projections: rebuild: read feed: %w", p.err)
		}
		envs := sh.decode(r, p.events)
		for _, f := range feeds {
			select {
			case f <- envs:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		*pos = p.events[len(p.events)-1].Position
	}
	return nil
}

// applyPages applies every page from feed to m's shadow tables, a transaction per page,
// on a connection of its own whose search_path is the shadow schema only (so a model
// naming a table it does not own fails instead of writing the live one). Its commits do
// not wait for the WAL: what a crash loses here the rebuild never swaps in.
func (r *Runner) applyPages(ctx context.Context, sh *shadow, m ReadModel, feed <-chan []Envelope) (err error) {
	conn, err := pguuid.Connect(ctx, r.cfg.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("projections: rebuild %s: connect: %w", m.Name(), err)
	}
	defer closeConn(conn)
	if _, err := conn.Exec(ctx, `SELECT set_config('search_path', $1, false), set_config('synchronous_commit', 'off', false)`,
		sh.schema); err != nil {
		return fmt.Errorf("projections: rebuild %s: session settings: %w", m.Name(), err)
	}
	for envs := range feed {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return sh.applyModel(ctx, r, tx, m, envs) })
		if err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("projections: rebuild %s: %w", m.Name(), err)
		}
	}
	return nil
}
