package projections

import (
	"testing"

	"selfreset/eventstore"
)

// TestReplay runs the whole history through every consumer a second and a third time:
// once as redeliveries (skipped: the checkpoints already cover them) and once after the
// checkpoints were reset to the start (applied again over the existing rows). The read
// models do not change, and equal a fresh rebuild. On the shared EventStoreDB the replays
// cover this test's events (the redelivered ones) or everyone's (from the start), and the
// comparisons this test's rows.
func TestReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeHistory()
	models := ReadModels()
	r := e.runner(nil)
	e.runToHead(r)
	before := e.dumps(models)
	sameDumps(t, "first run", before, e.freshRebuild(r, models))

	// Every event delivered again: all skipped, checkpoints unchanged. (Only this test's:
	// on EventStoreDB others may have appended after the checkpoints since.)
	events := e.ownEvents()
	checkpoints := map[string]eventstore.Position{}
	for _, m := range models {
		cp, err := readCheckpoint(e.ctx, e.pool, m.Name())
		e.must(err)
		checkpoints[m.Name()] = cp
	}
	codec := r.cfg.Codec
	for _, rec := range events {
		ev, err := codec.DecodeRecorded(rec)
		e.must(err)
		for _, m := range models {
			applied, err := r.process(e.ctx, m, Envelope{Record: rec, Event: ev})
			e.must(err)
			if applied {
				t.Fatalf("%s applied %s at %s a second time", m.Name(), rec.Type, rec.Position)
			}
		}
	}
	for _, m := range models {
		cp, err := readCheckpoint(e.ctx, e.pool, m.Name())
		e.must(err)
		if cp != checkpoints[m.Name()] {
			t.Errorf("%s checkpoint moved on redelivery: %s, was %s", m.Name(), cp, checkpoints[m.Name()])
		}
	}
	sameDumps(t, "after redelivery", e.dumps(models), before)

	// Checkpoints back to the start: the whole history is applied again over the rows.
	_, err := e.pool.Exec(e.ctx, `UPDATE projection_checkpoints SET commit = 0, prepare = 0`)
	e.must(err)
	e.runToHead(e.runner(nil))
	sameDumps(t, "after replay from the start", e.dumps(models), before)
	if n := len(e.ownParked()); n != 0 {
		t.Errorf("%d events parked", n)
	}
}
