package reset

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
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

// TestResetIDOpaque: the reset id handed out (and put in the email link) shows no
// provider, login or email; ids of the readable version 2 still open.
func TestResetIDOpaque(t *testing.T) {
	k := testKeyring(t, "k1", "k1")
	at := time.Date(2030, 1, 2, 9, 0, 0, 0, time.UTC)
	ref := newResetRef(k, "ACMECORP", "jane.doe", "jane@example.org", at)
	id := sealResetID(k, ref)
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || raw[0] != resetIDEncrypted {
		t.Fatalf("not an encrypted id: %v", err)
	}
	for _, s := range []string{"ACMECORP", "jane.doe", "jane", "example"} {
		if bytes.Contains(raw, []byte(s)) || strings.Contains(id, s) {
			t.Errorf("%q readable in the reset id", s)
		}
	}
	// Two ids for the same request differ (random nonce), yet both open to the same ref.
	if other := sealResetID(k, ref); other == id {
		t.Error("the same request sealed twice gave the same id")
	} else if got, ok := openResetID(k, other); !ok || got != ref {
		t.Error("second id does not open")
	}
	// A version-2 id (readable, made before this change) still opens.
	data := []byte{resetIDVersion, byte(len("k1"))}
	data = append(data, "k1"...)
	data = binary.BigEndian.AppendUint64(data, uint64(at.UnixMilli()))
	data = appendPadded(data, ref.Provider, resetIDCodeWidth)
	data = appendPadded(data, ref.Login, resetIDLoginWidth)
	data = append(data, byte(len(ref.EmailKeyID)))
	data = append(data, ref.EmailKeyID...)
	data = append(data, ref.EmailTag[:]...)
	v2 := base64.RawURLEncoding.EncodeToString(append(data, k.Seal(resetIDLabel, data)...))
	if got, ok := openResetID(k, v2); !ok || got != ref {
		t.Errorf("version-2 id no longer opens: %+v %v", got, ok)
	}
	// The encrypted wrapper must hold a sealed version-2 id: encrypting junk does not open.
	junk, err := k.Encrypt(resetIDCipherLabel, bytes.Repeat([]byte{2}, 250))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := openResetID(k, base64.RawURLEncoding.EncodeToString(append([]byte{resetIDEncrypted}, junk...))); ok {
		t.Error("an encrypted id without the seal opened")
	}
}

// TestLinkID: the email link's id names the account's request with the recovery email,
// as of the token, so it reaches that token; a different email does not.
func TestLinkID(t *testing.T) {
	k := testKeyring(t, "k1", "k1")
	issued := time.Date(2030, 1, 2, 9, 0, 0, 123_456_789, time.UTC)
	ref, ok := openResetID(k, LinkID(k, "acme", "Jane.Doe", "jane@example.org", issued))
	if !ok {
		t.Fatal("link id does not open")
	}
	u := domain.User{Registered: true, Provider: "ACME", Login: "jane.doe", RecoveryEmail: "jane@example.org",
		Token: &domain.ResetToken{IssuedAt: issued, ExpiresAt: issued.Add(5 * time.Minute), State: domain.TokenActive}}
	if ref.Provider != domain.NormalizeProviderCode("acme") || ref.Login != domain.NormalizeLogin("Jane.Doe") || !tokenForRequest(k, u, ref) {
		t.Errorf("link id %+v does not reach the token", ref)
	}
	u.RecoveryEmail = "other@example.org"
	if tokenForRequest(k, u, ref) {
		t.Error("link id reaches a token of another recovery email")
	}
}
