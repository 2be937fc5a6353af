package http

import (
	"bytes"
	"context"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	cases := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer ignores the header", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"trusted peer, one hop", "10.1.1.1:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"right-most untrusted wins", "10.1.1.1:4000", []string{"1.2.3.4, 198.51.100.1, 10.2.2.2"}, "198.51.100.1"},
		{"several headers in order", "10.1.1.1:4000", []string{"1.2.3.4", "198.51.100.7"}, "198.51.100.7"},
		{"forged left entries do not matter", "10.1.1.1:4000", []string{"10.9.9.9, 198.51.100.1"}, "198.51.100.1"},
		{"all trusted: left-most", "10.1.1.1:4000", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"garbage stops at the last good hop", "10.1.1.1:4000", []string{"198.51.100.1, nonsense, 10.2.2.2"}, "10.2.2.2"},
		{"no header", "10.1.1.1:4000", nil, "10.1.1.1"},
		{"ipv6 peer", "[::1]:4000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"4in6 is unmapped", "[::ffff:203.0.113.5]:80", nil, "203.0.113.5"},
		{"port in the header", "10.1.1.1:4000", []string{"198.51.100.1:5555"}, "198.51.100.1"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := clientIP(r, trusted).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestIPLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.5":            "203.0.113.5",
		"2001:db8:1:2::1":        "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::9":   "2001:db8:1:2::/64",
		"2001:db8:1:3::1":        "2001:db8:1:3::/64",
		"::1":                    "::/64",
		"fe80::1%eth0":           "fe80::/64",
		"::ffff:198.51.100.7":    "198.51.100.7",
		"2001:db8::abcd:ef01:23": "2001:db8::/64",
	} {
		if got := ipLimitKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
	if got := ipLimitKey(netip.Addr{}); got != "invalid IP" {
		t.Errorf("no address: %q", got)
	}
}

func TestRedactPath(t *testing.T) {
	if got := redactPath("/api/v1/password-resets/" + strings.Repeat("A", 60) + "/x"); got != "/api/v1/password-resets/<redacted>/x" {
		t.Errorf("got %s", got)
	}
}

// TestSessionStore holds both Sessions the tests use to one behaviour: PGSessions (and
// what only its table shows) and memSessions, which stands in for it on the memory tier.
func TestSessionStore(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testSessions(t, newMemSessions()) })
	t.Run("postgres", func(t *testing.T) {
		ctx := context.Background()
		store, err := postgres.Open(ctx, testdb.New(t))
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		for range 2 { // idempotent
			if err := Migrate(ctx, store.Pool()); err != nil {
				t.Fatal(err)
			}
		}
		s := NewPGSessions(store.Pool())
		tok := testSessions(t, s)
		var stored int
		if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM http_sessions WHERE position($1::bytea in id) > 0`, []byte(tok)).Scan(&stored); err != nil || stored != 0 {
			t.Fatalf("the token itself is stored (%d, %v)", stored, err)
		}
		// testSessions left three sessions, all revoked at its now.
		if n, err := s.DeleteExpired(ctx, sessionsNow.Add(time.Second)); err != nil || n != 3 {
			t.Errorf("delete expired: %d %v", n, err)
		}
	})
}

var sessionsNow = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// testSessions runs s through a session's life and returns the first session's token.
func testSessions(t *testing.T, s Sessions) string {
	ctx := context.Background()
	now := sessionsNow
	tok, id := NewSessionToken()
	if !wellFormedToken(tok) || !bytes.Equal(id, SessionID(tok)) {
		t.Fatal("token/id mismatch")
	}
	sess := Session{ID: id, Provider: "ACME", Login: "jane", Epoch: 2, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.Create(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, sess); err == nil {
		t.Error("a second session with the same id was created")
	}
	if err := s.Create(ctx, Session{ID: id[:16], Provider: "ACME", Login: "jane", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err == nil {
		t.Error("a session with a 16-byte id was created")
	}
	got, err := s.Get(ctx, id, now)
	if err != nil || got.Provider != "ACME" || got.Epoch != 2 || !got.StepUpUntil.IsZero() || !bytes.Equal(got.ID, id) {
		t.Fatalf("get: %+v %v", got, err)
	}
	if err := s.SetStepUp(ctx, id, now.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, id, now); !got.SteppedUp(now) || got.SteppedUp(now.Add(10*time.Minute)) {
		t.Errorf("step-up: %+v", got)
	}
	if err := s.SetEpoch(ctx, id, 3); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, id, now); got.Epoch != 3 {
		t.Errorf("epoch after SetEpoch(3): %d", got.Epoch)
	}
	if _, err := s.Get(ctx, id, now.Add(time.Hour)); err != ErrSessionNotFound {
		t.Errorf("expired session: %v", err)
	}
	if _, err := s.Get(ctx, SessionID("no such token"), now); err != ErrSessionNotFound {
		t.Errorf("unknown session: %v", err)
	}
	_, id2 := NewSessionToken()
	sess.ID = id2
	if err := s.Create(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if n, err := s.RevokeUser(ctx, "ACME", "joe", now); err != nil || n != 0 {
		t.Fatalf("revoke another user: %d %v", n, err)
	}
	if n, err := s.RevokeUser(ctx, "ACME", "jane", now); err != nil || n != 2 {
		t.Fatalf("revoke user: %d %v", n, err)
	}
	if n, err := s.RevokeUser(ctx, "ACME", "jane", now); err != nil || n != 0 {
		t.Fatalf("revoke user again: %d %v", n, err)
	}
	if _, err := s.Get(ctx, id2, now); err != ErrSessionNotFound {
		t.Errorf("revoked session: %v", err)
	}
	if err := s.SetStepUp(ctx, id2, now); err != ErrSessionNotFound {
		t.Errorf("step-up on a revoked session: %v", err)
	}
	if err := s.SetEpoch(ctx, id2, 4); err != ErrSessionNotFound {
		t.Errorf("epoch on a revoked session: %v", err)
	}
	_, id3 := NewSessionToken()
	sess.ID = id3
	if err := s.Create(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, id3, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id3, now); err != ErrSessionNotFound {
		t.Errorf("session after Revoke: %v", err)
	}
	if err := s.Revoke(ctx, id3, now); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	return tok
}
