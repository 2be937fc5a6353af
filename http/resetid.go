package http

import (
	"encoding/base64"
	"encoding/binary"
	"time"

	"selfreset/secret"
)

// A reset id is handed back by POST /api/v1/password-resets and names the request in the
// later Resend and Change Password calls. It is (provider, login, issued-at) sealed with
// the server key, so it needs no lookup, cannot be forged, and is minted the same way
// whether or not the request matched an account.
//
// Layout (then base64url without padding):
//
//	version(1) | len(keyID)(1) keyID | issuedAt unix ms (8) | len(code)(1) code | len(login)(1) login | tag(32)
//
// The tag is secret.Keyring.Seal over everything before it.
const (
	resetIDLabel   = "http.reset-id"
	resetIDVersion = 1
	resetIDTagLen  = 32
	maxResetIDLen  = 512 // characters; anything longer is not one of ours
	maxIdentLen    = 254 // bytes of a provider code, login or email accepted from a client
)

// resetRef is what a reset id carries.
type resetRef struct {
	Provider string    // normalized, as requested
	Login    string    // normalized, as requested
	IssuedAt time.Time // millisecond precision
}

func sealResetID(k *secret.Keyring, ref resetRef) string {
	keyID := k.CurrentKeyID()
	data := make([]byte, 0, 3+len(keyID)+8+len(ref.Provider)+len(ref.Login)+resetIDTagLen)
	data = append(data, resetIDVersion, byte(len(keyID)))
	data = append(data, keyID...)
	data = binary.BigEndian.AppendUint64(data, uint64(ref.IssuedAt.UnixMilli()))
	data = append(data, byte(len(ref.Provider)))
	data = append(data, ref.Provider...)
	data = append(data, byte(len(ref.Login)))
	data = append(data, ref.Login...)
	tag := k.Seal(resetIDLabel, data)
	return base64.RawURLEncoding.EncodeToString(append(data, tag...))
}

// openResetID checks and unpacks a reset id; ok is false for anything we did not seal.
func openResetID(k *secret.Keyring, s string) (ref resetRef, ok bool) {
	if len(s) == 0 || len(s) > maxResetIDLen {
		return resetRef{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < 2+8+2+resetIDTagLen {
		return resetRef{}, false
	}
	data, tag := raw[:len(raw)-resetIDTagLen], raw[len(raw)-resetIDTagLen:]
	rd := reader{b: data}
	if v, _ := rd.byte(); v != resetIDVersion {
		return resetRef{}, false
	}
	keyID, ok1 := rd.str()
	ms, ok2 := rd.uint64()
	code, ok3 := rd.str()
	login, ok4 := rd.str()
	if !ok1 || !ok2 || !ok3 || !ok4 || len(rd.b) != 0 {
		return resetRef{}, false
	}
	if !k.CheckSeal(keyID, resetIDLabel, data, tag) {
		return resetRef{}, false
	}
	return resetRef{Provider: code, Login: login, IssuedAt: time.UnixMilli(int64(ms)).UTC()}, true
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

func (r *reader) str() (string, bool) {
	n, ok := r.byte()
	if !ok || len(r.b) < int(n) {
		return "", false
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
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
