package http

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"selfreset/domain"
)

// The seed corpora of these targets live in testdata/fuzz/<FuzzName>/, so that a plain
// `go test` runs them as regression tests; `go test -fuzz '^FuzzX$'` explores further.

// decodeTargets are the API's request bodies, each a fresh value per call.
var decodeTargets = []func() any{
	func() any { return new(createSessionRequest) },
	func() any { return new(forgotRequest) },
	func() any { return new(completeRequest) },
	func() any { return new(verifyPasswordRequest) },
	func() any { return new(startEmailRequest) },
	func() any { return new(verifyEmailRequest) },
	func() any { return new(struct{}) }, // configure's optional body
}

// FuzzDecodeJSON: any body decodes into any request type or is refused with 400/413,
// never a panic; what is accepted has only acceptable text outside password fields, and
// survives a round trip through JSON unchanged.
func FuzzDecodeJSON(f *testing.F) {
	f.Add(uint8(0), []byte(`{"provider_code":"ACME","login_name":"jane","password":"x"}`))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		newDst := decodeTargets[int(which)%len(decodeTargets)]
		optional := which >= 128
		dst := newDst()
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		e := decodeJSON(r, dst, optional)
		if e != nil {
			if e.Status != http.StatusBadRequest && e.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d (%s) for %q", e.Status, e.Code, body)
			}
			return
		}
		if e := checkJSONFields(dst); e != nil {
			t.Fatalf("accepted a body with unacceptable text: %v", e)
		}
		again, err := json.Marshal(dst)
		if err != nil {
			t.Fatal(err)
		}
		dst2 := newDst()
		if e := decodeJSON(httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(again)), dst2, false); e != nil {
			t.Fatalf("re-encoded %s refused: %v", again, e)
		}
		if !reflect.DeepEqual(dst, dst2) {
			t.Fatalf("round trip changed %+v into %+v", dst, dst2)
		}
	})
}

// FuzzUserCursor: a cursor decodes only to acceptable text of identifier length, and only
// from the spelling encodeCursor gives it.
func FuzzUserCursor(f *testing.F) {
	f.Add(encodeCursor("jane"))
	f.Fuzz(func(t *testing.T, c string) {
		login, ok := decodeCursor(c)
		if !ok {
			if login != "" {
				t.Fatalf("a refused cursor returned %q", login)
			}
			return
		}
		if login == "" || len(login) > maxIdentLen || !domain.ValidText(login) || strings.ContainsRune(login, 0) {
			t.Fatalf("cursor %q decoded to %q", c, login)
		}
		if encodeCursor(login) != c {
			t.Fatalf("cursor %q is not the spelling of %q", c, login)
		}
	})
}
