package deploy

// These tests read docker-compose.yml, Dockerfile and .dockerignore and check how they are
// wired. There is no Docker engine where they run (CI included), so none of them builds an
// image or starts a container; see doc.go.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"selfreset/config"
	"selfreset/mailer"
)

// root is the module root, seen from this package's directory.
const root = ".."

// testSecret stands in for the SELFRESET_SECRET an operator exports before `docker compose up`.
const testSecret = "deploy-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"

// The services docker-compose.yml must define, by the names the service's URLs use.
const (
	svcEventStore = "eventstoredb"
	svcPostgres   = "postgres"
	svcMailpit    = "mailpit"
	svcApp        = "selfreset"
)

// ---- docker-compose.yml ----

// composeFile is the part of the Compose file format these tests look at.
type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string       `yaml:"image"`
	Build       any          `yaml:"build"`
	Command     stringList   `yaml:"command"`
	Environment environment  `yaml:"environment"`
	Ports       []string     `yaml:"ports"`
	Volumes     []string     `yaml:"volumes"`
	DependsOn   dependsOn    `yaml:"depends_on"`
	Healthcheck *healthcheck `yaml:"healthcheck"`
}

type healthcheck struct {
	Test    stringList `yaml:"test"`
	Disable bool       `yaml:"disable"`
}

// stringList is a command: a YAML list (exec form), or one string (for `command`, split
// like a shell line; for a health check's `test`, run by /bin/sh).
type stringList struct {
	Items  []string
	Scalar bool
}

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		l.Items, l.Scalar = []string{n.Value}, true
		return nil
	case yaml.SequenceNode:
		return n.Decode(&l.Items)
	}
	return fmt.Errorf("line %d: want a string or a list", n.Line)
}

// environment is a service's environment, uninterpolated, in either of Compose's forms
// (a mapping, or a list of KEY=VALUE). A key without a value passes the host's through.
type environment map[string]string

func (e *environment) UnmarshalYAML(n *yaml.Node) error {
	*e = environment{}
	switch n.Kind {
	case yaml.MappingNode:
		var m map[string]*string
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			if v == nil {
				(*e)[k] = "${" + k + "}"
			} else {
				(*e)[k] = *v
			}
		}
		return nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				v = "${" + k + "}"
			}
			(*e)[k] = v
		}
		return nil
	}
	return fmt.Errorf("line %d: environment must be a mapping or a list", n.Line)
}

// dependsOn maps a dependency to its condition, in either of Compose's forms.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, s := range l {
			(*d)[s] = "service_started"
		}
		return nil
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		for s, v := range m {
			if v.Condition == "" {
				v.Condition = "service_started"
			}
			(*d)[s] = v.Condition
		}
		return nil
	}
	return fmt.Errorf("line %d: depends_on must be a list or a mapping", n.Line)
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{svcEventStore, svcPostgres, svcMailpit, svcApp} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("docker-compose.yml: no service %q (services: %v)", name, keys(c.Services))
		}
	}
	return c
}

// ---- Compose interpolation (${VAR}, ${VAR:-default}, ${VAR:?error}, $$, …) ----

type lookupFunc func(name string) (string, bool)

func mapLookup(m map[string]string) lookupFunc {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// requiredError is Compose refusing to start: a ${VAR:?message} whose VAR is missing.
type requiredError struct{ name, msg string }

func (e *requiredError) Error() string {
	return "required variable " + e.name + " is missing: " + e.msg
}

func interpolate(s string, lookup lookupFunc) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i += 2
		case next == '{':
			end := closingBrace(s, i+1)
			if end < 0 {
				return "", fmt.Errorf("%q: unclosed ${", s)
			}
			v, err := expand(s[i+2:end], lookup)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = end + 1
		case next == '_' || 'A' <= next && next <= 'Z' || 'a' <= next && next <= 'z':
			j := i + 1
			for j < len(s) && (s[j] == '_' || 'A' <= s[j] && s[j] <= 'Z' || 'a' <= s[j] && s[j] <= 'z' || '0' <= s[j] && s[j] <= '9') {
				j++
			}
			v, _ := lookup(s[i+1 : j])
			b.WriteString(v)
			i = j
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), nil
}

func closingBrace(s string, open int) int {
	depth := 0
	for j := open; j < len(s); j++ {
		switch s[j] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return j
			}
		}
	}
	return -1
}

var bracedExpr = regexp.MustCompile(`(?s)^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$`)

func expand(expr string, lookup lookupFunc) (string, error) {
	m := bracedExpr.FindStringSubmatch(expr)
	if m == nil {
		return "", fmt.Errorf("invalid interpolation ${%s}", expr)
	}
	name, op, arg := m[1], m[2], m[3]
	v, set := lookup(name)
	present := set
	if strings.HasPrefix(op, ":") {
		present = set && v != ""
	}
	switch strings.TrimPrefix(op, ":") {
	case "":
		return v, nil
	case "-":
		if present {
			return v, nil
		}
		return interpolate(arg, lookup)
	case "?":
		if present {
			return v, nil
		}
		msg, err := interpolate(arg, lookup)
		if err != nil {
			return "", err
		}
		return "", &requiredError{name, msg}
	default: // "+"
		if present {
			return interpolate(arg, lookup)
		}
		return "", nil
	}
}

// appEnv is the selfreset container's environment under Compose: the image's ENV, then the
// service's environment interpolated from host.
func appEnv(t *testing.T, c composeFile, host map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for k, v := range loadDockerfile(t).finalEnv() {
		env[k] = v
	}
	for k, raw := range c.Services[svcApp].Environment {
		v, err := interpolate(raw, mapLookup(host))
		if err != nil {
			t.Fatalf("docker-compose.yml: %s: %v", k, err)
		}
		env[k] = v
	}
	return env
}

// ---- the compose tests ----

func TestComposeStartOrderAndHealthChecks(t *testing.T) {
	c := loadCompose(t)
	app := c.Services[svcApp]
	for _, dep := range []string{svcEventStore, svcPostgres, svcMailpit} {
		if cond, ok := app.DependsOn[dep]; !ok {
			t.Errorf("%s does not depend on %s", svcApp, dep)
		} else if cond != "service_healthy" {
			t.Errorf("%s depends on %s with condition %q, want service_healthy", svcApp, dep, cond)
		}
		hc := c.Services[dep].Healthcheck
		switch {
		case hc == nil || hc.Disable || len(hc.Test.Items) == 0 || hc.Test.Items[0] == "NONE":
			t.Errorf("%s has no health check, so service_healthy would never be reached", dep)
		case hc.Test.Scalar || hc.Test.Items[0] != "CMD":
			t.Errorf("%s: health check %q: use the exec form [\"CMD\", …]", dep, hc.Test.Items)
		}
	}
	if hc := app.Healthcheck; hc != nil && !hc.Disable {
		t.Errorf("%s has a health check %q, but its image has no shell and no curl to run one; "+
			"probe /readyz from outside instead", svcApp, hc.Test.Items)
	}
}

func TestComposeDependencies(t *testing.T) {
	c := loadCompose(t)

	es := c.Services[svcEventStore]
	repo, tag, _ := strings.Cut(es.Image, ":")
	if repo != "eventstore/eventstore" {
		t.Errorf("%s: image %q, want the official eventstore/eventstore", svcEventStore, es.Image)
	}
	if !versionAtLeast(tag, 23, 10) {
		t.Errorf("%s: image tag %q, want 23.10 or newer", svcEventStore, tag)
	}
	for k, want := range map[string]string{"EVENTSTORE_INSECURE": "true", "EVENTSTORE_RUN_PROJECTIONS": "None"} {
		if got := es.Environment[k]; !strings.EqualFold(got, want) {
			t.Errorf("%s: %s = %q, want %q", svcEventStore, k, got, want)
		}
	}
	if !strings.EqualFold(es.Environment["EVENTSTORE_MEM_DB"], "true") && !mountsAt(es, "/var/lib/eventstore") {
		t.Errorf("%s: neither EVENTSTORE_MEM_DB nor a volume on /var/lib/eventstore", svcEventStore)
	}
	if hc := strings.Join(es.Healthcheck.Test.Items, " "); !strings.Contains(hc, "curl") || !strings.Contains(hc, ":2113/health/live") {
		t.Errorf("%s: health check %q, want curl against :2113/health/live", svcEventStore, hc)
	}

	pg := c.Services[svcPostgres]
	if !strings.HasPrefix(pg.Image, "postgres:16") {
		t.Errorf("%s: image %q, want postgres:16", svcPostgres, pg.Image)
	}
	if hc := strings.Join(pg.Healthcheck.Test.Items, " "); !strings.Contains(hc, "pg_isready") {
		t.Errorf("%s: health check %q, want pg_isready", svcPostgres, hc)
	}
	if !mountsAt(pg, "/var/lib/postgresql/data") {
		t.Errorf("%s: no volume on /var/lib/postgresql/data", svcPostgres)
	}

	if mp := c.Services[svcMailpit]; !strings.HasPrefix(mp.Image, "axllent/mailpit") {
		t.Errorf("%s: image %q, want axllent/mailpit", svcMailpit, mp.Image)
	} else if !publishes(mp, "8025") {
		t.Errorf("%s: the web inbox (8025) is not published: ports %q", svcMailpit, mp.Ports)
	}

	// Named volumes must be declared at the top level.
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, ok := strings.Cut(v, ":")
			if !ok || strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") || strings.HasPrefix(src, "~") {
				continue // bind mount or anonymous volume
			}
			if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: volume %q is not declared under the top-level volumes", name, src)
			}
		}
	}
}

func TestComposeService(t *testing.T) {
	c := loadCompose(t)
	app := c.Services[svcApp]
	if app.Build == nil {
		t.Errorf("%s: no build: it must be built from this directory's Dockerfile", svcApp)
	}
	if app.Command.Scalar || !slices.Equal(app.Command.Items, []string{"serve"}) {
		t.Errorf("%s: command %q, want [\"serve\"] (serve migrates the schema before it listens)", svcApp, app.Command.Items)
	}
	if !slices.Contains(app.Ports, "8080:8080") {
		t.Errorf("%s: ports %q, want 8080:8080", svcApp, app.Ports)
	}

	env := appEnv(t, c, map[string]string{config.EnvSecret: testSecret})

	// The event store: EventStoreDB, by its service name, without TLS (insecure mode).
	if u, err := url.Parse(env[config.EnvEventStoreURL]); err != nil {
		t.Errorf("%s: %v", config.EnvEventStoreURL, err)
	} else {
		if u.Scheme != "esdb" || u.Hostname() != svcEventStore || u.Port() != "2113" {
			t.Errorf("%s = %q, want esdb://%s:2113", config.EnvEventStoreURL, u, svcEventStore)
		}
		if u.Query().Get("tls") != "false" {
			t.Errorf("%s = %q: EventStoreDB runs insecure, so the URL needs tls=false", config.EnvEventStoreURL, u)
		}
	}

	// The database: the postgres service, with the credentials that service was given.
	pg := c.Services[svcPostgres].Environment
	if u, err := url.Parse(env[config.EnvDatabaseURL]); err != nil {
		t.Errorf("%s: %v", config.EnvDatabaseURL, err)
	} else {
		pass, _ := u.User.Password()
		wantDB := orDefault(pg["POSTGRES_DB"], pg["POSTGRES_USER"])
		switch {
		case u.Scheme != "postgres" && u.Scheme != "postgresql":
			t.Errorf("%s = %q: want a postgres:// URL", config.EnvDatabaseURL, u.Redacted())
		case u.Hostname() != svcPostgres || (u.Port() != "" && u.Port() != "5432"):
			t.Errorf("%s = %q: want host %s:5432", config.EnvDatabaseURL, u.Redacted(), svcPostgres)
		case u.User.Username() != pg["POSTGRES_USER"] || pass != pg["POSTGRES_PASSWORD"]:
			t.Errorf("%s = %q: user or password differ from the %s service's POSTGRES_USER/POSTGRES_PASSWORD",
				config.EnvDatabaseURL, u.Redacted(), svcPostgres)
		case strings.TrimPrefix(u.Path, "/") != wantDB:
			t.Errorf("%s = %q: database %q, want %q (POSTGRES_DB)", config.EnvDatabaseURL, u.Redacted(), u.Path, wantDB)
		}
	}

	// Mail: SMTP to Mailpit, in plain text (Mailpit offers no TLS by default).
	if got := env[config.EnvMailDriver]; got != mailer.DriverSMTP {
		t.Errorf("%s = %q, want %q", config.EnvMailDriver, got, mailer.DriverSMTP)
	}
	if got, want := env[config.EnvSMTPAddr], net.JoinHostPort(svcMailpit, "1025"); got != want {
		t.Errorf("%s = %q, want %q", config.EnvSMTPAddr, got, want)
	}
	if got := env[config.EnvSMTPTLS]; got != string(mailer.TLSNone) {
		t.Errorf("%s = %q, want %q", config.EnvSMTPTLS, got, mailer.TLSNone)
	}
	if env[config.EnvMailFrom] == "" {
		t.Errorf("%s is not set (the smtp driver requires it)", config.EnvMailFrom)
	}

	// HTTP: listen on every interface of the container; links point at the published port.
	if host, port, err := net.SplitHostPort(env[config.EnvAddr]); err != nil || (host != "0.0.0.0" && host != "") || port != "8080" {
		t.Errorf("%s = %q, want 0.0.0.0:8080 (127.0.0.1 is unreachable from outside the container)", config.EnvAddr, env[config.EnvAddr])
	}
	if got, want := env[config.EnvPublicURL], "http://localhost:8080"; got != want {
		t.Errorf("%s = %q, want %q", config.EnvPublicURL, got, want)
	}
}

func TestComposeRequiresSecret(t *testing.T) {
	raw, ok := loadCompose(t).Services[svcApp].Environment[config.EnvSecret]
	if !ok {
		t.Fatalf("%s does not set %s", svcApp, config.EnvSecret)
	}
	for name, host := range map[string]map[string]string{
		"unset": {},
		"empty": {config.EnvSecret: ""},
	} {
		_, err := interpolate(raw, mapLookup(host))
		var re *requiredError
		if !errors.As(err, &re) || re.name != config.EnvSecret {
			t.Errorf("%s %s: %s = %q interpolates (err %v); want Compose to refuse to start, as ${%s:?…} does",
				config.EnvSecret, name, config.EnvSecret, raw, err, config.EnvSecret)
		} else if !strings.Contains(re.msg, "openssl rand") {
			t.Errorf("the message for a missing %s, %q, does not say how to make one (openssl rand …)", config.EnvSecret, re.msg)
		}
	}
	if got, err := interpolate(raw, mapLookup(map[string]string{config.EnvSecret: testSecret})); err != nil || got != testSecret {
		t.Errorf("with %s exported, the container gets %q (err %v), want the exported value", config.EnvSecret, got, err)
	}
}

// TestComposeVariablesAreKnown: a misspelt SELFRESET_* variable would be ignored silently.
func TestComposeVariablesAreKnown(t *testing.T) {
	known := knownVariables(t)
	for _, v := range []string{config.EnvDatabaseURL, config.EnvEventStoreURL, config.EnvSecret, config.EnvAddr,
		config.EnvMailDriver, config.EnvSMTPAddr, config.EnvPublicURL} {
		if !known[v] {
			t.Fatalf("the source scan missed %s (found %v): fix knownVariables", v, keys(known))
		}
	}
	c := loadCompose(t)
	for name, s := range c.Services {
		for k := range s.Environment {
			if strings.HasPrefix(k, "SELFRESET_") && !known[k] {
				t.Errorf("docker-compose.yml: %s sets %s, which the binary does not read (known: %s)",
					name, k, strings.Join(keys(known), ", "))
			}
		}
	}
	for k := range loadDockerfile(t).finalEnv() {
		if strings.HasPrefix(k, "SELFRESET_") && !known[k] {
			t.Errorf("Dockerfile: ENV %s is not a variable the binary reads", k)
		}
	}
}

// TestComposeEnvironmentIsAccepted runs the binary's own configuration parsers on the
// environment the container gets: `serve` would start with it.
func TestComposeEnvironmentIsAccepted(t *testing.T) {
	env := appEnv(t, loadCompose(t), map[string]string{config.EnvSecret: testSecret})
	getenv := func(k string) string { return env[k] }

	cfg, err := config.FromEnv(getenv)
	if err != nil {
		t.Fatalf("config.FromEnv refuses the compose environment: %v", err)
	}
	if cfg.EventStore != config.EventStoreESDB {
		t.Errorf("event store %q, want %q", cfg.EventStore, config.EventStoreESDB)
	}
	if cfg.DevSecret || cfg.SecretKeyID != config.KeyID([]byte(testSecret)) {
		t.Errorf("the secret is not the exported one (key id %s)", cfg.SecretKeyID)
	}
	if cfg.Addr != "0.0.0.0:8080" {
		t.Errorf("listen address %q, want 0.0.0.0:8080", cfg.Addr)
	}

	// A rotation under way: the earlier secret reaches the container and is accepted.
	const envPrevious = "SELFRESET_SECRET_PREVIOUS"
	oldSecret := strings.Repeat("earlier-secret-", 4)
	rotating := appEnv(t, loadCompose(t), map[string]string{config.EnvSecret: testSecret, envPrevious: oldSecret})
	if rotating[envPrevious] != oldSecret {
		t.Errorf("docker-compose.yml does not pass %s through to the container", envPrevious)
	}
	if _, err := config.FromEnv(func(k string) string { return rotating[k] }); err != nil {
		t.Errorf("config.FromEnv refuses the compose environment during a rotation: %v", err)
	}

	mcfg := cfg.Mail
	if mcfg.Driver != mailer.DriverSMTP || mcfg.SMTP.Addr != "mailpit:1025" || mcfg.SMTP.TLS != mailer.TLSNone {
		t.Errorf("mailer: driver %q, SMTP %q, TLS %q; want smtp to mailpit:1025 without TLS",
			mcfg.Driver, mcfg.SMTP.Addr, mcfg.SMTP.TLS)
	}
	if mcfg.PublicURL != "http://localhost:8080" {
		t.Errorf("mailer: public URL %q, want http://localhost:8080", mcfg.PublicURL)
	}
}

// knownVariables are the SELFRESET_* names in the binary's source: every string literal
// that is exactly such a name, in the packages that read the environment (config, mailer,
// the HTTP side and the command line; internal/testdb's test-only variable is left out).
func knownVariables(t *testing.T) map[string]bool {
	t.Helper()
	name := regexp.MustCompile(`^SELFRESET_[A-Z0-9_]+$`)
	known := map[string]bool{}
	fset := token.NewFileSet()
	for _, dir := range []string{"config", "mailer", "http", "cmd/selfreset"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(root, dir, e.Name()), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && name.MatchString(s) {
						known[s] = true
					}
				}
				return true
			})
		}
	}
	return known
}

// ---- Dockerfile ----

type instruction struct {
	Cmd  string // upper case: FROM, RUN, …
	Args string
	Line int
}

type dockerfile struct {
	stages [][]instruction // each begins with its FROM
}

// loadDockerfile splits the Dockerfile into instructions (comments dropped, continuation
// lines joined) and the instructions into stages.
func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		d       dockerfile
		pending strings.Builder
		start   int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending.Len() == 0) {
			continue
		}
		if pending.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(pending.String()), " ")
		pending.Reset()
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		if in.Cmd == "FROM" {
			d.stages = append(d.stages, nil)
		}
		if len(d.stages) == 0 {
			if in.Cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.Line, in.Cmd)
			}
			continue
		}
		d.stages[len(d.stages)-1] = append(d.stages[len(d.stages)-1], in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(d.stages) == 0 {
		t.Fatal("Dockerfile: no FROM")
	}
	return d
}

func (d dockerfile) final() []instruction { return d.stages[len(d.stages)-1] }

// from is a stage's image and name (FROM image [AS name]).
func from(stage []instruction) (image, name string) {
	f := strings.Fields(stage[0].Args)
	for len(f) > 0 && strings.HasPrefix(f[0], "--") { // --platform=…
		f = f[1:]
	}
	if len(f) == 0 {
		return "", ""
	}
	if len(f) == 3 && strings.EqualFold(f[1], "AS") {
		return f[0], f[2]
	}
	return f[0], ""
}

// finalEnv is the ENV the final stage sets (KEY=VALUE form, values without spaces).
func (d dockerfile) finalEnv() map[string]string {
	env := map[string]string{}
	for _, in := range d.final() {
		if in.Cmd != "ENV" {
			continue
		}
		for _, kv := range strings.Fields(in.Args) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = strings.Trim(v, `"`)
			}
		}
	}
	return env
}

// execForm parses a JSON-array (exec form) ENTRYPOINT or CMD; ok is false for the shell form.
func execForm(args string) (argv []string, ok bool) {
	if json.Unmarshal([]byte(args), &argv) != nil || len(argv) == 0 {
		return nil, false
	}
	return argv, true
}

func TestDockerfile(t *testing.T) {
	d := loadDockerfile(t)
	if len(d.stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s); want a build stage and a runtime stage", len(d.stages))
	}

	// The build stage: a static binary, modules downloaded in a layer of their own.
	build := d.stages[0]
	buildImage, buildName := from(build)
	if !strings.HasPrefix(buildImage, "golang:1.26") {
		t.Errorf("build stage FROM %q, want golang:1.26 (go.mod asks for Go 1.26)", buildImage)
	}
	var copiedModules, downloaded, copiedAll, built bool
	for _, in := range build {
		switch {
		case in.Cmd == "COPY" && strings.Contains(in.Args, "go.mod") && strings.Contains(in.Args, "go.sum") && !copiedAll:
			copiedModules = true
		case in.Cmd == "RUN" && strings.Contains(in.Args, "go mod download"):
			downloaded = copiedModules && !copiedAll
		case in.Cmd == "COPY" && strings.HasPrefix(in.Args, ". "):
			copiedAll = true
		case in.Cmd == "RUN" && strings.Contains(in.Args, "go build"):
			built = true
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/selfreset"} {
				if !strings.Contains(in.Args, want) {
					t.Errorf("Dockerfile:%d: go build without %s", in.Line, want)
				}
			}
		}
	}
	if !downloaded {
		t.Error("Dockerfile: the build stage should COPY go.mod go.sum and RUN go mod download before COPY . . (a cached modules layer)")
	}
	if !built {
		t.Error("Dockerfile: the build stage never runs go build")
	}

	// The runtime stage: distroless, non-root, no shell needed.
	final := d.final()
	if image, _ := from(final); !strings.HasPrefix(image, "gcr.io/distroless/static") {
		t.Errorf("runtime stage FROM %q, want gcr.io/distroless/static-debian12:nonroot", image)
	}
	var user, binary string
	var entrypoint, cmd []string
	exposed := false
	for _, in := range final {
		switch in.Cmd {
		case "RUN":
			t.Errorf("Dockerfile:%d: RUN in the runtime stage; distroless has no shell to run it", in.Line)
		case "USER":
			user = in.Args
		case "COPY":
			f := strings.Fields(in.Args)
			if len(f) == 3 && f[0] == "--from="+buildName && strings.HasSuffix(f[1], "/selfreset") {
				binary = f[2]
			}
		case "ENTRYPOINT", "CMD":
			argv, ok := execForm(in.Args)
			if !ok {
				t.Errorf("Dockerfile:%d: %s %s is in shell form; the image has no shell: use [\"…\"]", in.Line, in.Cmd, in.Args)
			}
			if in.Cmd == "ENTRYPOINT" {
				entrypoint = argv
			} else {
				cmd = argv
			}
		case "HEALTHCHECK":
			if i := strings.Index(in.Args, "CMD"); i >= 0 {
				if _, ok := execForm(strings.TrimSpace(in.Args[i+len("CMD"):])); !ok {
					t.Errorf("Dockerfile:%d: HEALTHCHECK in shell form; the image has no shell", in.Line)
				}
			}
		case "EXPOSE":
			exposed = exposed || slices.Contains(strings.Fields(in.Args), "8080") || slices.Contains(strings.Fields(in.Args), "8080/tcp")
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("Dockerfile: runtime stage USER %q, want a non-root user (nonroot:nonroot)", user)
	}
	if binary == "" {
		t.Errorf("Dockerfile: the runtime stage does not COPY --from=%s the selfreset binary", buildName)
	}
	if len(entrypoint) != 1 || entrypoint[0] != binary {
		t.Errorf("Dockerfile: ENTRYPOINT %q, want [%q] (the copied binary)", entrypoint, binary)
	}
	if !slices.Equal(cmd, []string{"serve"}) {
		t.Errorf("Dockerfile: CMD %q, want [\"serve\"]", cmd)
	}
	if !exposed {
		t.Error("Dockerfile: no EXPOSE 8080")
	}
}

// ---- .dockerignore ----

// TestDockerignoreKeepsBuildInputs: every file `go build ./cmd/selfreset` reads from this
// module (Go files of the packages it imports, embedded templates and migrations, go.mod,
// go.sum) must reach the build context.
func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to list the build's files")
	}
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	rules := parseDockerignore(data)

	list := exec.Command(goBin, "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/selfreset")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir                 string
			GoFiles, EmbedFiles []string
			Module              *struct{ Main bool }
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(abs, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(p.GoFiles, p.EmbedFiles) {
			files = append(files, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(files) < 20 {
		t.Fatalf("go list found only %d files of this module; something is wrong with the listing", len(files))
	}
	for _, f := range files {
		if ignored(rules, f) {
			t.Errorf(".dockerignore excludes %s, which the build needs", f)
		}
	}
	if !ignored(rules, ".git/HEAD") {
		t.Error(".dockerignore should exclude .git (it is large and not needed)")
	}
}

type ignoreRule struct {
	pattern []string // path segments
	negate  bool
}

func parseDockerignore(data []byte) []ignoreRule {
	var rules []ignoreRule
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{}
		if p, ok := strings.CutPrefix(line, "!"); ok {
			r.negate, line = true, p
		}
		line = path.Clean(strings.TrimPrefix(line, "/"))
		r.pattern = strings.Split(line, "/")
		rules = append(rules, r)
	}
	return rules
}

// ignored applies the rules as Docker does: the last rule matching the file or one of its
// parent directories wins; `**` matches any number of directories.
func ignored(rules []ignoreRule, file string) bool {
	out := false
	for _, r := range rules {
		for p := file; p != "." && p != "/"; p = path.Dir(p) {
			if globMatch(r.pattern, strings.Split(p, "/")) {
				out = !r.negate
				break
			}
		}
	}
	return out
}

func globMatch(pattern, segs []string) bool {
	if len(pattern) == 0 {
		return len(segs) == 0
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(segs); i++ {
			if globMatch(pattern[1:], segs[i:]) {
				return true
			}
		}
		return false
	}
	if len(segs) == 0 {
		return false
	}
	ok, _ := path.Match(pattern[0], segs[0])
	return ok && globMatch(pattern[1:], segs[1:])
}

func TestDockerignoreMatcher(t *testing.T) {
	rules := parseDockerignore([]byte("# c\n.git\n**/*_test.go\n*.md\n!KEEP.md\nbin\n"))
	for f, want := range map[string]bool{
		".git/HEAD": true, "a/b_test.go": true, "b_test.go": true, "README.md": true, "KEEP.md": false,
		"docs/x.md": false, "bin/selfreset": true, "cmd/selfreset/main.go": false, "go.mod": false,
	} {
		if got := ignored(rules, f); got != want {
			t.Errorf("ignored(%q) = %v, want %v", f, got, want)
		}
	}
}

// ---- helpers ----

func mountsAt(s service, target string) bool {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return true
		}
	}
	return false
}

// publishes reports whether s publishes container port p.
func publishes(s service, p string) bool {
	for _, spec := range s.Ports {
		if i := strings.LastIndex(spec, ":"); i >= 0 && strings.TrimSuffix(spec[i+1:], "/tcp") == p {
			return true
		}
	}
	return false
}

// versionAtLeast reports whether a tag like 24.10, 23.10.1-bookworm-slim is at least major.minor.
func versionAtLeast(tag string, major, minor int) bool {
	m := regexp.MustCompile(`^v?(\d+)\.(\d+)`).FindStringSubmatch(tag)
	if m == nil {
		return false
	}
	ma, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	return ma > major || ma == major && mi >= minor
}

func orDefault(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestInterpolate(t *testing.T) {
	env := mapLookup(map[string]string{"A": "a", "E": ""})
	for in, want := range map[string]string{
		"x$A": "xa", "${A}": "a", "${B:-d}": "d", "${E:-d}": "d", "${E-d}": "", "${B-${A}}": "a",
		"$$A": "$A", "${A:+r}": "r", "${E:+r}": "", "${E+r}": "r", "cost $5": "cost $5",
	} {
		if got, err := interpolate(in, env); err != nil || got != want {
			t.Errorf("interpolate(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	var re *requiredError
	if _, err := interpolate("${E:?say so}", env); !errors.As(err, &re) || re.msg != "say so" {
		t.Errorf("${E:?say so}: err %v", err)
	}
	if got, err := interpolate("${E?say so}", env); err != nil || got != "" {
		t.Errorf("${E?say so} = %q, %v; want \"\" (E is set, if empty)", got, err)
	}
}
