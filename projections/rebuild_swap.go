package projections

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// A rebuild swaps its shadow tables in by renaming them (swapByRename) when it can: the
// final transaction then moves tables instead of copying every row (a million rows took
// 11 s to copy, with the live consumers held meanwhile). Before the swap, outside it,
// prepareRename makes each shadow table the live table's twin: logged, every index and
// constraint under its live name, analyzed. In the swap the live table moves out of the
// way, the shadow moves in, the views that read the table are redefined over the new one
// (CREATE OR REPLACE keeps each view's identity, rights and the views built on it), the
// new table gets the old one's owner, rights and comment, and the old one is dropped.
//
// Renaming needs what the copy does not: ownership of the tables and their views, and
// nothing attached to a table that the move would lose. renameBlocker says what stands
// in the way; when anything does, the rebuild copies rows as before.

// sqlRenameBlocker says why a live table ($1, regclass text) cannot be swapped by
// renaming, or ” when it can.
const sqlRenameBlocker = `SELECT CASE
	WHEN NOT pg_has_role(c.relowner, 'MEMBER') THEN 'this database user does not own it'
	WHEN c.relkind <> 'r' OR c.relpersistence <> 'p' OR c.relispartition
		OR EXISTS (SELECT FROM pg_inherits WHERE inhrelid = c.oid OR inhparent = c.oid) THEN 'it is not a plain logged table'
	WHEN c.reloptions IS NOT NULL OR c.reltablespace <> 0 OR c.relreplident <> 'd' OR c.relrowsecurity
		THEN 'it has storage parameters, a tablespace, a replica identity or row security'
	WHEN EXISTS (SELECT FROM pg_attribute WHERE attrelid = c.oid AND attacl IS NOT NULL) THEN 'it has column privileges'
	WHEN EXISTS (SELECT FROM pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal) THEN 'it has triggers'
	WHEN EXISTS (SELECT FROM pg_policy WHERE polrelid = c.oid) THEN 'it has policies'
	WHEN EXISTS (SELECT FROM pg_publication_rel WHERE prrelid = c.oid) THEN 'it is published'
	WHEN EXISTS (SELECT FROM pg_constraint WHERE (conrelid = c.oid OR confrelid = c.oid)
		AND (contype NOT IN ('p', 'u', 'c') OR condeferrable)) THEN 'it has foreign keys, exclusion or deferrable constraints'
	WHEN EXISTS (SELECT FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
		WHERE d.classid = 'pg_class'::regclass AND d.refobjid = c.oid AND s.relkind = 'S') THEN 'it owns sequences'
	WHEN EXISTS (SELECT FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class v ON v.oid = w.ev_class
		WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = c.oid AND v.oid <> c.oid
			AND (v.relkind <> 'v' OR NOT pg_has_role(v.relowner, 'MEMBER')))
		THEN 'a materialized view or a view this database user does not own reads it'
	ELSE '' END
	FROM pg_class c WHERE c.oid = $1::regclass`

// sqlDependentViews lists the views that read the tables $1 (regclass text array): name,
// definition and options. Run with the search_path at pg_catalog, so that the definitions
// name every table with its schema.
const sqlDependentViews = `SELECT DISTINCT v.oid::regclass::text, pg_get_viewdef(v.oid),
		coalesce(array_to_string(v.reloptions, ', '), '')
	FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class v ON v.oid = w.ev_class
	WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = ANY ($1::regclass[]) AND v.oid <> d.refobjid`

// prepareRename says whether every table of sh can be swapped by renaming and, if so,
// makes each shadow table the live one's twin. On false the shadow is left as it was.
func (r *Runner) prepareRename(ctx context.Context, sh *shadow) (bool, error) {
	for _, t := range sh.tables {
		var reason string
		if err := r.cfg.Pool.QueryRow(ctx, sqlRenameBlocker, t.live).Scan(&reason); err != nil {
			return false, fmt.Errorf("projections: rebuild: inspect %s: %w", t.live, err)
		}
		if reason != "" {
			r.log.Info("projections: rebuild: copying rows into the live tables, not renaming them", "table", t.live, "because", reason)
			return false, nil
		}
	}
	// The tables in parallel, a connection each: most of the time goes into rewriting
	// them to the WAL and building their indexes, work the server can spread over its cores.
	g, gctx := errgroup.WithContext(ctx)
	for _, t := range sh.tables {
		g.Go(func() error { return r.prepareTable(gctx, t) })
	}
	if err := g.Wait(); err != nil {
		return false, err
	}
	return true, nil
}

// prepareTable makes t's shadow table the live one's twin: logged, with every index and
// constraint under its live name, analyzed.
func (r *Runner) prepareTable(ctx context.Context, t shadowTable) error {
	stmts := []string{"ALTER TABLE " + t.shadow + " SET LOGGED"}
	for _, ix := range t.indexes {
		if !ix.Unique {
			stmts = append(stmts, ix.create(t.shadow))
		}
		if ix.Constraint != "" {
			kind := "UNIQUE"
			if ix.Kind == "p" {
				kind = "PRIMARY KEY"
			}
			stmts = append(stmts, "ALTER TABLE "+t.shadow+" ADD CONSTRAINT "+pgx.Identifier{ix.Constraint}.Sanitize()+
				" "+kind+" USING INDEX "+pgx.Identifier{ix.Name}.Sanitize())
		}
	}
	stmts = append(stmts, "ANALYZE "+t.shadow)
	for _, stmt := range stmts {
		if _, err := r.cfg.Pool.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("projections: rebuild: prepare %s: %s: %w", t.shadow, stmt, err)
		}
	}
	return nil
}

// swapByRename puts sh's tables in place of the live ones inside tx (see above).
func (sh *shadow) swapByRename(ctx context.Context, tx pgx.Tx) error {
	exec := func(stmt string, args ...any) error {
		if _, err := tx.Exec(ctx, stmt, args...); err != nil {
			return fmt.Errorf("projections: rebuild: swap: %s: %w", stmt, err)
		}
		return nil
	}
	var orig string
	if err := tx.QueryRow(ctx, `SELECT current_setting('search_path')`).Scan(&orig); err != nil {
		return fmt.Errorf("projections: rebuild: swap: %w", err)
	}
	if err := exec(`SELECT set_config('search_path', 'pg_catalog', true)`); err != nil {
		return err
	}
	live := make([]string, len(sh.tables))
	for i, t := range sh.tables {
		live[i] = t.live
	}
	rows, err := tx.Query(ctx, sqlDependentViews, live)
	if err != nil {
		return fmt.Errorf("projections: rebuild: swap: views: %w", err)
	}
	views, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
		var name, def, options string
		if err := row.Scan(&name, &def, &options); err != nil {
			return "", err
		}
		if options != "" {
			name += " WITH (" + options + ")"
		}
		return "CREATE OR REPLACE VIEW " + name + " AS " + strings.TrimSuffix(strings.TrimSpace(def), ";"), nil
	})
	if err != nil {
		return fmt.Errorf("projections: rebuild: swap: views: %w", err)
	}
	old := pgx.Identifier{sh.name + "_old"}.Sanitize()
	if err := exec("CREATE SCHEMA " + old); err != nil {
		return err
	}
	for _, t := range sh.tables {
		if err := exec("ALTER TABLE " + t.live + " SET SCHEMA " + old); err != nil {
			return err
		}
		if err := exec("ALTER TABLE " + t.shadow + " SET SCHEMA " + pgx.Identifier{t.liveSchema}.Sanitize()); err != nil {
			return err
		}
	}
	for _, view := range views {
		if err := exec(view); err != nil {
			return err
		}
	}
	for _, t := range sh.tables {
		prev := old + "." + pgx.Identifier{t.table}.Sanitize()
		if err := takeOver(ctx, tx, prev, t.live); err != nil {
			return err
		}
		// No CASCADE: were anything still to depend on the old table, the swap fails
		// whole rather than dropping it.
		if err := exec("DROP TABLE " + prev); err != nil {
			return err
		}
	}
	if err := exec("DROP SCHEMA " + old); err != nil {
		return err
	}
	return exec(`SELECT set_config('search_path', $1, true)`, orig)
}

// takeOver gives table the owner, rights and comment of prev (both sanitized names).
func takeOver(ctx context.Context, tx pgx.Tx, prev, table string) error {
	rows, err := tx.Query(ctx, `SELECT stmt FROM (
		SELECT 1 AS step, format('ALTER TABLE %s OWNER TO %I', $2::regclass, pg_get_userbyid(p.relowner)) AS stmt
		FROM pg_class p WHERE p.oid = $1::regclass
		UNION ALL
		SELECT 2, format('REVOKE ALL ON %s FROM %s', $2::regclass,
			CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
		FROM pg_class n, aclexplode(n.relacl) a WHERE n.oid = $2::regclass AND a.grantee <> n.relowner
		UNION ALL
		SELECT 3, format('GRANT %s ON %s TO %s%s', a.privilege_type, $2::regclass,
			CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
			CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
		FROM pg_class p, aclexplode(p.relacl) a WHERE p.oid = $1::regclass AND a.grantee <> p.relowner
		UNION ALL
		SELECT 4, format('COMMENT ON TABLE %s IS %L', $2::regclass, obj_description($1::regclass, 'pg_class'))
		WHERE obj_description($1::regclass, 'pg_class') IS NOT NULL) s ORDER BY step`, prev, table)
	if err != nil {
		return fmt.Errorf("projections: rebuild: swap: rights of %s: %w", table, err)
	}
	stmts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("projections: rebuild: swap: rights of %s: %w", table, err)
	}
	for _, stmt := range stmts {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("projections: rebuild: swap: %s: %w", stmt, err)
		}
	}
	return nil
}
