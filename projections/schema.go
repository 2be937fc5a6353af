package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Schema is the PostgreSQL schema holding the read models' tables and views, apart from
// the event store, the HTTP sessions and the mail log (which stay in the default schema)
// so that AnalystRole can be given this schema and nothing else. The migrations name it
// too (migrations/0005_readmodels_schema.up.sql onwards); the runner's own tables
// (projection_checkpoints, parked_events) stay in the default schema.
const Schema = "readmodels"

// AnalystRole is the read-only role `selfreset migrate` creates (NOLOGIN, no password):
// USAGE on Schema and SELECT on everything in it, now and later; nothing else.
// docs/read-models.md says how an operator gives a person a login with it.
const AnalystRole = "selfreset_analyst"

// sqlSchemaFirst puts Schema in front of the search_path. It ends before set_config's
// last argument, is_local, which sqlUseSchema and sqlUseSessionSchema give.
const sqlSchemaFirst = `SELECT set_config('search_path', '"` + Schema + `", ' || current_setting('search_path'), `

// sqlUseSchema puts Schema in front of the transaction's search_path until it ends.
const sqlUseSchema = sqlSchemaFirst + `true)`

// sqlUseSessionSchema puts Schema in front of the session's search_path.
const sqlUseSessionSchema = sqlSchemaFirst + `false)`

// sqlBeginInSchema begins a consumer transaction and runs sqlUseSchema in the same round
// trip: pgx sends a query without arguments over the simple protocol, which takes several
// statements.
const sqlBeginInSchema = "BEGIN; " + sqlUseSchema

// UseSchema puts Schema in front of tx's search_path until tx ends, so that a ReadModel's
// unqualified table names reach its live tables. The Runner does it for every consumer
// transaction; code that calls a ReadModel's Apply itself must do it too.
func UseSchema(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, sqlUseSchema); err != nil {
		return fmt.Errorf("projections: set search_path: %w", err)
	}
	return nil
}

// tableSchema says which schema holds table, an unqualified name, as a consumer
// transaction would resolve it: Schema first, then the search_path. ok is false when no
// schema has it.
func tableSchema(ctx context.Context, db queryRower, table string) (schema string, ok bool, err error) {
	err = db.QueryRow(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = coalesce(to_regclass(quote_ident($1) || '.' || quote_ident($2)), to_regclass(quote_ident($2)))`,
		Schema, table).Scan(&schema)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("projections: find table %s: %w", table, err)
	}
	return schema, true, nil
}
