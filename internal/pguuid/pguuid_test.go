package pguuid_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/internal/pguuid"
	"selfreset/internal/testdb"
)

// TestEncodesTheBytes: what pgx sends for a uuid.UUID is unchanged (its 16 bytes in
// binary, its text where a text parameter takes it), and the binary way no longer goes
// through Value and a failed encode.
func TestEncodesTheBytes(t *testing.T) {
	u := uuid.MustParse("0b6f6d5e-2c1a-4e5f-9a7b-3c2d1e0f4a5b")
	plain, registered := pgtype.NewMap(), pgtype.NewMap()
	pguuid.Register(registered)
	cases := []struct {
		name   string
		oid    uint32
		format int16
		value  any
	}{
		{"uuid", pgtype.UUIDOID, pgtype.BinaryFormatCode, u},
		{"uuid[]", pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, []uuid.UUID{u, uuid.Nil, u}},
		{"text", pgtype.TextOID, pgtype.TextFormatCode, u},
		{"uuid as text", pgtype.UUIDOID, pgtype.TextFormatCode, u},
	}
	for _, c := range cases {
		want, err := plain.Encode(c.oid, c.format, c.value, nil)
		if err != nil {
			t.Fatalf("%s: pgx alone: %v", c.name, err)
		}
		got, err := registered.Encode(c.oid, c.format, c.value, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %x, %v; want %x as pgx alone sends", c.name, got, err, want)
		}
	}
	if got, _ := registered.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, u, nil); !bytes.Equal(got, u[:]) {
		t.Errorf("binary uuid %x, want the bytes %x", got, u[:])
	}
	allocs := func(m *pgtype.Map) float64 {
		buf := make([]byte, 0, 64)
		return testing.AllocsPerRun(100, func() { _, _ = m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, u, buf[:0]) })
	}
	if a, b := allocs(registered), allocs(plain); a > 3 || a >= b {
		t.Errorf("%v allocations per encode registered, %v without; want at most 3 and fewer", a, b)
	}
}

// TestRoundTrip sends uuid.UUIDs through a pool and a connection set up by the package.
func TestRoundTrip(t *testing.T) {
	ctx := t.Context()
	pool, err := pguuid.NewPool(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// A connection configured like the pool's, as the consumers' sessions are.
	conn, err := pguuid.Connect(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	ids := []uuid.UUID{uuid.New(), uuid.New()}
	for name, queryRow := range map[string]func(context.Context, string, ...any) pgx.Row{
		"pool": pool.QueryRow, "conn": conn.QueryRow} {
		var one uuid.UUID
		var text string
		var all []uuid.UUID
		err := queryRow(ctx, `SELECT $1::uuid, $2::text, $3::uuid[]`, ids[0], ids[1], ids).Scan(&one, &text, &all)
		if err != nil || one != ids[0] || text != ids[1].String() || len(all) != 2 || all[1] != ids[1] {
			t.Errorf("%s: %v %q %v, %v; want %v %q %v", name, one, text, all, err, ids[0], ids[1], ids)
		}
	}
}

// TestPoolsCopiedFromItsConfigRegisterToo: the intake pools are made from the read-model
// pool's Config and rely on keeping the hook.
func TestPoolsCopiedFromItsConfigRegisterToo(t *testing.T) {
	ctx := t.Context()
	pool, err := pguuid.NewPool(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	copied, err := pgxpool.NewWithConfig(ctx, pool.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(copied.Close)
	conn, err := copied.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if got, plain := len(conn.Conn().TypeMap().TryWrapEncodePlanFuncs), len(pgtype.NewMap().TryWrapEncodePlanFuncs); got != plain+1 {
		t.Errorf("%d encode wrappers on a copied pool's connection, want pgx's %d and this package's", got, plain)
	}
}
