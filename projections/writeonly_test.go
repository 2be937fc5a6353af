package projections

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// tagProbe records the command tags its Exec calls get back: empty when the Runner
// pipelines its writes (they are sent later, together), the statement's own otherwise.
type tagProbe struct {
	name string
	mu   sync.Mutex
	tags map[string]int
}

func (p *tagProbe) Name() string { return p.name }
func (p *tagProbe) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	tag, err := tx.Exec(ctx, `SELECT 1`)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tags[tag.String()]++
	return err
}

// writeOnlyProbe is a tagProbe that declares it only writes.
type writeOnlyProbe struct{ *tagProbe }

func (writeOnlyProbe) WritesOnly() {}

// The writes of a WriteOnly projection are pipelined like a read model's when a batch is
// applied (an event applied alone is not: process); a projection that reads its writes'
// results always gets them one by one.
func TestWriteOnlyProjectionsArePipelined(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeHistory()
	plain := &tagProbe{name: "probe_plain", tags: map[string]int{}}
	pipelined := writeOnlyProbe{&tagProbe{name: "probe_write_only", tags: map[string]int{}}}
	r := e.runner([]Projection{plain, pipelined})
	e.runToHead(r)
	if len(plain.tags) != 1 || plain.tags["SELECT 1"] == 0 {
		t.Errorf("plain projection's tags %v, want only SELECT 1", plain.tags)
	}
	if pipelined.tags[""] == 0 || len(pipelined.tags) > 2 {
		t.Errorf("write-only projection's tags %v, want empty ones (pipelined batches)", pipelined.tags)
	}
}
