// Package secret derives the values users type (password tokens, email codes) from a
// server key and a random id, so that events hold only the id and a keyed hash
// (DESIGN §3). Anyone reading the event history without the key learns nothing usable;
// the mailer derives the same value from the id to put it in the email.
package secret

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"selfreset/domain"
)

// MinKeyLength is the shortest server secret accepted, in bytes.
const MinKeyLength = 32

// Kinds of derived secrets; each is derived under its own label so a code can never
// double as a token.
const (
	KindResetToken = "reset-token"
	KindEmailCode  = "email-code"
)

// TokenLength is the number of Crockford base32 characters in a reset token: 10 characters
// carry 50 bits, above DESIGN's 40-bit floor, and are easy to type.
const TokenLength = 10

// CodeDigits is the length of an email verification code.
const CodeDigits = 6

// crockford is Crockford's base32 alphabet: no I, L, O or U, so nothing is misread.
var crockford = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// ErrUnknownKey means a secret was derived under a key this server no longer has.
var ErrUnknownKey = errors.New("secret: unknown key id")

// Keyring holds the server keys by id. New secrets use the current key; older keys stay
// for as long as secrets derived under them may still be presented (key rotation).
type Keyring struct {
	current string
	keys    map[string][]byte
}

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
