package http

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"selfreset/audit"
	"selfreset/commands"
	"selfreset/domain"
)

const audPW = "Aud-pass-77123"

// auditEnv is newEnv with the audit API wired and an auditor at ACME, made one by the
// provider's user administrator (as the domain allows).
func auditEnv(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t, nil)
	e.srv.cfg.Audit = &audit.Service{Store: e.store, Codec: e.cmds.Codec(), Clock: e.clock}
	sys := domain.SystemActor("test")
	if err := e.cmds.RegisterUser(e.ctx, commands.RegisterUser{Actor: sys, Provider: "ACME", Login: "aud", DisplayName: "Ann Auditor", Password: audPW}); err != nil {
		t.Fatal(err)
	}
	boss := domain.UserActor(e.user("ACME", "boss"))
	if err := e.cmds.GrantRole(e.ctx, commands.RoleCommand{UserCommand: commands.UserCommand{Actor: boss, Provider: "ACME", Login: "aud"}, Role: domain.RoleAuditor}); err != nil {
		t.Fatal(err)
	}
	return e, e.login("ACME", "aud", audPW)
}

type auditPage struct {
	Events     []audit.Record `json:"events"`
	NextCursor *string        `json:"next_cursor"`
}

func (e *env) auditEvents(tok string, q url.Values) auditPage {
	e.t.Helper()
	r := e.do(req{Method: "GET", Path: "/api/v1/audit/events?" + q.Encode(), Token: tok})
	expect(e.t, r, http.StatusOK, "")
	var p auditPage
	r.decode(e.t, &p)
	return p
}

func eventTypes(recs []audit.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Type)
	}
	return out
}

func TestAuditAPIAccess(t *testing.T) {
	e, aud := auditEnv(t)
	jane := e.login("ACME", "jane", janePW)
	boss := e.login("ACME", "boss", bossPW)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/audit/events?provider=ACME", Invalid: true}), http.StatusUnauthorized, CodeUnauthorized)
	for name, tok := range map[string]string{"a plain user": jane, "a user administrator": boss} {
		if r := e.do(req{Method: "GET", Path: "/api/v1/audit/events?provider=ACME", Token: tok}); r.status != http.StatusForbidden {
			t.Errorf("%s reading the audit log: %d %s", name, r.status, r.body)
		}
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/audit/events?provider=NOPE", Token: aud}), http.StatusForbidden, CodeForbidden)
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/audit/state?provider=NOPE&as_of=2030-01-01T00:00:00Z", Token: aud}), http.StatusForbidden, CodeForbidden)
	// The first ones break docs/openapi.json's parameters; the others only the server's rules.
	for i, q := range []string{"", "provider=ACME&since=yesterday", "provider=ACME&until=soon", "provider=ACME&limit=0", "provider=ACME&limit=1001",
		"provider=AC-ME", "provider=ACME&client_ip=nope", "provider=ACME&login=-x-", "provider=ACME&cursor=abc"} {
		expect(t, e.do(req{Method: "GET", Path: "/api/v1/audit/events?" + q, Token: aud, Invalid: i < 5}), http.StatusBadRequest, CodeBadRequest)
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/audit/state?provider=ACME", Token: aud, Invalid: true}), http.StatusBadRequest, CodeBadRequest)
	// Refused reads are not recorded: nothing was read.
	if recs, err := e.store.ReadStream(e.ctx, domain.AuditLogStream("ACME"), 0); err == nil {
		t.Errorf("refused reads recorded: %d events", len(recs))
	}
	// The role goes with the account: a revoked auditor reads nothing.
	bossActor := domain.UserActor(e.user("ACME", "boss"))
	if err := e.cmds.RevokeRole(e.ctx, commands.RoleCommand{UserCommand: commands.UserCommand{Actor: bossActor, Provider: "ACME", Login: "aud"}, Role: domain.RoleAuditor}); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do(req{Method: "GET", Path: "/api/v1/audit/events?provider=ACME", Token: aud}), http.StatusForbidden, CodeForbidden)
}

func TestAuditAPIEvents(t *testing.T) {
	e, aud := auditEnv(t)
	mid := e.clock.Now()
	e.clock.Add(time.Minute)
	sys := domain.SystemActor("test")
	if err := e.cmds.AdminLock(e.ctx, commands.UserCommand{Actor: sys, Provider: "ACME", Login: "jane"}); err != nil {
		t.Fatal(err)
	}
	jane := url.Values{"provider": {"acme"}, "login": {"Jane"}}
	all := e.auditEvents(aud, jane)
	if got := strings.Join(eventTypes(all.Events), ","); got != "UserRegistered,AccountAdminLocked" || all.NextCursor != nil {
		t.Fatalf("jane's history: %s (next %v)", got, all.NextCursor)
	}
	if bytes.Contains(mustJSON(t, all), []byte("argon2id")) || all.Events[0].Data.String("password_hash") != audit.Redacted {
		t.Errorf("password hash not redacted: %s", mustJSON(t, all.Events[0]))
	}

	// Paging by cursor visits the provider's events once each, in feed order.
	q := url.Values{"provider": {"ACME"}, "type": {"UserRegistered"}, "limit": {"2"}}
	var paged []audit.Record
	for range 10 {
		p := e.auditEvents(aud, q)
		paged = append(paged, p.Events...)
		if p.NextCursor == nil {
			break
		}
		q.Set("cursor", *p.NextCursor)
	}
	if got := strings.Join(eventTypes(paged), ","); got != "UserRegistered,UserRegistered,UserRegistered,UserRegistered" {
		t.Errorf("paged UserRegistered of ACME: %s", got) // boss, jane, joe, aud
	}
	for i := 1; i < len(paged); i++ {
		if !paged[i-1].Position.Less(paged[i].Position) {
			t.Errorf("page order: %v then %v", paged[i-1].Position, paged[i].Position)
		}
	}

	// Filters: until, since, actor.
	if p := e.auditEvents(aud, url.Values{"provider": {"ACME"}, "login": {"jane"}, "until": {mid.Format(time.RFC3339Nano)}}); len(p.Events) != 1 {
		t.Errorf("until: %v", eventTypes(p.Events))
	}
	if p := e.auditEvents(aud, url.Values{"provider": {"ACME"}, "since": {mid.Add(time.Second).Format(time.RFC3339Nano)}, "type": {"AccountAdminLocked"}}); len(p.Events) != 1 {
		t.Errorf("since: %v", eventTypes(p.Events))
	}
	if p := e.auditEvents(aud, url.Values{"provider": {"ACME"}, "actor": {"system:test"}, "login": {"jane"}}); len(p.Events) != 2 {
		t.Errorf("actor: %v", eventTypes(p.Events))
	}

	// NDJSON streams the same records.
	r := e.do(req{Method: "GET", Path: "/api/v1/audit/events?" + jane.Encode(), Token: aud, Header: map[string]string{"Accept": "application/x-ndjson"}})
	expect(t, r, http.StatusOK, "")
	if ct := r.header.Get("Content-Type"); ct != NDJSON {
		t.Errorf("Content-Type %q", ct)
	}
	var streamed []audit.Record
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		var rec audit.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("ndjson line %q: %v", sc.Text(), err)
		}
		streamed = append(streamed, rec)
	}
	if string(mustJSON(t, streamed)) != string(mustJSON(t, all.Events)) {
		t.Errorf("streamed %s\nwant %s", mustJSON(t, streamed), mustJSON(t, all.Events))
	}

	// Every read is on record, with who and what.
	recs, err := e.store.ReadStream(e.ctx, domain.AuditLogStream("ACME"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 8 { // jane + 3 pages + until + since + actor + stream
		t.Errorf("%d reads recorded, want 8", len(recs))
	}
	v, err := e.cmds.Codec().DecodeRecorded(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	read := v.(domain.AuditLogRead)
	if recs[0].Metadata.Actor != "user:ACME/aud" || read.What != "events" || read.Filters["login"] != "jane" || read.Filters["provider"] != "ACME" {
		t.Errorf("recorded read: %+v %+v", recs[0].Metadata, read)
	}
}

func TestAuditAPIState(t *testing.T) {
	e, aud := auditEnv(t)
	before := e.clock.Now()
	e.clock.Add(time.Hour)
	sys := domain.SystemActor("test")
	if err := e.cmds.AdminLock(e.ctx, commands.UserCommand{Actor: sys, Provider: "ACME", Login: "jane"}); err != nil {
		t.Fatal(err)
	}
	state := func(asOf time.Time) audit.ProviderState {
		r := e.do(req{Method: "GET", Path: "/api/v1/audit/state?provider=ACME&login=jane&as_of=" + url.QueryEscape(asOf.Format(time.RFC3339Nano)), Token: aud})
		expect(t, r, http.StatusOK, "")
		var st audit.ProviderState
		r.decode(t, &st)
		return st
	}
	if st := state(before); len(st.Users) != 1 || !st.Users[0].Exists || st.Users[0].AdminLocked {
		t.Errorf("before the lock: %+v", st)
	}
	if st := state(e.clock.Now()); len(st.Users) != 1 || !st.Users[0].AdminLocked {
		t.Errorf("after the lock: %+v", st)
	}
	if st := state(before.Add(-24 * time.Hour)); st.Exists || len(st.Users) != 1 || st.Users[0].Exists {
		t.Errorf("before anything: %+v", st)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
