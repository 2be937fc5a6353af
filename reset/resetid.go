package reset

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"

	"selfreset/domain"
	"selfreset/secret"
)

// A reset id is handed back by POST /api/v1/password-resets and names the request in the
// later Resend and Change Password calls. It is (provider, login, issued-at, a keyed hash
// of the email) sealed with the server key, so it needs no lookup, cannot be forged, and
// is minted the same way whether or not the request matched an account. The email never
// appears in it, only secret.Keyring.Seal over the normalized address (the email tag),
// which a later call checks against the account's recovery email: a reset id made with a
// wrong email never reaches the owner's token.
//
// The id handed out is version 3: the byte 3, then secret.Keyring.Encrypt (AES-256-GCM
// under the server key, label resetIDCipherLabel) of the version-2 bytes below, then
// base64url without padding. Nothing in it is readable without the key (the login and
// provider were readable in version 2), so it can travel in an email link. Version-2 ids
// still open (they live as long as a token, minutes), but none is handed out any more.
//
// Version-2 layout (the plaintext):
//
//	version(1) | len(keyID)(1) keyID | issuedAt unix ms (8) |
//	len(code)(1) code pad | len(login)(1) login pad |
//	len(emailKeyID)(1) emailKeyID | emailTag(32) | tag(32)
//
// The code is zero-padded to resetIDCodeWidth bytes and the login to resetIDLoginWidth
// (the longest ones the domain accepts), so the id's length does not depend on the
// request; only inputs that cannot name an account at all are longer. The email tag is
// made under the key emailKeyID names, which is the sealing key when the request was made
// and is carried unchanged into the ids Resend hands out, so a key rotation does not
// break a request in flight (the old key stays in the keyring while its ids may be used).
// The tag is secret.Keyring.Seal over everything before it.
//
// The labels keep their old "http." names: ids handed out before the protocol moved out
// of the http package must still open.
const (
	resetIDLabel       = "http.reset-id"
	resetEmailLabel    = "http.reset-id.email"
	resetIDCipherLabel = "reset.reset-id"
	resetIDVersion     = 2 // the plaintext; 1 had no email tag; such ids no longer open
	resetIDEncrypted   = 3 // what is handed out: the version-2 bytes, encrypted
	resetIDTagLen      = 32
	resetIDCodeWidth   = 32   // domain.ValidProviderCode: at most 32 characters
	resetIDLoginWidth  = 64   // domain.ValidLogin: at most 64 characters
	maxResetIDLen      = 1024 // characters; anything longer is not one of ours
)

// Ref is what a reset id carries.
type Ref struct {
	Provider   string    // normalized, as requested
	Login      string    // normalized, as requested
	IssuedAt   time.Time // millisecond precision
	EmailKeyID string    // the key EmailTag was made under
	EmailTag   [resetIDTagLen]byte
}

// newResetRef is the reference for a Forgot Password request made at now.
func newResetRef(k *secret.Keyring, code, login, email string, now time.Time) Ref {
	ref := Ref{Provider: code, Login: login, IssuedAt: now.Truncate(time.Millisecond), EmailKeyID: k.CurrentKeyID()}
	copy(ref.EmailTag[:], k.Seal(resetEmailLabel, []byte(domain.NormalizeEmail(email))))
	return ref
}

// emailMatches reports, in constant time, whether the request ref names was made with
// email (normalized as the domain compares it). An empty email never matches.
func (ref Ref) emailMatches(k *secret.Keyring, email string) bool {
	email = domain.NormalizeEmail(email)
	return email != "" && ref.EmailKeyID != "" && k.CheckSeal(ref.EmailKeyID, resetEmailLabel, []byte(email), ref.EmailTag[:])
}

func sealResetID(k *secret.Keyring, ref Ref) string {
	keyID := k.CurrentKeyID()
	data := make([]byte, 0, 6+len(keyID)+8+resetIDCodeWidth+resetIDLoginWidth+len(ref.EmailKeyID)+2*resetIDTagLen)
	data = append(data, resetIDVersion, byte(len(keyID)))
	data = append(data, keyID...)
	data = binary.BigEndian.AppendUint64(data, uint64(ref.IssuedAt.UnixMilli()))
	data = appendPadded(data, ref.Provider, resetIDCodeWidth)
	data = appendPadded(data, ref.Login, resetIDLoginWidth)
	data = append(data, byte(len(ref.EmailKeyID)))
	data = append(data, ref.EmailKeyID...)
	data = append(data, ref.EmailTag[:]...)
	tag := k.Seal(resetIDLabel, data)
	sealed, err := k.Encrypt(resetIDCipherLabel, append(data, tag...))
	if err != nil {
		// Only the system's random source can fail here; without it nothing is safe.
		panic(fmt.Sprintf("reset: encrypt a reset id: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(append([]byte{resetIDEncrypted}, sealed...))
}

// LinkID is the reset id for the link in a token email: the request of provider and
// login that named email, as of the token issued at issuedAt. It reaches that token (and
// any later one) from any browser, no cookie needed, and expires with it; the token
// itself is still typed from the email.
func LinkID(k *secret.Keyring, provider, login, email string, issuedAt time.Time) string {
	return sealResetID(k, newResetRef(k, domain.NormalizeProviderCode(provider), domain.NormalizeLogin(login), email, issuedAt))
}

// appendPadded appends len(s), s, and zeros up to width bytes of s.
func appendPadded(b []byte, s string, width int) []byte {
	b = append(b, byte(len(s)))
	b = append(b, s...)
	return append(b, make([]byte, max(width-len(s), 0))...)
}

// openResetID checks and unpacks a reset id; ok is false for anything we did not seal.
func openResetID(k *secret.Keyring, s string) (ref Ref, ok bool) {
	if len(s) == 0 || len(s) > maxResetIDLen {
		return Ref{}, false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) < 1 {
		return Ref{}, false
	}
	if raw[0] == resetIDEncrypted {
		if raw, err = k.Decrypt(resetIDCipherLabel, raw[1:]); err != nil {
			return Ref{}, false
		}
	}
	if len(raw) < 2+8+2+resetIDCodeWidth+resetIDLoginWidth+1+2*resetIDTagLen {
		return Ref{}, false
	}
	data, tag := raw[:len(raw)-resetIDTagLen], raw[len(raw)-resetIDTagLen:]
	rd := reader{b: data}
	if v, _ := rd.byte(); v != resetIDVersion {
		return Ref{}, false
	}
	keyID, ok1 := rd.str()
	ms, ok2 := rd.uint64()
	code, ok3 := rd.padded(resetIDCodeWidth)
	login, ok4 := rd.padded(resetIDLoginWidth)
	emailKeyID, ok5 := rd.str()
	emailTag, ok6 := rd.bytes(resetIDTagLen)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || len(rd.b) != 0 {
		return Ref{}, false
	}
	if !k.CheckSeal(keyID, resetIDLabel, data, tag) {
		return Ref{}, false
	}
	ref = Ref{Provider: code, Login: login, IssuedAt: time.UnixMilli(int64(ms)).UTC(), EmailKeyID: emailKeyID}
	copy(ref.EmailTag[:], emailTag)
	return ref, true
}

type reader struct{ b []byte }

func (r *reader) byte() (byte, bool) {
	if len(r.b) < 1 {
		return 0, false
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v, true
}

func (r *reader) bytes(n int) ([]byte, bool) {
	if len(r.b) < n {
		return nil, false
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v, true
}

func (r *reader) str() (string, bool) {
	n, ok := r.byte()
	if !ok {
		return "", false
	}
	v, ok := r.bytes(int(n))
	return string(v), ok
}

// padded reads what appendPadded wrote; the padding must be zeros.
func (r *reader) padded(width int) (string, bool) {
	s, ok := r.str()
	if !ok {
		return "", false
	}
	pad, ok := r.bytes(max(width-len(s), 0))
	if !ok {
		return "", false
	}
	for _, c := range pad {
		if c != 0 {
			return "", false
		}
	}
	return s, true
}

func (r *reader) uint64() (uint64, bool) {
	if len(r.b) < 8 {
		return 0, false
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v, true
}
