package reset

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"selfreset/internal/testkit"
)

// recordingPublisher records each Publish; the first one waits for release.
type recordingPublisher struct {
	release chan struct{}
	fail    map[string]error

	mu    sync.Mutex
	calls [][]string // the uuids of each call's messages
	first bool
}

func (p *recordingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	first := !p.first
	p.first = true
	uuids := make([]string, len(msgs))
	for i, m := range msgs {
		uuids[i] = m.UUID
	}
	p.calls = append(p.calls, uuids)
	p.mu.Unlock()
	if first {
		<-p.release
	}
	return p.fail[topic]
}

func (p *recordingPublisher) Close() error { return nil }

func (p *recordingPublisher) recorded() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.calls...)
}

// Sends that arrive while an INSERT is on its way go together in the next one, and
// each learns how its own INSERT went.
func TestConcurrentSendsShareAnInsert(t *testing.T) {
	next := &recordingPublisher{release: make(chan struct{}), fail: map[string]error{"broken": errors.New("insert failed")}}
	g := &groupPublisher{next: next, flushers: 1, maxGroup: 3, timeout: time.Second}
	publish := func(topic, id string) <-chan error {
		done := make(chan error, 1)
		go func() { done <- g.Publish(topic, message.NewMessage(id, nil)) }()
		return done
	}
	first := publish("ok", "a")
	testkit.WaitFor(t, "the first INSERT on its way", 5*time.Second, func() bool { return len(next.recorded()) == 1 })
	later := []<-chan error{publish("ok", "b"), publish("broken", "c"), publish("ok", "d"), publish("ok", "e")}
	testkit.WaitFor(t, "four sends waiting", 5*time.Second, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiting) == 4 })
	close(next.release)

	if err := <-first; err != nil {
		t.Errorf("a: %v", err)
	}
	want := []error{nil, next.fail["broken"], nil, nil}
	for i, done := range later {
		if err := <-done; !errors.Is(err, want[i]) || (want[i] == nil && err != nil) {
			t.Errorf("send %d: %v, want %v", i+1, err, want[i])
		}
	}
	// a alone; then the four waiting in groups of at most 3, one INSERT per topic in a
	// group: fewer INSERTs than Sends, each Send in exactly one, c never with the others.
	calls := next.recorded()
	if len(calls[0]) != 1 || calls[0][0] != "a" {
		t.Fatalf("first INSERT %v, want [a]", calls[0])
	}
	seen := map[string]int{}
	for _, call := range calls[1:] {
		if len(call) > 3 || (len(call) > 1 && slices.Contains(call, "c")) {
			t.Errorf("INSERT %v: more than a group, or two topics in one", call)
		}
		for _, id := range call {
			seen[id]++
		}
	}
	if len(calls) > 4 || len(seen) != 4 || seen["b"] != 1 || seen["c"] != 1 || seen["d"] != 1 || seen["e"] != 1 {
		t.Errorf("INSERTs %v; want b, c, d and e once each in at most 3", calls)
	}
}

// A Send whose context ends stops waiting; after Close, Send is refused.
func TestGroupedSendGivesUpAndClose(t *testing.T) {
	next := &recordingPublisher{release: make(chan struct{})}
	g := &groupPublisher{next: next, flushers: 1, maxGroup: 8, timeout: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	msg := message.NewMessage("a", nil)
	msg.SetContext(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Publish("ok", msg) }()
	testkit.WaitFor(t, "the first INSERT on its way", 5*time.Second, func() bool { return len(next.recorded()) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("send after its context ended: %v", err)
	}
	close(next.release)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Publish("ok", message.NewMessage("b", nil)); !errors.Is(err, errBusClosed) {
		t.Errorf("send after Close: %v", err)
	}
}
