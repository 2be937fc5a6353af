package projections

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/pgmigrate"
)

// migrationFiles holds the runner's tables and every built-in read model's tables and
// views. Read models are rebuilt from the event store, never migrated down.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationsTable records the schema version of this package's tables.
const migrationsTable = "projections_migrations"

// Migrate brings the runner's tables (checkpoints, parked events) and the built-in read
// models' tables and views (in Schema) up to date, recording their version in
// projections_migrations (internal/pgmigrate says how, and why it is safe at every start),
// then makes sure AnalystRole exists and may read Schema and nothing else; the grants run
// under a lock of their own.
//
// Creating the role needs CREATEROLE (or a superuser); where the database user lacks it,
// an administrator creates the role once (CREATE ROLE selfreset_analyst NOLOGIN) and
// migrate grants to it.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := pgmigrate.Up(ctx, pool, migrationFiles, "migrations", migrationsTable); err != nil {
		return err
	}
	if err := grantReadOnly(ctx, pool, AnalystRole); err != nil {
		return fmt.Errorf("projections: migrate: %w", err)
	}
	return nil
}

// grantReadOnly creates role (NOLOGIN) unless it exists and gives it USAGE on Schema and
// SELECT on every table and view in it, including those created later by the migrating
// user (default privileges), and takes away any direct grant it has in public (the event
// store, sessions, mail log, command queue and rate limits live there; PUBLIC gets
// nothing on them either, so the role cannot read them). It runs on every migrate, so a
// role dropped or changed by hand is put right, in one transaction serialised by an
// advisory lock: concurrent GRANTs on one object may fail with "tuple concurrently updated".
func grantReadOnly(ctx context.Context, pool *pgxpool.Pool, role string) error {
	id := pgx.Identifier{role}.Sanitize()
	schema := pgx.Identifier{Schema}.Sanitize()
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('selfreset.projections.grants', 0))`); err != nil {
			return fmt.Errorf("lock grants: %w", err)
		}
		if err := createRole(ctx, tx, role); err != nil {
			return err
		}
		for _, stmt := range []string{
			"GRANT USAGE ON SCHEMA " + schema + " TO " + id,
			"GRANT SELECT ON ALL TABLES IN SCHEMA " + schema + " TO " + id,
			"ALTER DEFAULT PRIVILEGES IN SCHEMA " + schema + " GRANT SELECT ON TABLES TO " + id,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("role %s: %s: %w", role, stmt, err)
			}
		}
		return revokePublicGrants(ctx, tx, role)
	})
}

// revokePublicGrants takes away the direct grants role holds on relations in public. It
// revokes only where a grant exists: a blanket REVOKE ON ALL TABLES rewrites every table's
// catalog row and fails with "tuple concurrently updated" while another schema owner's
// migration (in another process) creates an index on one of them.
func revokePublicGrants(ctx context.Context, tx pgx.Tx, role string) error {
	// A failed Query leaves rows in an error state, which CollectRows reports.
	rows, _ := tx.Query(ctx, `SELECT DISTINCT c.oid::regclass::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
		     aclexplode(c.relacl) a
		WHERE n.nspname = 'public' AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)`, role)
	rels, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("role %s: list grants in public: %w", role, err)
	}
	for _, rel := range rels {
		// rel is regclass text, already quoted where needed.
		if _, err := tx.Exec(ctx, "REVOKE ALL ON "+rel+" FROM "+pgx.Identifier{role}.Sanitize()); err != nil {
			return fmt.Errorf("role %s: revoke on %s: %w", role, rel, err)
		}
	}
	return nil
}

// createRole creates role NOLOGIN unless it exists. Roles belong to the whole server, so
// another database's migrate may create it at the same moment: the loser's duplicate_object
// (or unique_violation, when both passed the check) means it exists, which is all we want.
// The savepoint keeps tx usable after that error.
func createRole(ctx context.Context, tx pgx.Tx, role string) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return fmt.Errorf("role %s: %w", role, err)
	}
	if exists {
		return nil
	}
	err := savepoint(ctx, tx, func(pgx.Tx) error {
		_, err := tx.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" NOLOGIN")
		return err
	})
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505"): // duplicate_object, unique_violation
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
		return fmt.Errorf("role %s does not exist and this database user may not create it: "+
			"run CREATE ROLE %s NOLOGIN as a superuser (or grant CREATEROLE), then migrate again: %w", role, role, err)
	}
	return fmt.Errorf("create role %s: %w", role, err)
}
