package projections

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/domain"
)

// TestReadModels checks every row the read models hold of this test's providers (on the
// shared EventStoreDB the runner also fed them other tests' events: every query keeps to
// this test's codes).
func TestReadModels(t *testing.T) {
	e := newEnv(t)
	h := e.writeHistory()
	r := e.runner(nil) // the built-in read models
	e.runToHead(r)

	t.Run("providers", func(t *testing.T) {
		type row struct {
			Code, Name string
			Allowed    bool
			UpdatedAt  time.Time
		}
		got := query[row](t, e, `SELECT code, name, self_reset_allowed, updated_at FROM readmodels.providers
			WHERE code = ANY($1) ORDER BY code`, e.codes())
		want := []row{{e.acme, "Acme Agency", true, t0}, {e.nope, "Nope Inc", false, t0}}
		same(t, got, want)
	})

	t.Run("admin_users", func(t *testing.T) {
		type row struct {
			Provider, Login, DisplayName, Roles, Status string
			Enabled, Configured                         bool
			EmailMasked                                 *string
			LastResetAt                                 *time.Time
		}
		got := query[row](t, e, `SELECT provider, login, display_name, roles, status, self_reset_enabled,
			self_reset_configured, recovery_email_masked, last_reset_at FROM readmodels.admin_users
			WHERE provider = ANY($1) ORDER BY provider, login`, e.codes())
		masked := func(email string) *string { m := domain.MaskEmail(email); return &m }
		resetAt := h.ResetAt
		want := []row{
			{e.acme, "admin", "Ada Admin", "user-admin", "active", false, false, nil, nil},
			{e.acme, "alice", "Alice Archer", "", "active", true, true, masked("alice@example.org"), &resetAt},
			{e.acme, "bob", "Bob Baker", "", "active", true, false, nil, nil},
			{e.acme, "carol", "Carol Cole", "", "admin_locked", true, true, masked("carol@example.org"), nil},
			{e.acme, "dave", "Dave Dunn", "", "active", false, false, nil, nil},
			{e.acme, "erin", "Erin Eck", "", "deactivated", true, true, masked("erin@example.net"), nil},
			{e.acme, "frank", "Frank Ford", "", "deleted", false, false, nil, nil},
			{e.acme, "gus", "Gus Gray", "", "locked", false, false, nil, nil},
			{e.nope, "zed", "Zed Zane", "", "active", false, false, nil, nil},
		}
		same(t, got, want)
		// The clear address is nowhere in the table.
		for _, d := range e.dumpTable("readmodels.admin_users") {
			if strings.Contains(d, "@example.") {
				t.Errorf("admin_users holds a clear email address: %s", d)
			}
		}
		// The lock flags behind the status.
		type flags struct{ Locked, AdminLocked, Deactivated, Deleted bool }
		f := query[flags](t, e, `SELECT locked, admin_locked, deactivated, deleted FROM readmodels.admin_users
			WHERE provider = $1 AND login = 'alice'`, e.acme)
		same(t, f, []flags{{}}) // locked by failed logins, then unlocked by the reset
	})

	t.Run("reset_tokens", func(t *testing.T) {
		type row struct {
			TokenID, Provider, Login string
			IssuedAt, ExpiresAt      time.Time
			State                    string
			WrongAttempts            int
			Resend                   bool
			Supersedes, SupersededBy *string
			UsedAt, EndedAt          *time.Time
			EndReason                *string
		}
		got := query[row](t, e, `SELECT token_id, provider, login, issued_at, expires_at, state, wrong_attempts,
			resend, supersedes, superseded_by, used_at, ended_at, end_reason FROM readmodels.reset_tokens
			WHERE provider = ANY($1) ORDER BY issued_at, login, token_id`, e.codes())
		str := func(s string) *string { return &s }
		at := func(d time.Duration) *time.Time { t := t0.Add(d); return &t }
		min := time.Minute
		want := []row{
			{h.T1, e.acme, "alice", t0.Add(min), t0.Add(6 * min), "superseded", 0, false, nil, str(h.T2), nil, at(2 * min), str("superseded")},
			{h.T2, e.acme, "alice", t0.Add(2 * min), t0.Add(7 * min), "used", 1, true, str(h.T1), nil, at(3 * min), at(3 * min), str("used")},
		}
		// alice's extra tokens: each superseded by the next; the last one expired unused,
		// so T5 does not supersede it (it stays active, and expired).
		var prev *string
		for i, id := range h.Extra {
			r := row{id, e.acme, "alice", t0.Add(3 * min), t0.Add(8 * min), "active", 0, false, prev, nil, nil, nil, nil}
			if i+1 < len(h.Extra) {
				r.State, r.SupersededBy, r.EndedAt, r.EndReason = "superseded", str(h.Extra[i+1]), at(3*min), str("superseded")
			}
			want = append(want, r)
			prev = str(id)
		}
		want = append(want,
			row{h.T3, e.acme, "carol", t0.Add(3 * min), t0.Add(8 * min), "revoked", 0, false, nil, nil, nil, at(10 * min), str("admin_locked")},
			row{h.T4, e.acme, "erin", t0.Add(3 * min), t0.Add(8 * min), "revoked", 5, false, nil, nil, nil, at(3 * min), str("too_many_attempts")},
			row{h.T5, e.acme, "alice", h.Now, h.Now.Add(5 * min), "active", 0, false, nil, nil, nil, nil, nil},
		)
		same(t, got, want)

		// "Is this token valid now" is one query, and the view agrees.
		for _, tok := range []string{h.T1, h.T2, h.T3, h.T4, h.T5} {
			valid := e.count(`SELECT count(*) FROM readmodels.reset_tokens WHERE token_id = $1 AND state = 'active' AND expires_at > now()`, tok) == 1
			inView := e.count(`SELECT count(*) FROM readmodels.reset_tokens_valid_now WHERE token_id = $1`, tok) == 1
			if valid != (tok == h.T5) || inView != valid {
				t.Errorf("token %s: valid %v, in view %v; want %v", tok, valid, inView, tok == h.T5)
			}
		}
	})

	t.Run("reset_activity_facts", func(t *testing.T) {
		type row struct {
			Kind, Provider, Login string
			Reason                *string
			Resend                bool
		}
		got := query[row](t, e, `SELECT kind, provider, coalesce(login, ''), reason, resend FROM readmodels.reset_activity_facts
			WHERE day = '2025-03-10' AND provider = ANY($1) ORDER BY occurred_at, kind, login NULLS FIRST, reason`, e.codes())
		r := func(kind, login, reason string, resend bool) row {
			p := e.acme
			if login == "zed" {
				p = e.nope
			}
			return row{kind, p, login, nullString(reason), resend}
		}
		want := []row{
			// t0+1m
			r("request", "alice", "", false), r("token_issued", "alice", "", false),
			// t0+2m: resend, wrong token
			r("token_issued", "alice", "", true), r("token_rejected", "alice", "wrong_token", false),
			// t0+3m: reset, then the refusals (sorted by kind, login, reason within the minute)
			r("completed", "alice", "", false),
			// A request for an account that does not exist keeps no login (it may be anything).
			r("rejected", "", "unknown_account", false),
			r("rejected", "alice", "identifiers_mismatch", false), r("rejected", "alice", "throttled", false),
			r("rejected", "bob", "not_configured", false),
			r("rejected", "dave", "no_active_token", true), r("rejected", "dave", "user_not_enabled", false),
			r("rejected", "erin", "deactivated", false),
			r("rejected", "frank", "deleted", false),
			r("rejected", "zed", "provider_not_allowed", false),
			r("request", "", "unknown_account", false),
			r("request", "alice", "identifiers_mismatch", false), r("request", "alice", "throttled", false),
		}
		for range h.Extra {
			want = append(want, r("request", "alice", "", false))
		}
		want = append(want,
			r("request", "bob", "not_configured", false),
			r("request", "carol", "", false),
			r("request", "dave", "user_not_enabled", false),
			r("request", "erin", "deactivated", false), r("request", "erin", "", false),
			r("request", "frank", "deleted", false),
			r("request", "zed", "provider_not_allowed", false),
		)
		for range h.Extra {
			want = append(want, r("token_issued", "alice", "", false))
		}
		want = append(want,
			r("token_issued", "carol", "", false), r("token_issued", "erin", "", false),
			r("token_rejected", "erin", "wrong_token", false), r("token_rejected", "erin", "wrong_token", false),
			r("token_rejected", "erin", "wrong_token", false), r("token_rejected", "erin", "wrong_token", false),
			r("token_rejected", "erin", "wrong_token", false),
			// t0+10m
			r("rejected", "carol", "admin_locked", false), r("rejected", "carol", "resend_after_expiry", true),
			r("request", "carol", "admin_locked", false),
		)
		same(t, got, want)
	})

	t.Run("reset_activity_daily", func(t *testing.T) {
		type row struct {
			Provider                                                  string
			Day                                                       time.Time
			Requests, TokensIssued, TokensResent, Rejections          int
			UnknownAccount, Mismatch, Throttled, NotConfigured        int
			UserNotEnabled, ProviderNotAllowed, AccountStatus, Resend int
			ByReason                                                  string
			TokenRejections, Completed, ExpiredUnused                 int
		}
		got := query[row](t, e, `SELECT provider, day, requests, tokens_issued, tokens_resent, rejections,
			rejected_unknown_account, rejected_identifiers_mismatch, rejected_throttled, rejected_not_configured,
			rejected_user_not_enabled, rejected_provider_not_allowed, rejected_account_status, rejected_resend,
			rejections_by_reason::text, token_rejections, completed_resets, tokens_expired_unused
			FROM readmodels.reset_activity_daily WHERE provider = ANY($1) ORDER BY day, provider`, e.codes())
		day := time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)
		today := utcDay(h.Now)
		reasons := func(m map[string]int) string { b, _ := json.Marshal(m); return normJSON(t, string(b)) }
		k := len(h.Extra)
		want := []row{
			{e.acme, day, 11 + k, 4 + k, 1, 10, 1, 1, 1, 1, 1, 0, 3, 2,
				reasons(map[string]int{"unknown_account": 1, "identifiers_mismatch": 1, "throttled": 1, "not_configured": 1,
					"user_not_enabled": 1, "deleted": 1, "deactivated": 1, "admin_locked": 1, "no_active_token": 1, "resend_after_expiry": 1}),
				6, 1, 1 + k},
			{e.nope, day, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, reasons(map[string]int{"provider_not_allowed": 1}), 0, 0, 0},
			{e.acme, today, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "{}", 0, 0, 0},
		}
		for i := range got {
			got[i].ByReason = normJSON(t, got[i].ByReason)
		}
		same(t, got, want)
	})

	// Every example runs as the analyst, but those marked "-- operator" (the runner's
	// tables), which run as the migrating user. The mailer's view needs the mail log: its
	// own migration files make it here (package mailer imports this one, so not its code).
	t.Run("docs queries run", func(t *testing.T) {
		for _, f := range []string{"0001_mail_deliveries.up.sql", "0002_mail_outcomes_view.up.sql"} {
			sql, err := os.ReadFile("../mailer/migrations/" + f)
			e.must(err)
			_, err = e.pool.Exec(e.ctx, string(sql))
			e.must(err)
		}
		doc, err := os.ReadFile("../docs/read-models.md")
		e.must(err)
		blocks := strings.Split(string(doc), "```sql\n")[1:]
		if len(blocks) < 12 {
			t.Fatalf("found %d SQL examples in docs/read-models.md", len(blocks))
		}
		asAnalyst := 0
		for _, b := range blocks {
			sql, _, _ := strings.Cut(b, "```")
			err := pgx.BeginFunc(e.ctx, e.pool, func(tx pgx.Tx) error {
				if !strings.HasPrefix(sql, "-- operator") {
					asAnalyst++
					if _, err := tx.Exec(e.ctx, "SET LOCAL ROLE "+AnalystRole); err != nil {
						return err
					}
				}
				rows, err := tx.Query(e.ctx, sql)
				if err != nil {
					return err
				}
				for rows.Next() {
				}
				rows.Close()
				return rows.Err()
			})
			if err != nil {
				t.Errorf("%v\n%s", err, sql)
			}
		}
		if asAnalyst == 0 {
			t.Error("no example ran as the analyst")
		}
	})

	t.Run("checkpoints", func(t *testing.T) {
		head, err := e.store.Head(e.ctx)
		e.must(err)
		if e.shared {
			// The runner stopped at a head at or past this test's last event; others may
			// have appended since.
			own := e.ownEvents()
			head = own[len(own)-1].Position
		}
		for _, m := range ReadModels() {
			cp, err := readCheckpoint(e.ctx, e.pool, m.Name())
			e.must(err)
			if reached := cp == head || (e.shared && head.Less(cp)); !reached {
				t.Errorf("%s checkpoint %s, want head %s", m.Name(), cp, head)
			}
		}
		if n := len(e.ownParked()); n != 0 {
			t.Errorf("%d parked events, want none", n)
		}
	})
}

// query scans every row of sql into a T, field by field in column order.
func query[T any](t *testing.T, e *env, sql string, args ...any) []T {
	t.Helper()
	rows, err := e.pool.Query(e.ctx, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
		var v T
		rv := reflect.ValueOf(&v).Elem()
		dest := make([]any, rv.NumField())
		for i := range dest {
			dest[i] = rv.Field(i).Addr().Interface()
		}
		return v, row.Scan(dest...)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// same compares row slices, normalising times to UTC.
func same[T any](t *testing.T, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d rows, want %d\ngot:  %+v\nwant: %+v", len(got), len(want), show(got), show(want))
		return
	}
	for i := range want {
		g, w := show(got[i:i+1]), show(want[i:i+1])
		if g != w {
			t.Errorf("row %d:\ngot:  %s\nwant: %s", i, g, w)
		}
	}
}

// show renders rows as JSON (times in UTC, pointers followed) for comparison and display.
func show[T any](rows []T) string {
	b, err := json.Marshal(utcTimes(reflect.ValueOf(rows)).Interface())
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// utcTimes returns a copy of v with every time.Time in UTC.
func utcTimes(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Slice:
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(utcTimes(v.Index(i)))
		}
		return out
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type().Elem())
		out.Elem().Set(utcTimes(v.Elem()))
		return out
	case reflect.Struct:
		if tm, ok := v.Interface().(time.Time); ok {
			return reflect.ValueOf(tm.UTC())
		}
		out := reflect.New(v.Type()).Elem()
		for i := range v.NumField() {
			out.Field(i).Set(utcTimes(v.Field(i)))
		}
		return out
	}
	return v
}

func normJSON(t *testing.T, s string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	b, _ := json.Marshal(m) // sorted keys
	return string(b)
}
