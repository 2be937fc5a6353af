package secret_test

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"selfreset/secret"
)

var (
	key1 = bytes.Repeat([]byte{0x11}, secret.MinKeyLength)
	key2 = bytes.Repeat([]byte{0x22}, secret.MinKeyLength+8)
)

func ring(t testing.TB, current string, keys map[string][]byte) *secret.Keyring {
	t.Helper()
	k, err := secret.NewKeyring(current, keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ring1(t testing.TB) *secret.Keyring { return ring(t, "k1", map[string][]byte{"k1": key1}) }

func value(t testing.TB, k *secret.Keyring, kind, keyID, id string) string {
	t.Helper()
	v, err := k.Value(kind, keyID, id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var (
	tokenRe = regexp.MustCompile(`^[0-9ABCDEFGHJKMNPQRSTVWXYZ]{10}$`) // Crockford: no I, L, O, U
	codeRe  = regexp.MustCompile(`^[0-9]{6}$`)
)

func TestValue(t *testing.T) {
	k := ring1(t)
	a := value(t, k, secret.KindResetToken, "k1", "id-1")
	if b := value(t, k, secret.KindResetToken, "k1", "id-1"); a != b {
		t.Fatalf("not deterministic: %q vs %q", a, b)
	}
	// Another keyring holding the same key bytes (the mailer's) derives the same value.
	if b := value(t, ring1(t), secret.KindResetToken, "k1", "id-1"); a != b {
		t.Fatalf("another process derives %q, want %q", b, a)
	}
	if b := value(t, k, secret.KindResetToken, "k1", "id-2"); a == b {
		t.Errorf("different ids gave the same value %q", a)
	}
	other := ring(t, "k1", map[string][]byte{"k1": key2})
	if b := value(t, other, secret.KindResetToken, "k1", "id-1"); a == b {
		t.Errorf("different keys gave the same value %q", a)
	}
	both := ring(t, "k1", map[string][]byte{"k1": key1, "k2": key2})
	if b := value(t, both, secret.KindResetToken, "k2", "id-1"); a == b {
		t.Errorf("different key ids gave the same value %q", a)
	}
	// Kinds are derived under their own labels: the code is not a prefix/digest of the token.
	c1 := value(t, k, secret.KindEmailCode, "k1", "id-1")
	tokenLike := value(t, k, "some-other-kind", "k1", "id-1")
	if tokenLike == a {
		t.Errorf("kinds %q and %q share the value %q", secret.KindResetToken, "some-other-kind", a)
	}
	if _, err := k.Value(secret.KindResetToken, "nope", "id-1"); !errors.Is(err, secret.ErrUnknownKey) {
		t.Errorf("unknown key id: err = %v", err)
	}

	// Shapes: tokens are 10 Crockford characters, codes 6 digits (and vary).
	codes, tokens := map[string]bool{}, map[string]bool{}
	for i := range 200 {
		id := strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
		tok := value(t, k, secret.KindResetToken, "k1", id)
		if !tokenRe.MatchString(tok) || len(tok) != secret.TokenLength {
			t.Fatalf("token %q is not 10 Crockford characters", tok)
		}
		code := value(t, k, secret.KindEmailCode, "k1", id)
		if !codeRe.MatchString(code) || len(code) != secret.CodeDigits {
			t.Fatalf("code %q is not 6 digits", code)
		}
		tokens[tok], codes[code] = true, true
	}
	if len(tokens) < 199 || len(codes) < 190 {
		t.Errorf("values repeat too often: %d distinct tokens, %d distinct codes of 200", len(tokens), len(codes))
	}
	if !codeRe.MatchString(c1) {
		t.Errorf("code %q", c1)
	}
}

func TestIssue(t *testing.T) {
	k := ring1(t)
	seen := map[string]bool{}
	for range 50 {
		s, err := k.Issue(secret.KindResetToken)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.ID) != 32 || s.KeyID != "k1" || len(s.Hash) != 64 || seen[s.ID] {
			t.Fatalf("secret %+v", s)
		}
		seen[s.ID] = true
		v := value(t, k, secret.KindResetToken, s.KeyID, s.ID)
		if strings.Contains(strings.ToUpper(s.Hash), v) || strings.Contains(s.ID, v) {
			t.Fatalf("the value %q shows in the stored secret %+v", v, s)
		}
		if !k.Matcher(secret.KindResetToken)(s.KeyID, s.Hash, v) {
			t.Fatalf("issued secret does not match its own value")
		}
	}
}

// issueWith finds an issued token whose value contains want, to exercise look-alikes.
func issueWith(t *testing.T, k *secret.Keyring, want string) (keyID, hash, val string) {
	t.Helper()
	for range 10000 {
		s, err := k.Issue(secret.KindResetToken)
		if err != nil {
			t.Fatal(err)
		}
		v := value(t, k, secret.KindResetToken, s.KeyID, s.ID)
		if strings.ContainsAny(v, want) {
			return s.KeyID, s.Hash, v
		}
	}
	t.Fatalf("no token containing %q", want)
	return
}

func TestMatcher(t *testing.T) {
	k := ring1(t)
	match := k.Matcher(secret.KindResetToken)

	keyID, hash, v := issueWith(t, k, "1")
	_, hash0, v0 := issueWith(t, k, "0")
	accepted := map[string]string{
		"as sent":           v,
		"lower case":        strings.ToLower(v),
		"spaces":            v[:5] + " " + v[5:],
		"dashes":            v[:3] + "-" + v[3:6] + "-" + v[6:],
		"surrounding blank": "  " + v + "\t",
		"I for 1":           strings.ReplaceAll(v, "1", "I"),
		"l for 1":           strings.ReplaceAll(v, "1", "l"),
		"L for 1":           strings.ReplaceAll(v, "1", "L"),
		"i for 1":           strings.ReplaceAll(v, "1", "i"),
	}
	for name, typed := range accepted {
		if !match(keyID, hash, typed) {
			t.Errorf("%s: %q refused (value %q)", name, typed, v)
		}
	}
	for name, typed := range map[string]string{"O for 0": strings.ReplaceAll(v0, "0", "O"), "o for 0": strings.ReplaceAll(v0, "0", "o")} {
		if !match(keyID, hash0, typed) {
			t.Errorf("%s: %q refused (value %q)", name, typed, v0)
		}
	}

	_, _, otherVal := issueWith(t, k, "0123456789ABCDEFGHJKMNPQRSTVWXYZ")
	flip := []byte(v)
	if flip[0] == 'A' {
		flip[0] = 'B'
	} else {
		flip[0] = 'A'
	}
	for name, typed := range map[string]string{
		"another token":   otherVal,
		"one char off":    string(flip),
		"too short":       v[:9],
		"too long":        v + "0",
		"empty":           "",
		"the hash itself": hash,
	} {
		if typed != v && match(keyID, hash, typed) {
			t.Errorf("%s: %q accepted", name, typed)
		}
	}
	if match("nope", hash, v) {
		t.Error("a secret under an unknown key id matched")
	}
	// A code matcher never accepts a token and vice versa.
	if k.Matcher(secret.KindEmailCode)(keyID, hash, v) {
		t.Error("the code matcher accepted a token")
	}
	c, err := k.Issue(secret.KindEmailCode)
	if err != nil {
		t.Fatal(err)
	}
	code := value(t, k, secret.KindEmailCode, c.KeyID, c.ID)
	cm := k.Matcher(secret.KindEmailCode)
	if !cm(c.KeyID, c.Hash, code) || !cm(c.KeyID, c.Hash, code[:3]+" "+code[3:]) || !cm(c.KeyID, c.Hash, code[:3]+"-"+code[3:]) {
		t.Errorf("code %q refused", code)
	}
	if match(c.KeyID, c.Hash, code) {
		t.Error("the token matcher accepted a code")
	}
}

func TestNormalize(t *testing.T) {
	cases := []struct{ kind, in, want string }{
		{secret.KindResetToken, "abcd-efgh 12", "ABCDEFGH12"},
		{secret.KindResetToken, "iIlLoO", "111100"},
		{secret.KindResetToken, "\tX Y-Z ", "XYZ"},
		{secret.KindEmailCode, "123 456", "123456"},
		{secret.KindEmailCode, "12-34-56", "123456"},
		{secret.KindEmailCode, "O1", "O1"}, // look-alikes are a token rule only
	}
	for _, tc := range cases {
		if got := secret.Normalize(tc.kind, tc.in); got != tc.want {
			t.Errorf("Normalize(%s, %q) = %q, want %q", tc.kind, tc.in, got, tc.want)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	old := ring1(t)
	s, err := old.Issue(secret.KindResetToken)
	if err != nil {
		t.Fatal(err)
	}
	v := value(t, old, secret.KindResetToken, s.KeyID, s.ID)
	emailHashOld := old.HashEmail("jane@example.org")
	tag := old.Seal("session", []byte("data"))

	rotated := ring(t, "k2", map[string][]byte{"k1": key1, "k2": key2})
	if rotated.CurrentKeyID() != "k2" || old.CurrentKeyID() != "k1" {
		t.Fatalf("current key ids %q, %q", old.CurrentKeyID(), rotated.CurrentKeyID())
	}
	// A secret issued under k1 still matches, and the mailer still derives its value.
	if !rotated.Matcher(secret.KindResetToken)(s.KeyID, s.Hash, v) {
		t.Error("a k1 secret no longer matches after rotation")
	}
	if got := value(t, rotated, secret.KindResetToken, "k1", s.ID); got != v {
		t.Errorf("k1 value after rotation = %q, want %q", got, v)
	}
	if !rotated.CheckSeal("k1", "session", []byte("data"), tag) {
		t.Error("a k1 seal no longer checks after rotation")
	}
	// New secrets use k2.
	n, err := rotated.Issue(secret.KindResetToken)
	if err != nil {
		t.Fatal(err)
	}
	if n.KeyID != "k2" {
		t.Errorf("new secret under %q, want k2", n.KeyID)
	}
	if h := rotated.HashEmail("jane@example.org"); !strings.HasPrefix(h, "k2:") || h == emailHashOld {
		t.Errorf("email hash after rotation = %q", h)
	}
	// Once k1 is retired, its secrets never match.
	retired := ring(t, "k2", map[string][]byte{"k2": key2})
	if retired.Matcher(secret.KindResetToken)(s.KeyID, s.Hash, v) {
		t.Error("a secret under a retired key matched")
	}
	if retired.CheckSeal("k1", "session", []byte("data"), tag) {
		t.Error("a seal under a retired key checked")
	}
}

func TestNewKeyring(t *testing.T) {
	short := bytes.Repeat([]byte{1}, secret.MinKeyLength-1)
	for name, tc := range map[string]struct {
		current string
		keys    map[string][]byte
	}{
		"short current key":   {"k1", map[string][]byte{"k1": short}},
		"short old key":       {"k1", map[string][]byte{"k1": key1, "k0": short}},
		"empty key":           {"k1", map[string][]byte{"k1": {}}},
		"current not in ring": {"k3", map[string][]byte{"k1": key1}},
		"no keys":             {"k1", nil},
	} {
		if k, err := secret.NewKeyring(tc.current, tc.keys); err == nil || k != nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The keyring copies the key: changing the caller's slice later changes nothing.
	buf := bytes.Clone(key1)
	k := ring(t, "k1", map[string][]byte{"k1": buf})
	before := value(t, k, secret.KindResetToken, "k1", "id")
	buf[0] ^= 0xff
	if after := value(t, k, secret.KindResetToken, "k1", "id"); after != before {
		t.Error("keyring shares the caller's key bytes")
	}
}

func TestHashEmail(t *testing.T) {
	k := ring1(t)
	h := k.HashEmail("jane.doe@example.org")
	for _, variant := range []string{"Jane.Doe@Example.ORG", "  jane.doe@example.org ", "JANE.DOE@EXAMPLE.ORG"} {
		if got := k.HashEmail(variant); got != h {
			t.Errorf("HashEmail(%q) = %q, want %q", variant, got, h)
		}
	}
	if !strings.HasPrefix(h, "k1:") || len(h) != len("k1:")+32 {
		t.Errorf("hash %q", h)
	}
	for _, part := range []string{"jane", "doe", "example", "@"} {
		if strings.Contains(strings.ToLower(h), part) {
			t.Errorf("hash %q contains %q", h, part)
		}
	}
	if k.HashEmail("jane.doe@example.com") == h {
		t.Error("different addresses share a hash")
	}
	if ring(t, "k1", map[string][]byte{"k1": key2}).HashEmail("jane.doe@example.org") == h {
		t.Error("different keys give the same hash")
	}
}

func TestSeal(t *testing.T) {
	k := ring1(t)
	data := []byte("token-id-123")
	tag := k.Seal("reset", data)
	if !k.CheckSeal("k1", "reset", data, tag) {
		t.Fatal("round trip failed")
	}
	if !bytes.Equal(tag, k.Seal("reset", data)) {
		t.Error("Seal is not deterministic")
	}
	flipped := bytes.Clone(tag)
	flipped[len(flipped)-1] ^= 1
	for name, ok := range map[string]bool{
		"tampered data":  k.CheckSeal("k1", "reset", []byte("token-id-124"), tag),
		"tampered tag":   k.CheckSeal("k1", "reset", data, flipped),
		"truncated tag":  k.CheckSeal("k1", "reset", data, tag[:16]),
		"empty tag":      k.CheckSeal("k1", "reset", data, nil),
		"other label":    k.CheckSeal("k1", "session", data, tag),
		"unknown key id": k.CheckSeal("k9", "reset", data, tag),
		// The separator keeps (label, data) pairs apart.
		"label/data boundary moved": k.CheckSeal("k1", "rese", []byte("t"+string(data)), tag),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	k := ring1(b)
	for b.Loop() {
		if _, err := k.Issue(secret.KindResetToken); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatcher(b *testing.B) {
	k := ring1(b)
	s, err := k.Issue(secret.KindResetToken)
	if err != nil {
		b.Fatal(err)
	}
	v := value(b, k, secret.KindResetToken, s.KeyID, s.ID)
	match := k.Matcher(secret.KindResetToken)
	for b.Loop() {
		if !match(s.KeyID, s.Hash, v) {
			b.Fatal("no match")
		}
	}
}

func TestEncrypt(t *testing.T) {
	k := ring1(t)
	plain := []byte("jane@example.org")
	sealed, err := k.Encrypt("intake", plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, plain) {
		t.Fatal("the plain text shows in the sealed value")
	}
	again, err := k.Encrypt("intake", plain)
	if err != nil || bytes.Equal(again, sealed) {
		t.Errorf("two encryptions of one value are equal (nonce reused?): %v", err)
	}
	// A rotated keyring that still holds k1 opens it; one without k1 does not.
	rotated := ring(t, "k2", map[string][]byte{"k1": key1, "k2": key2})
	if got, err := rotated.Decrypt("intake", sealed); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Decrypt after rotation = %q, %v", got, err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for name, tc := range map[string]struct {
		k     *secret.Keyring
		label string
		in    []byte
	}{
		"other label":  {k, "mail", sealed},
		"tampered":     {k, "intake", flipped},
		"truncated":    {k, "intake", sealed[:10]},
		"empty":        {k, "intake", nil},
		"key not held": {ring(t, "k2", map[string][]byte{"k2": key2}), "intake", sealed},
	} {
		if _, err := tc.k.Decrypt(tc.label, tc.in); !errors.Is(err, secret.ErrNotOpened) {
			t.Errorf("%s: err = %v, want ErrNotOpened", name, err)
		}
	}
}

// The ciphers Encrypt and Decrypt keep per key and label are shared by every caller:
// sealed from many goroutines at once, each value opens to itself, under its own label
// only, and across a rotation.
func TestEncryptSharedAcrossGoroutines(t *testing.T) {
	old := ring1(t)
	k := ring(t, "k2", map[string][]byte{"k1": key1, "k2": key2})
	sealedBefore, err := old.Encrypt("email", []byte("before@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				label := []string{"email", "notice"}[i%2]
				data := []byte(fmt.Sprintf("g%d-i%d@example.org", g, i))
				sealed, err := k.Encrypt(label, data)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := k.Decrypt(label, sealed); err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s: opened to %q, %v", data, got, err)
					return
				}
				if _, err := k.Decrypt("other", sealed); err == nil {
					t.Errorf("%s opened under another label", data)
					return
				}
				if got, err := k.Decrypt("email", sealedBefore); err != nil || string(got) != "before@example.org" {
					t.Errorf("sealed under k1: %q, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkEncrypt(b *testing.B) {
	k := ring1(b)
	data := []byte("someone@example.org")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Encrypt("email", data); err != nil {
			b.Fatal(err)
		}
	}
}
