// Package secret derives the values users type (password tokens, email codes) from a
// server key and a random id, so that events hold only the id and a keyed hash
// (DESIGN §3). Anyone reading the event history without the key learns nothing usable;
// the mailer derives the same value from the id to put it in the email.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"selfreset/domain"
)

// MinKeyLength is the shortest server secret accepted, in bytes.
const MinKeyLength = 32

// Kinds of derived secrets, the one list (commands issue them, mail_deliveries stores
// them); each is derived under its own label so a code can never double as a token.
const (
	KindResetToken = "reset-token"
	KindEmailCode  = "email-code"
)

// TokenLength is the number of Crockford base32 characters in a reset token: 10 characters
// carry 50 bits, above DESIGN's 40-bit floor, and are easy to type.
const TokenLength = 10

// CodeDigits is the length of an email verification code.
const CodeDigits = 6

// crockfordAlphabet is Crockford's base32 alphabet: no I, L, O or U, so nothing is misread.
const crockfordAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var crockford = base32.NewEncoding(crockfordAlphabet).WithPadding(base32.NoPadding)

// TokenLine matches a reset token alone on its line, as a mail carries it.
var TokenLine = regexp.MustCompile(`^[` + crockfordAlphabet + `]{` + strconv.Itoa(TokenLength) + `}$`)

// ErrUnknownKey means a secret was derived under a key this server no longer has.
var ErrUnknownKey = errors.New("secret: unknown key id")

// Keyring holds the server keys by id. New secrets use the current key; older keys stay
// for as long as secrets derived under them may still be presented (key rotation).
type Keyring struct {
	current string
	keys    map[string][]byte
	// aeads keeps each (key id, label) cipher once derived: deriving the key and setting
	// up AES-GCM on every call was 5% of serve's allocations under load. The AEADs hold
	// no state between calls, so goroutines share them.
	aeads sync.Map // aeadKey → cipher.AEAD
}

type aeadKey struct{ keyID, label string }

// NewKeyring builds a keyring whose current key is currentID. Every key must be at least
// MinKeyLength bytes.
func NewKeyring(currentID string, keys map[string][]byte) (*Keyring, error) {
	if _, ok := keys[currentID]; !ok {
		return nil, fmt.Errorf("secret: current key %q is not in the keyring", currentID)
	}
	copied := make(map[string][]byte, len(keys))
	for id, k := range keys {
		if len(k) < MinKeyLength {
			return nil, fmt.Errorf("secret: key %q is %d bytes; at least %d are required", id, len(k), MinKeyLength)
		}
		copied[id] = append([]byte(nil), k...)
	}
	return &Keyring{current: currentID, keys: copied}, nil
}

// CurrentKeyID is the id new secrets are derived under.
func (k *Keyring) CurrentKeyID() string { return k.current }

func (k *Keyring) mac(keyID string, parts ...string) ([]byte, error) {
	key, ok := k.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, keyID)
	}
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0}) // separator: ("ab","c") and ("a","bc") differ
	}
	return m.Sum(nil), nil
}

// Value derives the value a user types for a secret of kind with the given id.
func (k *Keyring) Value(kind, keyID, id string) (string, error) {
	sum, err := k.mac(keyID, "value", kind, id)
	if err != nil {
		return "", err
	}
	switch kind {
	case KindEmailCode:
		// 2^32 mod 10^6 leaves a bias below 0.03%, far too small to help a guesser
		// who is stopped after five tries.
		return fmt.Sprintf("%06d", binary.BigEndian.Uint32(sum)%1_000_000), nil
	default:
		return crockford.EncodeToString(sum)[:TokenLength], nil
	}
}

// Normalize turns what a person typed into the canonical value: spaces and dashes go,
// letters are upper-cased, and Crockford's look-alikes (I, L → 1; O → 0) are mapped.
func Normalize(kind, typed string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(typed) {
		switch {
		case r == ' ' || r == '-' || r == '\t':
			continue
		case kind == KindResetToken && (r == 'I' || r == 'L'):
			b.WriteRune('1')
		case kind == KindResetToken && r == 'O':
			b.WriteRune('0')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// hashValue is the keyed hash stored in events. A plain hash of a 50-bit token could be
// brute-forced offline; a keyed one cannot without the server key.
func (k *Keyring) hashValue(kind, keyID, value string) (string, error) {
	sum, err := k.mac(keyID, "verify", kind, value)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum), nil
}

// Issue creates a new secret of kind: a random id, the current key id and the keyed hash
// of its value.
func (k *Keyring) Issue(kind string) (domain.Secret, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return domain.Secret{}, fmt.Errorf("secret: random id: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	value, err := k.Value(kind, k.current, id)
	if err != nil {
		return domain.Secret{}, err
	}
	hash, err := k.hashValue(kind, k.current, value)
	if err != nil {
		return domain.Secret{}, err
	}
	return domain.Secret{ID: id, KeyID: k.current, Hash: hash}, nil
}

// Matcher returns a domain.SecretMatcher for kind that compares in constant time.
// A secret under an unknown key never matches.
func (k *Keyring) Matcher(kind string) domain.SecretMatcher {
	return func(keyID, hash, presented string) bool {
		got, err := k.hashValue(kind, keyID, Normalize(kind, presented))
		if err != nil {
			return false
		}
		return subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1
	}
}

// HashEmail is a keyed hash of a normalized address: auditors can see that two requests
// named the same address without learning it.
func (k *Keyring) HashEmail(email string) string {
	sum, _ := k.mac(k.current, "email", domain.NormalizeEmail(email)) // current key always exists
	return k.current + ":" + hex.EncodeToString(sum[:16])
}

// Seal authenticates data under the current key (for opaque ids handed to clients).
func (k *Keyring) Seal(label string, data []byte) []byte {
	sum, _ := k.mac(k.current, "seal", label, string(data))
	return sum
}

// CheckSeal reports whether tag was made by Seal for data under keyID, in constant time.
func (k *Keyring) CheckSeal(keyID, label string, data, tag []byte) bool {
	sum, err := k.mac(keyID, "seal", label, string(data))
	return err == nil && hmac.Equal(sum, tag)
}

// Encrypt hides data under the current key with AES-256-GCM (for values that must wait
// somewhere durable, such as a typed email in the reset intake queue, and be read back
// later by this service only). label separates uses: data encrypted for one label does
// not open under another. The result names the key, so Decrypt works across rotations
// for as long as the old key stays in the keyring.
func (k *Keyring) Encrypt(label string, data []byte) ([]byte, error) {
	aead, err := k.aead(k.current, label)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+len(k.current)+aead.NonceSize()+len(data)+aead.Overhead())
	out = append(out, byte(len(k.current)))
	out = append(out, k.current...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secret: random nonce: %w", err)
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, data, []byte(label)), nil
}

// ErrNotOpened means Decrypt was given something Encrypt did not make under a key this
// keyring has (or it was changed since).
var ErrNotOpened = errors.New("secret: cannot decrypt")

// Decrypt reverses Encrypt for the same label.
func (k *Keyring) Decrypt(label string, sealed []byte) ([]byte, error) {
	if len(sealed) < 1 || len(sealed) < 1+int(sealed[0]) {
		return nil, ErrNotOpened
	}
	keyID, rest := string(sealed[1:1+int(sealed[0])]), sealed[1+int(sealed[0]):]
	aead, err := k.aead(keyID, label)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotOpened, err)
	}
	if len(rest) < aead.NonceSize() {
		return nil, ErrNotOpened
	}
	out, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], []byte(label))
	if err != nil {
		return nil, ErrNotOpened
	}
	return out, nil
}

// aead is AES-256-GCM under a key derived from server key keyID for label, so the
// encryption key is never the raw server key the MACs use.
func (k *Keyring) aead(keyID, label string) (cipher.AEAD, error) {
	if a, ok := k.aeads.Load(aeadKey{keyID, label}); ok {
		return a.(cipher.AEAD), nil
	}
	key, err := k.mac(keyID, "encrypt", label)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k.aeads.Store(aeadKey{keyID, label}, a)
	return a, nil
}
