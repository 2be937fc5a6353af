package postgres

import "sync"

// The heads an Update last saw. A decision on an account this process decided on a
// moment ago usually starts where the last one ended: its stream's head is the one the
// last Update wrote, and the provider's the one it read. The two round trips of updateIn
// (read under the locks, then write) become one (updateAtOnce): the decision runs on the
// remembered heads with empty tails, and the batch that writes checks, under the locks,
// that every stream is still there (expectHeadsSQL). A head that moved (another
// process wrote, or an Append here) fails that check, and the group is read and decided
// again the usual way. So a remembered head is never trusted, only tried: it costs one
// wasted round trip when wrong, and a read statement and a round trip when right.

// maxRememberedHeads bounds the memory: about a hundred bytes a stream. Past it, an
// arbitrary head is forgotten, which costs its stream one decision the usual way.
const maxRememberedHeads = 4096

// head is a remembered stream head: its last revision and, when known (the stream was
// decided on or written here, not only read beside another), its last event's chain value.
type head struct {
	revision   int64
	chain      string
	chainKnown bool
}

// headCache is the heads remembered, by stream. Safe for concurrent use.
type headCache struct {
	mu    sync.Mutex
	heads map[string]head
}

func (c *headCache) get(stream string) (head, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.heads[stream]
	return h, ok
}

// put remembers h as stream's head, unless it would forget a chain value known for the
// same revision.
func (c *headCache) put(stream string, h head) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.heads == nil {
		c.heads = make(map[string]head)
	}
	if old, ok := c.heads[stream]; ok && old.revision == h.revision && old.chainKnown && !h.chainKnown {
		return
	}
	if _, ok := c.heads[stream]; !ok && len(c.heads) >= maxRememberedHeads {
		for s := range c.heads { // Go's map order: an arbitrary one
			delete(c.heads, s)
			break
		}
	}
	c.heads[stream] = h
}

func (c *headCache) forget(stream string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.heads, stream)
}
