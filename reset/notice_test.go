package reset

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"selfreset/domain"
)

// TestWorkerSealsTheTypedAddressForTheNotice: a wrong email decided by the worker records
// the typed address encrypted for the mailer (never in clear); with the setting off
// (NoTypedAddressNotice) nothing is sealed and no notice is decided.
func TestWorkerSealsTheTypedAddressForTheNotice(t *testing.T) {
	for _, off := range []bool{false, true} {
		f := newFixture(t)
		w, err := NewWorker(f.ctx, WorkerConfig{Pool: f.store.Pool(), Commands: f.cmds, Keyring: f.keys, Concurrency: 1,
			PollInterval: 5 * time.Millisecond, NoTypedAddressNotice: off})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		ctx, stop := context.WithCancel(f.ctx)
		go func() { done <- w.Run(ctx) }()
		<-w.Running()
		if _, err := f.svc.RequestReset(f.ctx, "ACME", "jane", "Stranger@Example.net"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.RequestReset(f.ctx, "ACME", "nobody", "stranger@example.net"); err != nil {
			t.Fatal(err)
		}
		f.drain()
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		recs := append(f.stream(domain.UserStream("ACME", "jane")), f.unmatched()...)
		n := 0
		for _, r := range recs {
			if r.Type != "ResetRequestRejected" {
				continue
			}
			n++
			if strings.Contains(strings.ToLower(string(r.Data)), "stranger@example.net") {
				t.Errorf("typed email in clear: %s", r.Data)
			}
			var e domain.ResetRequestRejected
			if err := json.Unmarshal(r.Data, &e); err != nil {
				t.Fatal(err)
			}
			if off {
				if e.NoticeEmail != nil {
					t.Errorf("setting off, yet noticed: %+v", e)
				}
				continue
			}
			got, err := f.keys.Decrypt(domain.NoticeEmailLabel, e.NoticeEmail)
			if err != nil || string(got) != "stranger@example.net" {
				t.Errorf("%s: notice address %q (%v)", e.Reason, got, err)
			}
		}
		if n != 2 {
			t.Fatalf("off=%v: %d refusals, want 2", off, n)
		}
	}
}
