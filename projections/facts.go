package projections

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// factColumns are the columns every fact table starts with, in the order factRow fills them.
const factColumns = "event_id, kind, provider, login, day, occurred_at"

// factTable is a table of facts (ResetActivity, Analytics): rows keyed by the event that
// yields them. Apply inserts an event's rows skipping those already there, so a replay
// changes nothing; the rebuild copies a page's rows at once.
type factTable struct {
	name    string // unqualified: the search_path says whose
	columns string // comma-separated, in the order of the rows' values
	key     string // the unique key a row applied twice meets
}

// insert writes rows in one statement, skipping those already there. An event yields
// one or two facts, so a handful of statement texts serve every insert.
func (t factTable) insert(ctx context.Context, tx pgx.Tx, rows ...[]any) error {
	if len(rows) == 0 {
		return nil
	}
	width := strings.Count(t.columns, ",") + 1
	values := make([]string, len(rows))
	args := make([]any, 0, width*len(rows))
	for r, row := range rows {
		params := make([]string, width)
		for i := range params {
			params[i] = "$" + strconv.Itoa(r*width+i+1)
		}
		values[r] = "(" + strings.Join(params, ", ") + ")"
		args = append(args, row...)
	}
	_, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s) VALUES %s ON CONFLICT (%s) DO NOTHING",
		t.name, t.columns, strings.Join(values, ", "), t.key), args...)
	return err
}

// copy writes rows in one COPY, the rebuild's fast path: a row already there fails it,
// and the rebuild then applies the page event by event.
func (t factTable) copy(ctx context.Context, tx pgx.Tx, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, strings.Split(t.columns, ", "), pgx.CopyFromRows(rows)); err != nil {
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
