package http

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/testdb"
	"selfreset/projections"
)

// TestUserListPlans checks, with EXPLAIN on 10,000 users in one provider (and 10,000 in
// another), that every filter/sort combination of the admin list is a keyset index scan:
// no sequential scan of admin_users and no sort, so a page costs about its own size
// however large the provider. EXPLAIN ANALYZE figures are logged (go test -v), not
// asserted: docs/read-models.md records a run.
func TestUserListPlans(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := projections.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	statuses := `(ARRAY['active','active','active','locked','admin_locked','deactivated','deleted'])[1 + i % 7]`
	for _, code := range []string{"BIG", "OTHER"} {
		_, err := pool.Exec(ctx, `INSERT INTO `+projections.Schema+`.admin_users (provider, login, display_name, roles, status, updated_at)
			SELECT $1, 'user' || lpad(i::text, 5, '0'), 'Name ' || md5(i::text), '', `+statuses+`, now()
			FROM generate_series(1, 10000) AS i`, code)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `ANALYZE `+projections.Schema+`.admin_users`); err != nil {
		t.Fatal(err)
	}
	const limit = 51 // a page of 50 and one to tell whether there is a next
	// pgx caches prepared statements, and Postgres may then reuse one generic plan for
	// every cursor: both plan kinds must be keyset scans with the cursor in the index
	// condition. Each query is PREPAREd and EXPLAINed under both plan cache modes.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	lit := func(args []any) string {
		var out []string
		for _, a := range args {
			if s, ok := a.(string); ok {
				out = append(out, "'"+strings.ReplaceAll(s, "'", "''")+"'")
			} else {
				out = append(out, fmt.Sprint(a))
			}
		}
		return "(" + strings.Join(out, ", ") + ")"
	}
	for i, tc := range []struct {
		name, sql, types, cursorCond string
		args                         []any
	}{
		{"by login, first page", sqlListByLogin, "text, text, text, int", "login >", []any{"BIG", "", "", limit}},
		{"by login, page after user05000", sqlListByLogin, "text, text, text, int", "login >", []any{"BIG", "user05000", "", limit}},
		{"by login, status locked", sqlListByLoginStatus, "text, text, text, int, text", "login >", []any{"BIG", "user05000", "", limit, "locked"}},
		{"by name, first page", sqlListByName, "text, text, text, int, text", "ROW(display_name, login) >", []any{"BIG", "", "", limit, ""}},
		{"by name, later page", sqlListByName, "text, text, text, int, text", "ROW(display_name, login) >", []any{"BIG", "user05000", "", limit, "Name 8"}},
		{"by name, status deleted", sqlListByNameStatus, "text, text, text, int, text, text", "ROW(display_name, login) >", []any{"BIG", "user05000", "", limit, "deleted", "Name 8"}},
	} {
		name := fmt.Sprintf("list_%d", i)
		if _, err := conn.Exec(ctx, "PREPARE "+name+"("+tc.types+") AS "+tc.sql); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
					t.Fatal(err)
				}
				var text string
				if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) EXECUTE "+name+lit(tc.args)).Scan(&text); err != nil {
					t.Fatal(err)
				}
				if !json.Valid([]byte(text)) || strings.Contains(text, `"Seq Scan"`) || strings.Contains(text, `"Sort"`) ||
					!regexp.MustCompile(`"Index Cond": "[^"]*`+regexp.QuoteMeta(tc.cursorCond)).MatchString(text) {
					t.Errorf("not a keyset index scan:\n%s", text)
				}
				rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE "+name+lit(tc.args))
				if err != nil {
					t.Fatal(err)
				}
				lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s, %s:\n%s", mode, tc.name, strings.Join(lines, "\n"))
			})
		}
	}
}
