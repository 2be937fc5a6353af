package main

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/testdb"
)

func TestWithPoolSize(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"url", "postgres://u@db:5432/app?sslmode=disable", "postgres://u@db:5432/app?description_cache_capacity=0&pool_max_conns=12&sslmode=disable&statement_cache_capacity=128"},
		{"postgresql scheme", "postgresql://db/app", "postgresql://db/app?description_cache_capacity=0&pool_max_conns=12&statement_cache_capacity=128"},
		{"set by the operator", "postgres://db/app?pool_max_conns=30&statement_cache_capacity=5&description_cache_capacity=9",
			"postgres://db/app?pool_max_conns=30&statement_cache_capacity=5&description_cache_capacity=9"},
		{"an exec mode chosen: its caches left alone", "postgres://db/app?default_query_exec_mode=cache_describe",
			"postgres://db/app?default_query_exec_mode=cache_describe&pool_max_conns=12&statement_cache_capacity=128"},
		{"statement cache off: statements described instead", "postgres://db/app?statement_cache_capacity=0",
			"postgres://db/app?default_query_exec_mode=describe_exec&description_cache_capacity=0&pool_max_conns=12&statement_cache_capacity=0"},
		{"statement cache off, keyword/value", "host=db statement_cache_capacity=0",
			"host=db statement_cache_capacity=0 pool_max_conns=12 default_query_exec_mode=describe_exec description_cache_capacity=0"},
		{"keyword/value", "host=db dbname=app", "host=db dbname=app pool_max_conns=12 statement_cache_capacity=128 description_cache_capacity=0"},
		{"keyword/value set", "host=db pool_max_conns=2", "host=db pool_max_conns=2 statement_cache_capacity=128 description_cache_capacity=0"},
		{"empty", "", ""},
	} {
		if got := withPoolSize(tc.in, storePoolConns(8)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A database URL that turns the statement cache off still runs queries: in pgx's default
// exec mode, which needs the cache, every query failed.
func TestStatementCacheOff(t *testing.T) {
	pool, err := pgxpool.New(t.Context(), withStatementCache(withDefault(testdb.New(t), "statement_cache_capacity", "0")))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT $1::int + 1`, 41).Scan(&n); err != nil || n != 42 {
		t.Errorf("a query with the statement cache off: %d, %v", n, err)
	}
}
