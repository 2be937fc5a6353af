package reset

import (
	"testing"
	"time"
)

// FuzzOpenResetID: no string opens unless this keyring sealed it, and what opens seals
// back to an id that opens to the same reference.
func FuzzOpenResetID(f *testing.F) {
	k := testKeyring(f, "k1", "k1")
	at := time.Date(2030, 1, 2, 9, 0, 0, 0, time.UTC)
	f.Add(sealResetID(k, newResetRef(k, "ACME", "jane", "jane@example.org", at)))
	f.Fuzz(func(t *testing.T, id string) {
		ref, ok := openResetID(k, id)
		if !ok {
			if ref != (Ref{}) {
				t.Fatalf("a refused id returned %+v", ref)
			}
			return
		}
		got, ok := openResetID(k, sealResetID(k, ref))
		if !ok || got != ref {
			t.Fatalf("resealed %+v opened as %+v, %v", ref, got, ok)
		}
	})
}
