package reset

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"selfreset/domain"
	"selfreset/secret"
)

func testKeyring(t testing.TB, current string, ids ...string) *secret.Keyring {
	t.Helper()
	keys := map[string][]byte{}
	for i, id := range ids {
		keys[id] = bytes.Repeat([]byte{byte(i + 1)}, 32)
	}
	k, err := secret.NewKeyring(current, keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestResetIDRoundTrip(t *testing.T) {
	k := testKeyring(t, "k1", "k1")
	at := time.Date(2030, 1, 2, 9, 0, 0, 123_000_000, time.UTC)
	ref := newResetRef(k, "ACME", "jane.doe@x", " Jane@Example.org", at.Add(456*time.Microsecond))
	id := sealResetID(k, ref)
	got, ok := openResetID(k, id)
	if !ok || got != ref || !got.IssuedAt.Equal(at) {
		t.Fatalf("open: %+v %v; want %+v", got, ok, ref)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(id); err != nil || bytes.Contains(bytes.ToLower(raw), []byte("example")) {
		t.Errorf("the email is visible in the reset id (%v)", err)
	}
	if !got.emailMatches(k, "jane@example.org") || got.emailMatches(k, "jane@example.com") || got.emailMatches(k, "") {
		t.Error("the email tag does not tell the request's email from another")
	}
	// Key rotation: a reset id sealed under k1 still opens once k2 is current, its email
	// still matches, and so does the id Resend seals from it under k2.
	rotated := testKeyring(t, "k2", "k1", "k2")
	got, ok = openResetID(rotated, id)
	if !ok || !got.emailMatches(rotated, "jane@example.org") {
		t.Error("reset id from the previous key no longer opens or matches")
	}
	resent := got
	resent.IssuedAt = at.Add(time.Minute)
	if again, ok := openResetID(rotated, sealResetID(rotated, resent)); !ok || again != resent || !again.emailMatches(rotated, "jane@example.org") {
		t.Error("a reset id resealed under the new key lost its email")
	}
	// Without the key the email tag was made under, nothing matches.
	if got.emailMatches(testKeyring(t, "k2", "k2"), "jane@example.org") {
		t.Error("matched under a key that is gone")
	}
	// The length does not depend on the request, for any identifiers an account can have.
	for _, in := range [][3]string{{"AB", "j", "a@b.c"}, {strings.Repeat("Z", 32), strings.Repeat("x", 64), strings.Repeat("e", 240) + "@x.org"}} {
		if other := sealResetID(k, newResetRef(k, in[0], in[1], in[2], at)); len(other) != len(id) {
			t.Errorf("reset id for %q is %d characters, not %d", in, len(other), len(id))
		}
	}
	// Inputs that cannot name an account still make ids that open.
	long := newResetRef(k, strings.Repeat("Z", domain.MaxIdentLen), strings.Repeat("x", domain.MaxIdentLen), "a@b.c", at)
	if got, ok := openResetID(k, sealResetID(k, long)); !ok || got != long {
		t.Error("a reset id for the longest inputs does not open")
	}
	// Another server's key, tampering, truncation, garbage.
	if _, ok := openResetID(testKeyring(t, "k1", "k9", "k1"), id); ok {
		t.Error("opened under a different key")
	}
	raw := []byte(id)
	for i := range raw {
		c := raw[i]
		raw[i] = 'A'
		if c == 'A' {
			raw[i] = 'B'
		}
		if _, ok := openResetID(k, string(raw)); ok {
			t.Fatalf("tampered at %d still opens", i)
		}
		raw[i] = c
	}
	for _, bad := range []string{"", "x", id[:len(id)-1], id + "A", strings.Repeat("A", maxResetIDLen+1), "!!!!"} {
		if _, ok := openResetID(k, bad); ok {
			t.Errorf("%q opens", bad)
		}
	}
}
