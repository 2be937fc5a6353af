package http

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gorilla/mux"

	"selfreset/commands"
	"selfreset/docs"
	"selfreset/reset"
)

// contract checks requests and answers against docs/openapi.json (issue 9, item 5): every
// API test request made with env.do goes through it, so the document cannot drift from
// the server.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	// mu serialises validations: kin-openapi compiles schemas lazily, and tests call
	// env.do from several goroutines.
	mu sync.Mutex
}

// loadContract loads and validates the embedded document, as a client would.
func loadContract(t testing.TB) *contract {
	t.Helper()
	l := openapi3.NewLoader()
	l.IsExternalRefsAllowed = false
	doc, err := l.LoadFromData(docs.OpenAPI())
	if err != nil {
		t.Fatalf("docs/openapi.json does not load: %v", err)
	}
	if err := doc.Validate(l.Context); err != nil {
		t.Fatalf("docs/openapi.json is not a valid OpenAPI document: %v", err)
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{doc: doc, router: r}
}

// inContract reports whether path is one the document describes (the pages are not).
func inContract(path string) bool {
	return strings.HasPrefix(path, APIPrefix+"/") || path == "/healthz" || path == "/readyz"
}

// authenticate is the security check: the request must present the credential the
// scheme names. Whether the session is live is the server's business (401).
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	switch in.SecuritySchemeName {
	case "bearerAuth":
		if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return errors.New("no bearer token")
		}
	case "sessionCookie":
		if c, err := r.Cookie(SessionCookieName); err != nil || c.Value == "" {
			return errors.New("no session cookie")
		}
	default:
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	return nil
}

// exchange is one request and its answer as the client sent and saw them.
type exchange struct {
	method, url string
	reqHeader   http.Header
	reqBody     []byte
	status      int
	header      http.Header
	body        []byte
	// invalid: the test breaks the contract on purpose (malformed JSON, a missing field,
	// no credentials…). The request must then fail validation; the answer is still checked.
	invalid bool
}

// check returns every way x departs from the document.
func (c *contract) check(ctx context.Context, x exchange) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := http.NewRequestWithContext(ctx, x.method, x.url, bytes.NewReader(x.reqBody))
	if err != nil {
		return []string{err.Error()}
	}
	r.Header = x.reqHeader.Clone()
	if !inContract(r.URL.Path) {
		return nil
	}
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		// Not an operation: only the router's own refusals are allowed.
		want, code := http.StatusNotFound, CodeNotFound
		if errors.Is(err, routers.ErrMethodNotAllowed) {
			want, code = http.StatusMethodNotAllowed, CodeMethodNotAllow
		}
		if x.status != want {
			return []string{fmt.Sprintf("%s %s is not in the document (%v) but was answered %d, not %d", x.method, r.URL.Path, err, x.status, want)}
		}
		return c.checkError(x, code)
	}
	var problems []string
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: authenticate, MultiError: true}}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	switch {
	case reqErr != nil && !x.invalid:
		problems = append(problems, "request: "+reqErr.Error())
	case reqErr == nil && x.invalid:
		problems = append(problems, "the request is marked invalid but conforms to the document; drop the mark")
	}
	// The answer is checked against the request as sent (a validated request may have had
	// defaults filled into it).
	r2, _ := http.NewRequestWithContext(ctx, x.method, x.url, bytes.NewReader(x.reqBody))
	r2.Header = x.reqHeader.Clone()
	in.Request = r2
	ndjson := mediaType(x.header) == NDJSON
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: x.status, Header: x.header,
		Body:    io.NopCloser(bytes.NewReader(x.body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: ndjson}}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		problems = append(problems, fmt.Sprintf("answer %d: %v", x.status, err))
	}
	if ndjson {
		problems = append(problems, c.checkLines(route, x)...)
	}
	return problems
}

func mediaType(h http.Header) string {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt
}

// checkLines validates a streamed answer line by line against the schema its media type
// names (OpenAPI 3.1 has no item schema for sequential media types).
func (c *contract) checkLines(route *routers.Route, x exchange) []string {
	resp := route.Operation.Responses.Status(x.status)
	if resp == nil || resp.Value.Content.Get(NDJSON) == nil {
		return []string{fmt.Sprintf("answer %d: %s is not documented", x.status, NDJSON)}
	}
	schema := resp.Value.Content.Get(NDJSON).Schema.Value
	var problems []string
	sc := bufio.NewScanner(bytes.NewReader(x.body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var v any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			problems = append(problems, fmt.Sprintf("line %d is not JSON: %v", n, err))
			continue
		}
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", n, err))
		}
	}
	return problems
}

// checkError validates an answer outside any operation against the error envelope.
func (c *contract) checkError(x exchange, code string) []string {
	var v any
	if err := json.Unmarshal(x.body, &v); err != nil {
		return []string{fmt.Sprintf("answer %d is not JSON: %v", x.status, err)}
	}
	if err := c.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		return []string{fmt.Sprintf("answer %d: %v", x.status, err)}
	}
	if got := (resp{body: x.body}).errCode(); got != code {
		return []string{fmt.Sprintf("answer %d has code %q, want %q", x.status, got, code)}
	}
	return nil
}

// TestOpenAPIDocumentIsValid loads docs/openapi.json as a client would and checks that
// the server serves that same document.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	c := loadContract(t)
	if !c.doc.IsOpenAPI31OrLater() || c.doc.OpenAPI != "3.1.0" {
		t.Errorf("the document says openapi %q; want 3.1.0", c.doc.OpenAPI)
	}
	srv := NewServer(Config{Commands: &commands.Handler{}, Resets: &reset.Service{}, Sessions: NewPGSessions(nil)})
	defer srv.Close(t.Context())
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, APIPrefix+"/openapi.json", nil))
	if rec.Code != http.StatusOK || mediaType(rec.Header()) != "application/json" {
		t.Fatalf("GET %s/openapi.json: %d %q", APIPrefix, rec.Code, rec.Header().Get("Content-Type"))
	}
	if !bytes.Equal(rec.Body.Bytes(), docs.OpenAPI()) {
		t.Error("the served document is not docs/openapi.json")
	}
	x := exchange{method: http.MethodGet, url: "http://example.test" + APIPrefix + "/openapi.json", reqHeader: http.Header{},
		status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	for _, p := range c.check(t.Context(), x) {
		t.Error(p)
	}
}

// TestOpenAPICoversEveryRoute checks, both ways, that every API route the server has is an
// operation in the document.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	c := loadContract(t)
	srv := NewServer(Config{Commands: &commands.Handler{}, Resets: &reset.Service{}, Sessions: NewPGSessions(nil)})
	defer srv.Close(t.Context())
	served := map[string]bool{}
	err := srv.Router().Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil || !inContract(path) {
			return nil
		}
		methods, err := route.GetMethods()
		if err != nil {
			t.Errorf("route %s has no methods", path)
			return nil
		}
		for _, m := range methods {
			served[m+" "+path] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range c.doc.Paths.Map() {
		for m := range item.Operations() {
			documented[m+" "+path] = true
		}
	}
	if len(served) < 20 {
		t.Fatalf("walked only %d API routes", len(served))
	}
	for _, r := range slices.Sorted(maps.Keys(served)) {
		if !documented[r] {
			t.Errorf("route %s has no operation in docs/openapi.json", r)
		}
	}
	for _, r := range slices.Sorted(maps.Keys(documented)) {
		if !served[r] {
			t.Errorf("docs/openapi.json has %s, which the server does not serve", r)
		}
	}
}

// typedQuery reports whether the document gives query parameter name of the operation a
// type or format beyond plain text (an integer, a date-time, an enum), so that arbitrary
// text in it breaks the document and not only the server's rules.
func (c *contract) typedQuery(method, path, name string) bool {
	item := c.doc.Paths.Value(path)
	if item == nil || item.GetOperation(method) == nil {
		return false
	}
	p := item.GetOperation(method).Parameters.GetByInAndName(openapi3.ParameterInQuery, name)
	if p == nil || p.Schema == nil {
		return false
	}
	s := p.Schema.Value
	return !s.Type.Is(openapi3.TypeString) || s.Format != "" || len(s.Enum) > 0
}

// TestContractCatchesDrift feeds the checker answers and requests that depart from the
// document, so that a check that cannot fail does not pass for coverage.
func TestContractCatchesDrift(t *testing.T) {
	c := loadContract(t)
	const base = "http://example.test"
	id := http.Header{"X-Request-Id": {"r1"}, "Content-Type": {"application/json; charset=utf-8"}}
	with := func(h http.Header, kv ...string) http.Header {
		h = h.Clone()
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	bearer := http.Header{"Authorization": {"Bearer t"}}
	jsonReq := http.Header{"Content-Type": {"application/json"}}
	forgot := []byte(`{"login_name":"jane","provider_code":"ACME","email":"a@b.org"}`)
	event := `{"position":{"commit":1,"prepare":1},"stream":"user-ACME-jane","revision":0,"event_id":"e","type":"UserRegistered",` +
		`"schema_version":1,"occurred_at":"2030-01-02T09:00:00Z","metadata":{"actor":"a","correlation_id":"c","causation_id":"","client_ip":"","user_agent":""},"data":{}}`
	for _, tc := range []struct {
		name  string
		x     exchange
		drift bool
	}{
		{"conforming", exchange{method: "GET", url: "/healthz", status: 200, header: id, body: []byte(`{"status":"ok"}`)}, false},
		{"wrong value", exchange{method: "GET", url: "/healthz", status: 200, header: id, body: []byte(`{"status":"fine"}`)}, true},
		{"no request id", exchange{method: "GET", url: "/healthz", status: 200,
			header: http.Header{"Content-Type": {"application/json"}}, body: []byte(`{"status":"ok"}`)}, true},
		{"undocumented status", exchange{method: "GET", url: "/healthz", status: http.StatusTeapot, header: id, body: []byte(`{}`)}, true},
		{"extra field", exchange{method: "POST", url: "/api/v1/password-resets", reqHeader: jsonReq, reqBody: forgot, status: 202,
			header: id, body: []byte(`{"reset_id":"x","expires_in_seconds":300,"matched":true}`)}, true},
		{"429 without Retry-After", exchange{method: "POST", url: "/api/v1/password-resets", reqHeader: jsonReq, reqBody: forgot, status: 429,
			header: id, body: []byte(`{"error":{"code":"rate_limited","message":"m"}}`)}, true},
		{"429 with Retry-After", exchange{method: "POST", url: "/api/v1/password-resets", reqHeader: jsonReq, reqBody: forgot, status: 429,
			header: with(id, "Retry-After", "3"), body: []byte(`{"error":{"code":"rate_limited","message":"m"}}`)}, false},
		{"undocumented error code", exchange{method: "POST", url: "/api/v1/password-resets", reqHeader: jsonReq, reqBody: forgot, status: 400,
			header: id, body: []byte(`{"error":{"code":"invalid_token","message":"m"}}`)}, true},
		{"no credentials, unmarked", exchange{method: "GET", url: "/api/v1/me/self-reset", status: 401,
			header: id, body: []byte(`{"error":{"code":"unauthorized","message":"m"}}`)}, true},
		{"no credentials, marked", exchange{method: "GET", url: "/api/v1/me/self-reset", status: 401, invalid: true,
			header: id, body: []byte(`{"error":{"code":"unauthorized","message":"m"}}`)}, false},
		{"conforming request marked invalid", exchange{method: "GET", url: "/api/v1/me/self-reset", reqHeader: bearer, status: 200, invalid: true,
			header: id, body: []byte(`{"enabled":true,"configured":false,"recovery_email":null}`)}, true},
		{"stream", exchange{method: "GET", url: "/api/v1/audit/events?provider=ACME", reqHeader: with(bearer, "Accept", NDJSON), status: 200,
			header: with(id, "Content-Type", NDJSON), body: []byte(event + "\n" + event + "\n")}, false},
		{"stream with a bad line", exchange{method: "GET", url: "/api/v1/audit/events?provider=ACME", reqHeader: with(bearer, "Accept", NDJSON), status: 200,
			header: with(id, "Content-Type", NDJSON), body: []byte(event + "\n" + `{"type":"X"}` + "\n")}, true},
		{"unknown path", exchange{method: "GET", url: "/api/v1/nowhere", status: 404, header: id,
			body: []byte(`{"error":{"code":"not_found","message":"m"}}`)}, false},
		{"unknown path answered 200", exchange{method: "GET", url: "/api/v1/nowhere", status: 200, header: id, body: []byte(`{}`)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := tc.x
			x.url = base + x.url
			if x.reqHeader == nil {
				x.reqHeader = http.Header{}
			}
			problems := c.check(t.Context(), x)
			if tc.drift && len(problems) == 0 {
				t.Error("drift not caught")
			}
			if !tc.drift && len(problems) > 0 {
				t.Errorf("conforming exchange refused: %v", problems)
			}
		})
	}
}

// TestOpenAPIAgreesWithAPIDoc checks the document against docs/api.md, the prose
// reference: every error code a route's row names is in that operation's answer with that
// status, and every code the document names is in the Error codes table.
func TestOpenAPIAgreesWithAPIDoc(t *testing.T) {
	c := loadContract(t)
	doc := readAPIDoc(t)
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	codeStatus := regexp.MustCompile("`([a-z_]+)` ([0-9]{3})")
	rows := 0
	for line := range strings.Lines(string(raw)) {
		m := routeRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		rows++
		op := c.doc.Paths.Value(m[2]).GetOperation(m[1])
		if op == nil {
			t.Errorf("docs/api.md lists %s %s; docs/openapi.json has no such operation", m[1], m[2])
			continue
		}
		cells := strings.Split(line, "|")
		for _, ref := range codeStatus.FindAllStringSubmatch(cells[len(cells)-2], -1) {
			if !slices.Contains(responseCodes(op, ref[2]), ref[1]) {
				t.Errorf("%s %s: docs/api.md says %s %s; docs/openapi.json does not", m[1], m[2], ref[1], ref[2])
			}
		}
	}
	if rows < 20 {
		t.Fatalf("read only %d route rows from docs/api.md", rows)
	}
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				for _, code := range responseCodes(op, status) {
					if !doc.codes[code] {
						t.Errorf("%s %s answers %s %s, which docs/api.md's Error codes table lacks", method, path, status, code)
					}
				}
			}
		}
	}
}

// responseCodes lists the error codes an operation's answer with status may carry (the
// enum on error.code in its schema).
func responseCodes(op *openapi3.Operation, status string) []string {
	r := op.Responses.Value(status)
	if r == nil || r.Value == nil {
		return nil
	}
	mt := r.Value.Content.Get("application/json")
	if mt == nil || mt.Schema == nil {
		return nil
	}
	var codes []string
	for _, part := range mt.Schema.Value.AllOf {
		e := part.Value.Properties["error"]
		if e == nil || e.Value.Properties["code"] == nil {
			continue
		}
		for _, v := range e.Value.Properties["code"].Value.Enum {
			if s, ok := v.(string); ok {
				codes = append(codes, s)
			}
		}
	}
	return codes
}
