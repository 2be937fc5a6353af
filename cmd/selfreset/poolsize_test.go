package main

import "testing"

func TestWithPoolSize(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"url", "postgres://u@db:5432/app?sslmode=disable", "postgres://u@db:5432/app?description_cache_capacity=0&pool_max_conns=12&sslmode=disable&statement_cache_capacity=128"},
		{"postgresql scheme", "postgresql://db/app", "postgresql://db/app?description_cache_capacity=0&pool_max_conns=12&statement_cache_capacity=128"},
		{"set by the operator", "postgres://db/app?pool_max_conns=30&statement_cache_capacity=5&description_cache_capacity=9",
			"postgres://db/app?pool_max_conns=30&statement_cache_capacity=5&description_cache_capacity=9"},
		{"an exec mode chosen: its caches left alone", "postgres://db/app?default_query_exec_mode=cache_describe",
			"postgres://db/app?default_query_exec_mode=cache_describe&pool_max_conns=12&statement_cache_capacity=128"},
		{"keyword/value", "host=db dbname=app", "host=db dbname=app pool_max_conns=12 statement_cache_capacity=128 description_cache_capacity=0"},
		{"keyword/value set", "host=db pool_max_conns=2", "host=db pool_max_conns=2 statement_cache_capacity=128 description_cache_capacity=0"},
		{"empty", "", ""},
	} {
		if got := withPoolSize(tc.in, storePoolConns(8)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
