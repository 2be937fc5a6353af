package projections

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
)

// flaky is a consumer that fails for good on nope's registration, panics on RoleGranted,
// and fails twice before succeeding on zed's registration.
type flaky struct {
	nope     string // the provider code whose registration fails
	mu       sync.Mutex
	attempts map[uuid.UUID]int
	batches  int // ApplyBatch calls (flakyBatcher)
}

func (*flaky) Name() string { return "flaky" }

func (f *flaky) Apply(_ context.Context, _ pgx.Tx, e Envelope) error {
	f.mu.Lock()
	f.attempts[e.Record.ID]++
	n := f.attempts[e.Record.ID]
	f.mu.Unlock()
	switch ev := e.Event.(type) {
	case domain.ProviderRegistered:
		if ev.Code == f.nope {
			return errors.New("boom")
		}
	case domain.RoleGranted:
		panic("role granted")
	case domain.UserRegistered:
		if ev.Login == "zed" && n <= 2 {
			return errors.New("transient")
		}
	}
	return nil
}

func (f *flaky) tries(id uuid.UUID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[id]
}

// TestPoisonEventsAreParked: events a consumer cannot apply are parked and the consumer
// moves on. On the shared EventStoreDB the consumers also park other tests' events (flaky
// fails on everyone's RoleGranted): the assertions keep to this test's events, and the
// totals (Parked, Status) must be at least this test's.
//
// Run three times: flaky reads as it writes, so it applies its batches on its own;
// flakyWriter only writes, so it shares each pass with the read models, and its failures
// must leave theirs applied and its own attempts counted as before; flakyBatcher applies
// a pass at once (batchApplier), and a pass it fails goes event by event, where the same
// events are parked after the same attempts.
func TestPoisonEventsAreParked(t *testing.T) {
	for _, mode := range []string{"alone", "in a shared pass", "a pass at once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testPoisonEventsAreParked(t, mode)
		})
	}
}

// flakyWriter is flaky as a WriteOnly projection, whose writes the Runner pipelines.
type flakyWriter struct{ *flaky }

func (flakyWriter) WritesOnly() {}

// flakyBatcher is flakyWriter applying a pass at once: it fails the pass where flaky
// fails one of its events.
type flakyBatcher struct{ flakyWriter }

func (f flakyBatcher) ApplyBatch(ctx context.Context, tx pgx.Tx, events []Envelope) error {
	f.mu.Lock()
	f.batches++
	f.mu.Unlock()
	for _, e := range events {
		if err := f.Apply(ctx, tx, e); err != nil {
			return err
		}
	}
	return nil
}

func testPoisonEventsAreParked(t *testing.T, mode string) {
	e := newEnv(t)
	e.writeHistory()
	bogusID := uuid.New()
	_, err := e.store.Append(e.ctx, domain.UserStream(e.acme, "frank"), eventstore.Any, eventstore.EventData{
		ID: bogusID, Type: "Bogus", SchemaVersion: 1, OccurredAt: t0, Data: json.RawMessage(`{"x":1}`)})
	e.must(err)
	e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme, Login: "late",
		DisplayName: "Late Comer", Password: pw}))

	fl := &flaky{nope: e.nope, attempts: map[uuid.UUID]int{}}
	var last Projection = fl
	switch mode {
	case "in a shared pass":
		last = flakyWriter{fl}
	case "a pass at once":
		last = flakyBatcher{flakyWriter{fl}}
	}
	projs := append(asProjections(ReadModels()...), last)
	r := e.runner(projs)
	e.runToHead(r)

	// Later events still applied.
	if n := e.count(`SELECT count(*) FROM readmodels.admin_users WHERE provider = $1 AND login = 'late'`, e.acme); n != 1 {
		t.Errorf("the event after the bogus one was not applied (%d rows)", n)
	}

	var nopeID, roleID, zedID uuid.UUID
	for _, rec := range e.ownEvents() {
		switch {
		case rec.Type == "ProviderRegistered" && rec.Stream == domain.ProviderStream(e.nope):
			nopeID = rec.ID
		case rec.Type == "RoleGranted":
			roleID = rec.ID
		case rec.Type == "UserRegistered" && rec.Stream == domain.UserStream(e.nope, "zed"):
			zedID = rec.ID
		}
	}
	type row struct {
		Consumer, EventID, Type string
		Attempts                int
		Error                   string
	}
	var got []row
	for _, p := range e.ownParked() { // by consumer, then type
		got = append(got, row{p.Consumer, p.EventID, p.Type, p.Attempts, p.Error})
	}
	want := []row{
		{"admin_users", bogusID.String(), "Bogus", 1, "unknown event type"},
		{"analytics", bogusID.String(), "Bogus", 1, "unknown event type"},
		{"flaky", bogusID.String(), "Bogus", 1, "unknown event type"},
		{"flaky", nopeID.String(), "ProviderRegistered", 3, "boom"},
		{"flaky", roleID.String(), "RoleGranted", 3, "panic occurred"},
		{"reset_activity", bogusID.String(), "Bogus", 1, "unknown event type"},
		{"reset_tokens", bogusID.String(), "Bogus", 1, "unknown event type"},
	}
	for i := range got {
		if i < len(want) && strings.Contains(got[i].Error, want[i].Error) {
			got[i].Error = want[i].Error
		}
	}
	same(t, got, want)

	if n := fl.tries(zedID); n != 3 {
		t.Errorf("zed's registration was tried %d times, want 3 (two failures, then applied)", n)
	}
	// A pass applied at once that failed gave no one event its attempt: NOPE's
	// registration, where the pass stopped, has its three alone after the one in the pass
	// (zed's, after it in the feed, was not reached in the pass).
	wantTries := 3
	if mode == "a pass at once" {
		if fl.batches == 0 {
			t.Error("ApplyBatch was never called")
		}
		wantTries = 4
	}
	if n := fl.tries(nopeID); n != wantTries {
		t.Errorf("NOPE's registration was tried %d times, want %d", n, wantTries)
	}
	if n := r.Parked(); n != 7 && !(e.shared && n > 7) {
		t.Errorf("Parked() = %d, want 7", n)
	}
	if !strings.Contains(e.logs.String(), "event parked") {
		t.Error("parking was not logged")
	}
	st, err := r.Status(e.ctx)
	e.must(err)
	parked := map[string]int{}
	for _, s := range st {
		parked[s.Name] = s.Parked
		// On EventStoreDB others may have appended since the runner stopped.
		if !s.CaughtUp() && !e.shared {
			t.Errorf("%s is %s events behind", s.Name, s.BehindText())
		}
	}
	w := map[string]int{"admin_users": 1, "reset_tokens": 1, "reset_activity": 1, "analytics": 1, "flaky": 3}
	if e.shared {
		for name, n := range w {
			if parked[name] < n || len(parked) != len(w) {
				t.Errorf("parked per consumer %v, want at least %v", parked, w)
				break
			}
		}
	} else if show([]map[string]int{parked}) != show([]map[string]int{w}) {
		t.Errorf("parked per consumer %v, want %v", parked, w)
	}

	list, err := r.ParkedEvents(e.ctx, "flaky")
	e.must(err)
	if list = e.ownParkedEvents(list); len(list) != 3 || list[0].Consumer != "flaky" || list[0].Position == (eventstore.Position{}) {
		t.Errorf("ParkedEvents(flaky) = %+v", list)
	}
	all, err := r.ParkedEvents(e.ctx, "")
	if all = e.ownParkedEvents(all); err != nil || len(all) != 7 {
		t.Errorf("ParkedEvents() = %d events, %v; want 7", len(all), err)
	}

	// A rebuild lists what the rebuilt model lacks: the bogus event, parked again.
	_, err = r.Rebuild(e.ctx, AdminUsersName)
	e.must(err)
	if n := e.count(`SELECT count(*) FROM parked_events WHERE consumer = 'admin_users' AND event_id = $1`, bogusID); n != 1 {
		t.Errorf("after the rebuild, admin_users has %d parked rows for the bogus event, want 1", n)
	}
}
