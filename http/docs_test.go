package http

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"selfreset/commands"
	"selfreset/reset"
)

// docsPath is the API reference, relative to this package.
const docsPath = "../docs/api.md"

var (
	// | METHOD | `path` | ... (a row of the Routes table)
	routeRow = regexp.MustCompile("^\\|\\s*(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)\\s*\\|\\s*`([^`]+)`\\s*\\|")
	// | `code` | status | meaning (a row of the Error codes table)
	codeRow  = regexp.MustCompile("^\\|\\s*`([a-z_]+)`\\s*\\|\\s*[0-9]")
	codeRef  = regexp.MustCompile("`([a-z_]+)` [0-9]{3}")
	tableEnd = regexp.MustCompile(`^\s*$`)
)

type apiDoc struct {
	routes     map[string]bool // "METHOD path"
	codes      map[string]bool // documented error codes
	referenced map[string]bool // codes the route table names
}

func readAPIDoc(t *testing.T) apiDoc {
	t.Helper()
	f, err := os.Open(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := apiDoc{routes: map[string]bool{}, codes: map[string]bool{}, referenced: map[string]bool{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if tableEnd.MatchString(line) {
			continue
		}
		if m := routeRow.FindStringSubmatch(line); m != nil {
			key := m[1] + " " + m[2]
			if d.routes[key] {
				t.Errorf("docs/api.md lists %s twice", key)
			}
			d.routes[key] = true
			cells := strings.Split(line, "|")
			for _, ref := range codeRef.FindAllStringSubmatch(cells[len(cells)-2], -1) {
				d.referenced[ref[1]] = true
			}
		}
		if m := codeRow.FindStringSubmatch(line); m != nil {
			d.codes[m[1]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRoutesAreDocumented walks the router and checks every route against docs/api.md's
// Routes table, both ways.
func TestRoutesAreDocumented(t *testing.T) {
	srv := NewServer(Config{Commands: &commands.Handler{}, Resets: &reset.Service{}, Sessions: NewPGSessions(nil)})
	defer srv.Close(t.Context())
	doc := readAPIDoc(t)

	served := map[string]bool{}
	err := srv.Router().Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil {
			return nil // not a path route
		}
		methods, err := route.GetMethods()
		if err != nil {
			t.Errorf("route %s has no methods; every route must say which it serves", path)
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
	if len(served) < 15 {
		t.Fatalf("walked only %d routes", len(served))
	}
	for r := range served {
		if !doc.routes[r] {
			t.Errorf("route %s is not documented in docs/api.md", r)
		}
	}
	for r := range doc.routes {
		if !served[r] {
			t.Errorf("docs/api.md documents %s, which the server does not serve", r)
		}
	}
}

// TestErrorCodesAreDocumented checks that every code the HTTP layer or the route table
// names has a row in the Error codes table.
func TestErrorCodesAreDocumented(t *testing.T) {
	doc := readAPIDoc(t)
	own := []string{CodeBadRequest, CodePayloadTooLarge, CodeUnauthorized, CodeForbidden, CodeNotFound,
		CodeMethodNotAllow, CodeCrossOrigin, CodeRateLimited, CodePasswordMatch, CodeNotReady, CodeBusy,
		CodeUnavailable, CodeInternal}
	for _, c := range own {
		if !doc.codes[c] {
			t.Errorf("code %s is not in the Error codes table", c)
		}
	}
	var missing []string
	for c := range doc.referenced {
		if !doc.codes[c] {
			missing = append(missing, c)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("the Routes table names codes the Error codes table lacks: %v", missing)
	}
	if len(doc.referenced) < 20 {
		t.Errorf("found only %d codes in the Routes table; is the table format broken?", len(doc.referenced))
	}
}
