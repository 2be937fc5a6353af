package main

import (
	"regexp"
	"strings"
	"testing"
)

// selfreset bench runs every operation against the configured store, once per user, and
// reports each with no errors. (The figures themselves are printed, never asserted.)
func TestBenchCommand(t *testing.T) {
	e := newEnv(t)
	e.ok(t, "", "migrate")
	r := e.ok(t, "", "bench", "--users", "3", "--concurrency", "2")
	row := regexp.MustCompile(`^(\S.*?)\s{2,}(\d+)\s+[\d.]+\s+\S+\s+\S+\s+\S+\s+(\d+)$`)
	seen := map[string]bool{}
	for _, line := range strings.Split(r.stdout, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		seen[m[1]] = true
		if m[3] != "0" {
			t.Errorf("%s: %s errors\n%s", m[1], m[3], r.stdout)
		}
		if m[1] != "read feed (per 500 events)" && m[2] != "3" {
			t.Errorf("%s: %s samples, want 3", m[1], m[2])
		}
	}
	for _, op := range []string{"register user (argon2id)", "forgot password (token)", "reset password (argon2id)", "read feed (per 500 events)"} {
		if !seen[op] {
			t.Errorf("no row for %q in\n%s", op, r.stdout)
		}
	}
	e.fails(t, exitUsage, "", "bench", "--users", "0")
}
