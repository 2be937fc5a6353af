package reset

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// groupPublisher stores the commands of concurrent requests together: while an INSERT is
// on its way, the messages that arrive wait and go in the next one, one multi-row INSERT
// and one commit per topic for all of them (group commit). Each Publish still returns
// only once its own rows are committed, with that INSERT's error. Under a burst the
// answers then cost PostgreSQL a fraction of a commit each instead of one; alone, a
// request goes at once, as before.
type groupPublisher struct {
	next     message.Publisher
	flushers int           // INSERTs in flight at most
	maxGroup int           // messages in one INSERT at most
	timeout  time.Duration // bounds one INSERT, which runs for several requests

	wg      sync.WaitGroup
	mu      sync.Mutex
	waiting []*queued
	running int
	closed  bool
}

// queued is one Publish waiting for its group's INSERT.
type queued struct {
	topic string
	msgs  []*message.Message
	done  chan error // buffered: the flusher never waits for a caller that gave up
}

var errBusClosed = errors.New("reset: the intake bus is closed")

// Publish implements message.Publisher. The messages' own context bounds only the wait:
// the group's INSERT runs under timeout, for everyone in it.
func (g *groupPublisher) Publish(topic string, msgs ...*message.Message) error {
	ctx := context.Background()
	if len(msgs) > 0 {
		ctx = msgs[0].Context() // before the flusher may swap it for the group's
	}
	q := &queued{topic: topic, msgs: msgs, done: make(chan error, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return errBusClosed
	}
	g.waiting = append(g.waiting, q)
	if g.running < g.flushers {
		g.running++
		g.wg.Add(1)
		go g.flush()
	}
	g.mu.Unlock()
	select {
	case err := <-q.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush publishes what waits, a group at a time, until nothing does.
func (g *groupPublisher) flush() {
	defer g.wg.Done()
	for {
		g.mu.Lock()
		if len(g.waiting) == 0 {
			g.running--
			g.mu.Unlock()
			return
		}
		n := min(len(g.waiting), g.maxGroup)
		group := g.waiting[:n:n]
		g.waiting = append([]*queued(nil), g.waiting[n:]...)
		g.mu.Unlock()
		g.publish(group)
	}
}

// publish inserts a group's messages, one INSERT per topic, and tells each request how
// its topic's INSERT went.
func (g *groupPublisher) publish(group []*queued) {
	byTopic := map[string][]*message.Message{}
	for _, q := range group {
		byTopic[q.topic] = append(byTopic[q.topic], q.msgs...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	errs := make(map[string]error, len(byTopic))
	for topic, msgs := range byTopic {
		// watermill-sql runs the INSERT under the first message's context; the messages
		// keep their own for the handler that decides them (it is not stored).
		first := msgs[0]
		own := first.Context()
		first.SetContext(ctx)
		errs[topic] = g.next.Publish(topic, msgs...)
		first.SetContext(own)
	}
	for _, q := range group {
		q.done <- errs[q.topic]
	}
}

// Close implements message.Publisher: it refuses further messages and waits for the
// groups on their way (the publisher underneath belongs to the Bus's pool).
func (g *groupPublisher) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
	return nil
}
