package projections

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
)

// ErrRebuildRunning is returned when another rebuild of the same read model is under way.
var ErrRebuildRunning = errors.New("projections: a rebuild of this read model is already running")

// RebuildReport says what Rebuild did for one read model.
type RebuildReport struct {
	Name     string
	Position eventstore.Position // the checkpoint it set: the last event it applied
	Events   int                 // events read from the history
	Parked   int                 // events it could not apply (recorded in parked_events)
	Duration time.Duration
}

// Rebuild rebuilds the named read models (all configured ones when names is empty) from
// the full history while the service keeps serving:
//
//  1. it creates a schema of its own holding empty copies of the models' tables
//     (CREATE TABLE … (LIKE live INCLUDING ALL)) and replays the feed from the start
//     into them, in batches, with the search_path of each transaction set to that schema;
//  2. then, in one transaction, it locks the live consumers' checkpoint rows (their live
//     runners wait there), applies the events that arrived meanwhile, replaces the live
//     tables' contents with the shadow copies (DELETE + INSERT … SELECT: readers keep
//     seeing the old rows until the commit, views and grants stay), sets each checkpoint
//     to the last event applied, and commits;
//  3. it drops its schema. The live runners resume and skip what the rebuild applied.
//
// Only ReadModels can be rebuilt; a Projection with effects outside the database (the
// mailer) is refused. Events a model cannot apply are parked, as they are live.
func (r *Runner) Rebuild(ctx context.Context, names ...string) ([]RebuildReport, error) {
	started := time.Now()
	models, err := r.readModels(names)
	if err != nil {
		return nil, err
	}
	release, err := r.lockRebuild(ctx, models)
	if err != nil {
		return nil, err
	}
	defer release()

	sh, err := r.newShadow(ctx, models)
	if err != nil {
		return nil, err
	}
	defer sh.drop(r)

	pos, err := r.catchUp(ctx, sh, eventstore.Start)
	if err != nil {
		return nil, err
	}
	replayed := time.Since(started)
	pos, err = r.swap(ctx, sh, pos)
	if err != nil {
		return nil, err
	}
	r.log.Debug("projections: rebuild: replay and swap", "replay", replayed.Round(time.Millisecond),
		"swap", (time.Since(started) - replayed).Round(time.Millisecond))
	reports := make([]RebuildReport, len(models))
	for i, m := range models {
		reports[i] = RebuildReport{Name: m.Name(), Position: pos, Events: sh.events, Parked: sh.parkedBy[m.Name()],
			Duration: time.Since(started)}
		r.log.Info("projections: read model rebuilt", "consumer", m.Name(), "position", pos.String(),
			"events", sh.events, "parked", sh.parkedBy[m.Name()], "duration", time.Since(started).Round(time.Millisecond))
	}
	return reports, nil
}

// readModels resolves names to configured read models (all of them for no names).
func (r *Runner) readModels(names []string) ([]ReadModel, error) {
	var out []ReadModel
	if len(names) == 0 {
		for _, p := range r.cfg.Projections {
			if m, ok := p.(ReadModel); ok {
				out = append(out, m)
			}
		}
		if len(out) == 0 {
			return nil, errors.New("projections: rebuild: no read models configured")
		}
		return out, nil
	}
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		p, ok := r.byName[name]
		if !ok {
			return nil, fmt.Errorf("projections: rebuild: no read model is named %q (known: %s)", name, strings.Join(r.names(), ", "))
		}
		m, ok := p.(ReadModel)
		if !ok {
			return nil, fmt.Errorf("projections: rebuild: %q is not a read model and cannot be rebuilt", name)
		}
		out = append(out, m)
	}
	return out, nil
}

func (r *Runner) names() []string {
	out := make([]string, 0, len(r.cfg.Projections))
	for _, p := range r.cfg.Projections {
		out = append(out, p.Name())
	}
	return out
}

// lockRebuild takes each model's rebuild lock (session advisory locks on a connection of
// their own), failing at once if one is held elsewhere.
func (r *Runner) lockRebuild(ctx context.Context, models []ReadModel) (release func(), err error) {
	conn, err := pgx.ConnectConfig(ctx, r.cfg.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("projections: rebuild: connect: %w", err)
	}
	for _, m := range models {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`,
			"selfreset.projections.rebuild:"+m.Name()).Scan(&ok); err != nil {
			closeConn(conn)
			return nil, fmt.Errorf("projections: rebuild: lock: %w", err)
		}
		if !ok {
			closeConn(conn)
			return nil, fmt.Errorf("%w: %s", ErrRebuildRunning, m.Name())
		}
	}
	return func() { closeConn(conn) }, nil
}

// shadow is a rebuild's schema and its copies of the models' tables.
type shadow struct {
	schema   string // sanitized identifier
	models   []ReadModel
	tables   []shadowTable
	events   int
	parked   []parkedRecord
	parkedBy map[string]int
}

type shadowTable struct {
	live    string // schema-qualified, sanitized
	shadow  string // schema-qualified, sanitized
	columns string // sanitized column list (generated columns left out)
}

type parkedRecord struct {
	consumer string
	rec      eventstore.RecordedEvent
	cause    string
}

// newShadow creates the schema and empty copies of the models' live tables.
func (r *Runner) newShadow(ctx context.Context, models []ReadModel) (*shadow, error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "projections_rebuild_" + hex.EncodeToString(b)
	sh := &shadow{schema: pgx.Identifier{name}.Sanitize(), models: models, parkedBy: map[string]int{}}
	if _, err := r.cfg.Pool.Exec(ctx, "CREATE SCHEMA "+sh.schema); err != nil {
		return nil, fmt.Errorf("projections: rebuild: create schema: %w", err)
	}
	for _, m := range models {
		for _, table := range m.Tables() {
			liveSchema, ok, err := tableSchema(ctx, r.cfg.Pool, table)
			if err != nil {
				sh.drop(r)
				return nil, fmt.Errorf("projections: rebuild %s: %w", m.Name(), err)
			}
			if !ok {
				sh.drop(r)
				return nil, fmt.Errorf("projections: rebuild %s: table %s does not exist; run 'selfreset migrate' first", m.Name(), table)
			}
			// Unlogged: the shadow copies are thrown away after the swap (or a crash), so
			// writing them to the WAL would only slow the replay down.
			t := shadowTable{
				live:   pgx.Identifier{liveSchema, table}.Sanitize(),
				shadow: pgx.Identifier{name, table}.Sanitize(),
			}
			rows, err := r.cfg.Pool.Query(ctx, `SELECT attname FROM pg_attribute
				WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
				ORDER BY attnum`, t.live)
			if err != nil {
				sh.drop(r)
				return nil, fmt.Errorf("projections: rebuild %s: columns of %s: %w", m.Name(), table, err)
			}
			cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				sh.drop(r)
				return nil, fmt.Errorf("projections: rebuild %s: columns of %s: %w", m.Name(), table, err)
			}
			for i, c := range cols {
				cols[i] = pgx.Identifier{c}.Sanitize()
			}
			t.columns = strings.Join(cols, ", ")
			if _, err := r.cfg.Pool.Exec(ctx, "CREATE UNLOGGED TABLE "+t.shadow+" (LIKE "+t.live+" INCLUDING ALL EXCLUDING INDEXES)"); err != nil {
				sh.drop(r)
				return nil, fmt.Errorf("projections: rebuild %s: copy table %s: %w", m.Name(), table, err)
			}
			// Only the unique indexes: the models' upserts and lookups need them; the others
			// serve readers of the live tables and would only slow the replay down.
			rows, err = r.cfg.Pool.Query(ctx, `SELECT substring(pg_get_indexdef(indexrelid) FROM ' USING .*$')
				FROM pg_index WHERE indrelid = $1::regclass AND indisunique ORDER BY indexrelid`, t.live)
			if err != nil {
				sh.drop(r)
				return nil, fmt.Errorf("projections: rebuild %s: indexes of %s: %w", m.Name(), table, err)
			}
			defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				sh.drop(r)
				return nil, fmt.Errorf("projections: rebuild %s: indexes of %s: %w", m.Name(), table, err)
			}
			for _, def := range defs {
				if _, err := r.cfg.Pool.Exec(ctx, "CREATE UNIQUE INDEX ON "+t.shadow+def); err != nil {
					sh.drop(r)
					return nil, fmt.Errorf("projections: rebuild %s: index of %s: %w", m.Name(), table, err)
				}
			}
			sh.tables = append(sh.tables, t)
		}
	}
	return sh, nil
}

// drop removes the schema, whatever state the rebuild ended in.
func (sh *shadow) drop(r *Runner) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.cfg.Pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+sh.schema+" CASCADE"); err != nil {
		r.log.Warn("projections: rebuild: could not drop its schema; drop it by hand", "schema", sh.schema, "error", err)
	}
}

// catchUp applies the feed after pos to the shadow tables, one transaction per batch,
// until the feed has nothing more, and returns the last position applied.
func (r *Runner) catchUp(ctx context.Context, sh *shadow, pos eventstore.Position) (eventstore.Position, error) {
	for {
		events, err := r.cfg.Store.ReadAll(ctx, pos, r.cfg.RebuildBatch)
		if err != nil {
			return pos, fmt.Errorf("projections: rebuild: read feed: %w", err)
		}
		if len(events) == 0 {
			return pos, nil
		}
		// Read before the transaction begins, so that it stays short.
		tx, err := r.cfg.Pool.Begin(ctx)
		if err != nil {
			return pos, fmt.Errorf("projections: rebuild: begin: %w", err)
		}
		if err := sh.applyAll(ctx, r, tx, events); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return pos, err
		}
		if err := tx.Commit(ctx); err != nil {
			return pos, fmt.Errorf("projections: rebuild: commit: %w", err)
		}
		pos = events[len(events)-1].Position
	}
}

// applyAll applies events to every model of the shadow inside tx, with the search_path
// pointing at the shadow schema only (so a model that named a table it does not own fails
// instead of writing the live one). It restores the search_path before returning.
func (sh *shadow) applyAll(ctx context.Context, r *Runner, tx pgx.Tx, events []eventstore.RecordedEvent) error {
	var orig string
	if err := tx.QueryRow(ctx, `SELECT current_setting('search_path')`).Scan(&orig); err != nil {
		return fmt.Errorf("projections: rebuild: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, sh.schema); err != nil {
		return fmt.Errorf("projections: rebuild: set search_path: %w", err)
	}
	envs := make([]Envelope, 0, len(events))
	for _, rec := range events {
		sh.events++
		ev, err := r.cfg.Codec.DecodeRecorded(rec)
		if err != nil {
			for _, m := range sh.models {
				sh.park(r, m.Name(), rec, err)
			}
			continue
		}
		envs = append(envs, Envelope{Record: rec, Event: ev})
	}
	// The whole batch in one savepoint, its writes pipelined; only when something fails is
	// each event applied in a savepoint of its own (and each model in one of its own when
	// the event fails), so that the failing model is parked and the others keep the event.
	if err := savepoint(ctx, tx, func(sp pgx.Tx) error {
		pt := &pipelinedTx{Tx: sp}
		for _, e := range envs {
			for _, m := range sh.models {
				if err := m.Apply(ctx, pt, e); err != nil {
					return err
				}
			}
		}
		return pt.flush(ctx)
	}); err == nil {
		envs = nil
	} else if tx.Conn().IsClosed() || ctx.Err() != nil {
		return fmt.Errorf("projections: rebuild: %w", err)
	}
	for _, e := range envs {
		if err := savepoint(ctx, tx, func(sp pgx.Tx) error {
			for _, m := range sh.models {
				if err := m.Apply(ctx, sp, e); err != nil {
					return err
				}
			}
			return nil
		}); err == nil {
			continue
		} else if tx.Conn().IsClosed() || ctx.Err() != nil {
			return fmt.Errorf("projections: rebuild: %w", err)
		}
		for _, m := range sh.models {
			if err := savepoint(ctx, tx, func(sp pgx.Tx) error { return m.Apply(ctx, sp, e) }); err != nil {
				if tx.Conn().IsClosed() || ctx.Err() != nil {
					return fmt.Errorf("projections: rebuild: %w", err)
				}
				sh.park(r, m.Name(), e.Record, fmt.Errorf("%s: apply %s: %w", m.Name(), e.Record.Type, err))
			}
		}
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, orig); err != nil {
		return fmt.Errorf("projections: rebuild: restore search_path: %w", err)
	}
	return nil
}

// savepoint runs fn inside a savepoint of tx, rolling back to it if fn fails.
func savepoint(ctx context.Context, tx pgx.Tx, fn func(sp pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(sp); err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return sp.Commit(ctx)
}

func (sh *shadow) park(r *Runner, consumer string, rec eventstore.RecordedEvent, cause error) {
	sh.parked = append(sh.parked, parkedRecord{consumer: consumer, rec: rec, cause: cause.Error()})
	sh.parkedBy[consumer]++
	r.log.Error("projections: rebuild: event parked", "consumer", consumer, "event_id", rec.ID, "type", rec.Type,
		"stream", rec.Stream, "revision", rec.Revision, "position", rec.Position.String(), "error", cause)
}

// swap is the final transaction: lock the live checkpoints, apply what is left of the
// feed, replace the live tables' rows, set the checkpoints, commit.
func (r *Runner) swap(ctx context.Context, sh *shadow, pos eventstore.Position) (eventstore.Position, error) {
	tx, err := r.cfg.Pool.Begin(ctx)
	if err != nil {
		return pos, fmt.Errorf("projections: rebuild: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	names := make([]string, len(sh.models))
	for i, m := range sh.models {
		names[i] = m.Name()
	}
	slices.Sort(names) // one lock order for every rebuild
	live := map[string]eventstore.Position{}
	for _, name := range names {
		cp, err := lockCheckpoint(ctx, tx, name)
		if err != nil {
			return pos, err
		}
		live[name] = cp
	}
	if h := r.cfg.hooks.rebuildLocked; h != nil {
		h()
	}
	// The live runners are held now. Whatever the feed shows from here on is after every
	// position they applied (a reader that resumes from a position misses nothing).
	for {
		events, err := r.cfg.Store.ReadAll(ctx, pos, r.cfg.RebuildBatch)
		if err != nil {
			return pos, fmt.Errorf("projections: rebuild: read feed: %w", err)
		}
		if len(events) == 0 {
			break
		}
		if err := sh.applyAll(ctx, r, tx, events); err != nil {
			return pos, err
		}
		pos = events[len(events)-1].Position
	}
	for name, cp := range live {
		if pos.Less(cp) {
			return pos, fmt.Errorf("projections: rebuild: the live checkpoint of %s (%s) is past the feed's end (%s)", name, cp, pos)
		}
	}
	for _, t := range sh.tables {
		if _, err := tx.Exec(ctx, "DELETE FROM "+t.live); err != nil {
			return pos, fmt.Errorf("projections: rebuild: clear %s: %w", t.live, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+t.live+" ("+t.columns+") SELECT "+t.columns+" FROM "+t.shadow); err != nil {
			return pos, fmt.Errorf("projections: rebuild: fill %s: %w", t.live, err)
		}
	}
	// parked_events lists what each read model lacks: what the rebuild parked replaces
	// what was parked before (events it has now applied, or parked again).
	pc, pp, err := dbPos(pos)
	if err != nil {
		return pos, err
	}
	for _, name := range names {
		if _, err := tx.Exec(ctx, sqlUnparkThrough, name, pc, pp); err != nil {
			return pos, fmt.Errorf("projections: rebuild: clear parked events of %s: %w", name, err)
		}
	}
	for _, p := range sh.parked {
		if err := insertParked(ctx, tx, p.consumer, p.rec, p.cause, 1); err != nil {
			return pos, err
		}
	}
	for _, name := range names {
		if cp := live[name]; cp != pos {
			if err := advanceCheckpoint(ctx, tx, name, cp, pos); err != nil {
				return pos, err
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return pos, fmt.Errorf("projections: rebuild: commit: %w", err)
	}
	return pos, nil
}
