package projections

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
	"selfreset/internal/pguuid"
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
//  1. it creates a schema of its own holding empty unlogged copies of the models' tables
//     (CREATE TABLE … (LIKE live INCLUDING ALL), unique indexes only) and replays the feed
//     from the start into them: the feed read a page ahead and decoded once, each model
//     applying the pages on a connection of its own, in parallel, a page per transaction
//     (with ApplyPage where a model has it), its search_path set to that schema (catchUp);
//  2. where the tables can be swapped by renaming, it makes the copies the live tables'
//     twins (prepareRename) and applies what arrived meanwhile;
//  3. then, in one transaction, it locks the live consumers' checkpoint rows (their live
//     runners wait there), applies the events that arrived meanwhile, puts the copies in
//     place of the live tables (swapByRename) or their rows in place of the live rows
//     (swapByCopy), sets each checkpoint to the last event applied, and commits;
//  4. it drops its schema. The live runners resume and skip what the rebuild applied.
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
	rename, err := r.prepareRename(ctx, sh)
	if err != nil {
		return nil, err
	}
	// What arrived while the tables were prepared, so that the swap has little left to apply.
	if pos, err = r.catchUp(ctx, sh, pos); err != nil {
		return nil, err
	}
	prepared := time.Since(started)
	pos, err = r.swap(ctx, sh, pos, rename)
	if err != nil {
		return nil, err
	}
	r.log.Debug("projections: rebuild: replay, preparation and swap", "replay", replayed.Round(time.Millisecond),
		"prepare", (prepared - replayed).Round(time.Millisecond), "swap", (time.Since(started) - prepared).Round(time.Millisecond),
		"renamed", rename)
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
	conn, err := pguuid.Connect(ctx, r.cfg.Pool.Config().ConnConfig.Copy())
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
	name   string // the schema, unquoted
	schema string // sanitized identifier
	models []ReadModel
	tables []shadowTable
	events int // written by one goroutine at a time (decode)
	// mu guards what the models' appliers write, each on a goroutine of its own.
	mu       sync.Mutex
	parked   []parkedRecord
	parkedBy map[string]int
	// pagesRetried counts the pages of a model applied event by event after the page
	// failed as a whole.
	pagesRetried int
}

type shadowTable struct {
	live       string // schema-qualified, sanitized
	shadow     string // schema-qualified, sanitized
	columns    string // sanitized column list (generated columns left out)
	liveSchema string // unquoted
	table      string // unquoted, the same in both schemas
	indexes    []shadowIndex
}

// shadowIndex is an index of a live table, made again on its shadow.
type shadowIndex struct {
	Name       string // unquoted
	Definition string // " USING …" of pg_get_indexdef
	Unique     bool
	Constraint string // the primary key or unique constraint it backs, or ""
	Kind       string // that constraint's contype: "p" or "u"
}

// create returns the statement that makes the index on table, under its live name.
func (ix shadowIndex) create(table string) string {
	unique := ""
	if ix.Unique {
		unique = "UNIQUE "
	}
	return "CREATE " + unique + "INDEX " + pgx.Identifier{ix.Name}.Sanitize() + " ON " + table + ix.Definition
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
	sh := &shadow{name: name, schema: pgx.Identifier{name}.Sanitize(), models: models, parkedBy: map[string]int{}}
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
			t := shadowTable{
				live:       pgx.Identifier{liveSchema, table}.Sanitize(),
				shadow:     pgx.Identifier{name, table}.Sanitize(),
				liveSchema: liveSchema,
				table:      table,
			}
			if err := r.createShadowTable(ctx, &t); err != nil {
				sh.drop(r)
				return nil, fmt.Errorf("projections: rebuild %s: %w", m.Name(), err)
			}
			sh.tables = append(sh.tables, t)
		}
	}
	return sh, nil
}

// createShadowTable creates t's shadow table, empty, unlogged (it is thrown away after
// the swap or a crash, so writing it to the WAL would only slow the replay down), with
// the live table's unique indexes under their live names (the models' upserts need
// them; the others would only slow the replay down: prepareRename adds them later).
func (r *Runner) createShadowTable(ctx context.Context, t *shadowTable) error {
	rows, err := r.cfg.Pool.Query(ctx, `SELECT attname FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
		ORDER BY attnum`, t.live)
	if err != nil {
		return fmt.Errorf("columns of %s: %w", t.table, err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("columns of %s: %w", t.table, err)
	}
	for i, c := range cols {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	t.columns = strings.Join(cols, ", ")
	if _, err := r.cfg.Pool.Exec(ctx, "CREATE UNLOGGED TABLE "+t.shadow+" (LIKE "+t.live+" INCLUDING ALL EXCLUDING INDEXES)"); err != nil {
		return fmt.Errorf("copy table %s: %w", t.table, err)
	}
	rows, err = r.cfg.Pool.Query(ctx, `SELECT c.relname, substring(pg_get_indexdef(i.indexrelid) FROM ' USING .*$'),
			i.indisunique, coalesce(k.conname, ''), coalesce(k.contype, '')
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u')
		WHERE i.indrelid = $1::regclass ORDER BY i.indexrelid`, t.live)
	if err != nil {
		return fmt.Errorf("indexes of %s: %w", t.table, err)
	}
	t.indexes, err = pgx.CollectRows(rows, pgx.RowToStructByPos[shadowIndex])
	if err != nil {
		return fmt.Errorf("indexes of %s: %w", t.table, err)
	}
	for _, ix := range t.indexes {
		if ix.Unique {
			if _, err := r.cfg.Pool.Exec(ctx, ix.create(t.shadow)); err != nil {
				return fmt.Errorf("index %s of %s: %w", ix.Name, t.table, err)
			}
		}
	}
	return nil
}

// drop removes the schema, whatever state the rebuild ended in.
func (sh *shadow) drop(r *Runner) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.cfg.Pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+sh.schema+" CASCADE"); err != nil {
		r.log.Warn("projections: rebuild: could not drop its schema; drop it by hand", "schema", sh.schema, "error", err)
	}
}

// feedPage is one page of the feed, or the error that ended the reading.
type feedPage struct {
	events []eventstore.RecordedEvent
	err    error
}

// readPages sends the feed after pos to pages, a page at a time, until the feed has
// nothing more, reading fails or ctx ends; then it closes pages.
func (r *Runner) readPages(ctx context.Context, pos eventstore.Position, pages chan<- feedPage) {
	defer close(pages)
	for {
		events, err := r.cfg.Store.ReadAll(ctx, pos, r.cfg.RebuildBatch)
		if len(events) == 0 && err == nil {
			return
		}
		select {
		case pages <- feedPage{events: events, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
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
	envs := sh.decode(r, events)
	for _, m := range sh.models {
		if err := sh.applyModel(ctx, r, tx, m, envs); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, orig); err != nil {
		return fmt.Errorf("projections: rebuild: restore search_path: %w", err)
	}
	return nil
}

// decode decodes a page of the feed once for every model, counting its events and
// parking for every model those it cannot decode.
func (sh *shadow) decode(r *Runner, events []eventstore.RecordedEvent) []Envelope {
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
	return envs
}

// pageApplier is a ReadModel that can apply a whole page of events at once during a
// rebuild (COPY for its facts, one read and one write for rows that many events change),
// much faster than event by event. ApplyPage must leave the model's tables exactly as
// Apply called on each event in order would; it may fail where Apply would not (a COPY
// meeting a row that is already there), and the rebuild then applies the page event by
// event. Live consumers always use Apply.
type pageApplier interface {
	ApplyPage(ctx context.Context, tx pgx.Tx, events []Envelope) error
}

// applyModel applies a page of events to one model in a savepoint, its writes pipelined
// (with ApplyPage when the model has it). When that fails it applies each event in a
// savepoint of its own, and parks for this model the events that fail.
func (sh *shadow) applyModel(ctx context.Context, r *Runner, tx pgx.Tx, m ReadModel, envs []Envelope) error {
	err := savepoint(ctx, tx, func(sp pgx.Tx) error {
		pt := &pipelinedTx{Tx: sp}
		if pa, ok := m.(pageApplier); ok {
			if err := pa.ApplyPage(ctx, pt, envs); err != nil {
				return err
			}
			return pt.flush(ctx)
		}
		for _, e := range envs {
			if err := m.Apply(ctx, pt, e); err != nil {
				return err
			}
		}
		return pt.flush(ctx)
	})
	if err == nil {
		return nil
	}
	if tx.Conn().IsClosed() || ctx.Err() != nil {
		return fmt.Errorf("projections: rebuild: %w", err)
	}
	sh.mu.Lock()
	sh.pagesRetried++
	sh.mu.Unlock()
	r.log.Debug("projections: rebuild: page failed; applying it event by event", "consumer", m.Name(), "error", err)
	for _, e := range envs {
		if err := savepoint(ctx, tx, func(sp pgx.Tx) error { return m.Apply(ctx, sp, e) }); err != nil {
			if tx.Conn().IsClosed() || ctx.Err() != nil {
				return fmt.Errorf("projections: rebuild: %w", err)
			}
			sh.park(r, m.Name(), e.Record, fmt.Errorf("%s: apply %s: %w", m.Name(), e.Record.Type, err))
		}
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
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.parked = append(sh.parked, parkedRecord{consumer: consumer, rec: rec, cause: cause.Error()})
	sh.parkedBy[consumer]++
	r.log.Error("projections: rebuild: event parked", "consumer", consumer, "event_id", rec.ID, "type", rec.Type,
		"stream", rec.Stream, "revision", rec.Revision, "position", rec.Position.String(), "error", cause)
}

// swap is the final transaction: lock the live checkpoints, apply what is left of the
// feed, replace the live tables' rows, set the checkpoints, commit.
func (r *Runner) swap(ctx context.Context, sh *shadow, pos eventstore.Position, rename bool) (eventstore.Position, error) {
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
	if rename {
		if err := sh.swapByRename(ctx, tx); err != nil {
			return pos, err
		}
	} else if err := sh.swapByCopy(ctx, tx); err != nil {
		return pos, err
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

// swapByCopy replaces the live tables' rows with the shadow tables' inside tx (readers
// keep seeing the old rows until the commit; views and rights stay as they are).
func (sh *shadow) swapByCopy(ctx context.Context, tx pgx.Tx) error {
	for _, t := range sh.tables {
		if _, err := tx.Exec(ctx, "DELETE FROM "+t.live); err != nil {
			return fmt.Errorf("projections: rebuild: clear %s: %w", t.live, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+t.live+" ("+t.columns+") SELECT "+t.columns+" FROM "+t.shadow); err != nil {
			return fmt.Errorf("projections: rebuild: fill %s: %w", t.live, err)
		}
	}
	return nil
}
