package postgres

import (
	"testing"
	"time"

	"selfreset/eventstore"
)

// A subscription reads the feed again only for a notification naming events beyond what
// it has read: stale ones queued while it was busy are passed over, and the wait still
// ends at its deadline.
func TestListenerPassesOverStaleNotifications(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	ln := &listener{cfg: s.pool.Config().ConnConfig}
	if err := ln.connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer ln.close()
	notify := func(payload string) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, payload); err != nil {
			t.Fatal(err)
		}
	}
	read := eventstore.Position{Commit: 100, Prepare: 7} // what the subscription has read

	// Two stale notifications, then one beyond what was read: next returns on the third.
	notify("90/5")
	notify("100/7")
	notify("101/8")
	announced, err := ln.next(ctx, 5*time.Second, read, eventstore.Start)
	if err != nil {
		t.Fatal(err)
	}
	if want := (eventstore.Position{Commit: 101, Prepare: 8}); announced != want {
		t.Errorf("announced %v after a fresh notification, want %v", announced, want)
	}

	// A stale notification queued before a fresh one: next passes over it (had it
	// returned there, the fresh position would not be announced yet).
	notify("99/1")
	notify("105/2")
	if announced, err = ln.next(ctx, 5*time.Second, read, announced); err != nil {
		t.Fatal(err)
	}
	if want := (eventstore.Position{Commit: 105, Prepare: 2}); announced != want {
		t.Errorf("announced %v, want %v", announced, want)
	}

	// Only stale ones: next ends at its deadline without an error, the newest announced
	// position kept.
	notify("104/9")
	got, err := ln.next(ctx, 50*time.Millisecond, eventstore.Position{Commit: 105, Prepare: 2}, announced)
	if err != nil || got != announced {
		t.Errorf("after stale notifications only: %v, %v; want %v, nil", got, err, announced)
	}
}
