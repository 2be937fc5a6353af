package postgres

import (
	"testing"

	"selfreset/eventstore"
)

// A NOTIFY payload reads back as the position it was written from; anything else is
// refused rather than read as some position.
func TestPositionPayload(t *testing.T) {
	for _, p := range []eventstore.Position{eventstore.Start, {Commit: 7, Prepare: 42}, {Commit: 1<<64 - 1, Prepare: 1<<63 + 5}} {
		if got, ok := parsePositionPayload(positionPayload(p)); !ok || got != p {
			t.Errorf("%v written and read back: %v, %v", p, got, ok)
		}
	}
	for _, bad := range []string{"", "7", "7/", "/42", "7/42/1", "-1/2", "x/2", "7 /42", "18446744073709551616/1"} {
		if p, ok := parsePositionPayload(bad); ok {
			t.Errorf("%q read as %v", bad, p)
		}
	}
}
