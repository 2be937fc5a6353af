package password

import (
	"context"
	"testing"
)

// blocking is a Computer whose Verify waits for release, and which tells its memory.
type blocking struct {
	memory  int64
	started chan struct{}
	release chan struct{}
}

func (c *blocking) Memory() int64               { return c.memory }
func (c *blocking) Hash(string) (string, error) { return "", nil }
func (c *blocking) Verify(string, string) (bool, error) {
	c.started <- struct{}{}
	<-c.release
	return true, nil
}

// phc makes a real argon2id PHC string with m KiB.
func phc(t *testing.T, m uint32) string {
	t.Helper()
	h, err := NewHasher(Params{Memory: m, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32})
	if err != nil {
		t.Fatal(err)
	}
	s, err := h.Hash("pw")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A verification takes the hash's memory in slots (older, bigger parameters take more),
// at least one and at most all of them.
func TestBoundedWeighsAVerificationByItsHashMemory(t *testing.T) {
	const slot = 1024 // KiB: the Computer's own hashes
	c := &blocking{memory: slot * 1024, started: make(chan struct{}, 1), release: make(chan struct{})}
	b := NewBounded(c, 3)
	for _, tc := range []struct {
		name string
		hash string
		want int64
	}{
		{"own parameters", phc(t, slot), 1},
		{"smaller", phc(t, slot/2), 1},
		{"twice the memory", phc(t, 2*slot), 2},
		{"more than all slots", phc(t, 8*slot), 3},
		{"no account (empty hash)", "", 1},
		{"not a PHC string", "h:pw", 1},
	} {
		if got := b.weight(tc.hash); got != tc.want {
			t.Errorf("%s: weight %d, want %d", tc.name, got, tc.want)
		}
	}
	// While a verification of a twice-as-big hash runs, one slot of three is left.
	big, done := phc(t, 2*slot), make(chan error, 1)
	go func() {
		_, err := b.Verify(context.Background(), "pw", big)
		done <- err
	}()
	<-c.started
	if !b.slots.TryAcquire(1) {
		t.Error("no slot left beside a two-slot verification (3 slots)")
	} else {
		if b.slots.TryAcquire(1) {
			t.Error("a second slot left beside a two-slot verification (3 slots)")
			b.slots.Release(1)
		}
		b.slots.Release(1)
	}
	c.release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
