package projections

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// column is a column of a fact table and its SQL type, which insert casts the column's
// array to.
type column struct{ name, sqlType string }

// factColumns are the columns every fact table starts with, in the order factRow fills them.
func factColumns() []column {
	return []column{{"event_id", "uuid"}, {"kind", "text"}, {"provider", "text"}, {"login", "text"},
		{"day", "date"}, {"occurred_at", "timestamptz"}}
}

// factTable is a table of facts (ResetActivity, Analytics): rows keyed by the event that
// yields them. Apply inserts an event's rows skipping those already there, so a replay
// changes nothing; a live pass inserts all of its events' rows in one statement, and the
// rebuild copies a page's rows at once.
type factTable struct {
	name    string   // unqualified: the search_path says whose
	columns []column // in the order of the rows' values
	key     string   // the unique key a row applied twice meets
}

// newFactTable is a fact table with the factColumns, then own.
func newFactTable(name, key string, own ...column) factTable {
	return factTable{name: name, columns: append(factColumns(), own...), key: key}
}

func (t factTable) names() []string {
	names := make([]string, len(t.columns))
	for i, c := range t.columns {
		names[i] = c.name
	}
	return names
}

// insertSQL inserts the rows of one array per column, skipping those already there: one
// statement text for any number of rows, so that the pass's facts go in one statement
// (a statement per event was, in a Forgot Password burst, as dear to the server as the
// event's own insert: docs/benchmarks.md, thirteenth session).
func (t factTable) insertSQL() string {
	arrays := make([]string, len(t.columns))
	for i, c := range t.columns {
		arrays[i] = "$" + strconv.Itoa(i+1) + "::" + c.sqlType + "[]"
	}
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT * FROM unnest(%s) ON CONFLICT (%s) DO NOTHING",
		t.name, strings.Join(t.names(), ", "), strings.Join(arrays, ", "), t.key)
}

// insert writes rows in one statement, skipping those already there.
func (t factTable) insert(ctx context.Context, tx pgx.Tx, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	arrays := make([]any, len(t.columns))
	for i := range t.columns {
		values := make([]any, len(rows))
		for r, row := range rows {
			values[r] = row[i]
		}
		arrays[i] = values
	}
	_, err := tx.Exec(ctx, t.insertSQL(), arrays...)
	return err
}

// copy writes rows in one COPY, the rebuild's fast path: a row already there fails it,
// and the rebuild then applies the page event by event.
func (t factTable) copy(ctx context.Context, tx pgx.Tx, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, t.names(), pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("copy into %s: %w", t.name, err)
	}
	return nil
}

// factRow is a row of a fact table for e: the factColumns (login NULL when empty), then
// rest, the table's own columns.
func factRow(e Envelope, kind, provider, login string, rest ...any) []any {
	at := eventTime(e.Record)
	return append([]any{pgUUID(e.Record.ID), kind, provider, nullString(login), utcDay(at), at}, rest...)
}
