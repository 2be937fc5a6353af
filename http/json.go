package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"unicode/utf8"
)

// MaxBodyBytes is the largest request body accepted; larger ones get 413.
const MaxBodyBytes = 64 << 10

var errTooLarge = &Error{Status: http.StatusRequestEntityTooLarge, Code: CodePayloadTooLarge,
	Message: "the request body is larger than 64 KiB"}

// DecodeJSON reads one JSON object from r's body into dst. Unknown fields, trailing data,
// malformed JSON, invalid UTF-8 and string fields that are not acceptable text (checkText) are
// 400 bad_request; a body over MaxBodyBytes is 413.
func DecodeJSON(r *http.Request, dst any) *Error {
	return decodeJSON(r, dst, false)
}

// checker is a request body with rules of its own beyond DecodeJSON's (the fields it cannot
// do without, their lengths), kept beside its fields.
type checker interface{ check() *Error }

// readJSON reads r's body into a T by DecodeJSON's rules, then T's own (checker). On a bad
// body it has answered w with the error and reports false: the handler then just returns.
func readJSON[T any](w http.ResponseWriter, r *http.Request) (T, bool) {
	var req T
	e := DecodeJSON(r, &req)
	if c, ok := any(req).(checker); ok && e == nil {
		e = c.check()
	}
	if e != nil {
		writeAPIError(w, e)
		return req, false
	}
	return req, true
}

// missing is the 400 for a body without a field it needs, msg naming them: nil when every
// one of vals is set.
func missing(msg string, vals ...string) *Error {
	if slices.Contains(vals, "") {
		return NewError(http.StatusBadRequest, CodeBadRequest, msg)
	}
	return nil
}

// overLong reports whether any of vals is longer than an identifier or email may be.
func overLong(vals ...string) bool {
	return slices.ContainsFunc(vals, func(v string) bool { return len(v) > maxIdentLen })
}

// readNoParams is readJSON for a route that takes no parameters: an empty body or {}.
func readNoParams(w http.ResponseWriter, r *http.Request) bool {
	if e := decodeJSON(r, &struct{}{}, true); e != nil {
		writeAPIError(w, e)
		return false
	}
	return true
}

func decodeJSON(r *http.Request, dst any, optional bool) *Error {
	if r.ContentLength > MaxBodyBytes {
		return errTooLarge
	}
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge
	}
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "the request body could not be read"}
	}
	if len(raw) == 0 && optional {
		return nil
	}
	// JSON text is UTF-8 (RFC 8259); encoding/json would quietly turn bad bytes into
	// U+FFFD, so a login with them would travel on as a different name.
	if !utf8.Valid(raw) {
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "the request body is not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err = dec.Decode(dst)
	if errors.Is(err, io.EOF) && optional {
		return nil
	}
	if err == nil {
		// Exactly one value: anything after it is malformed.
		var extra json.RawMessage
		if err2 := dec.Decode(&extra); !errors.Is(err2, io.EOF) {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		return checkJSONFields(dst)
	}
	return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: badRequestMessage(err)}
}

// badRequestMessage says what is wrong without echoing the client's data back.
func badRequestMessage(err error) string {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return "the request body is empty; a JSON object is expected"
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		return "the request body is not valid JSON"
	case errors.As(err, &typ):
		if typ.Field != "" {
			return "field " + typ.Field + " has the wrong type"
		}
		return "the request body has the wrong shape; a JSON object is expected"
	default:
		// json: unknown field "x" — the field name is the client's own key; keep it short.
		msg := err.Error()
		if len(msg) > 120 {
			msg = msg[:120]
		}
		return "the request body is not acceptable: " + msg
	}
}
