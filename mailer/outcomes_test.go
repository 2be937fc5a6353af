package mailer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/domain"
	"selfreset/projections"
	"selfreset/secret"
)

// TestMailOutcomesView: the analysts' view sums the delivery log per provider, kind and
// day, and shows no recipient.
func TestMailOutcomesView(t *testing.T) {
	f := newFixture(t)
	f.issueToken(t)
	f.clock.Add(time.Minute)
	f.issueToken(t) // supersedes the first: it is skipped
	code, err := f.keys.Issue(secret.KindEmailCode)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	f.emit(t, domain.RecoveryEmailCodeSent{CodeID: code.ID, KeyID: code.KeyID, CodeHash: code.Hash, Email: "new@example.org",
		SentAt: now, ExpiresAt: now.Add(10 * time.Minute)})
	if res := f.sendDue(t); res.Sent != 2 || res.Skipped != 1 {
		t.Fatalf("result %+v", res)
	}

	type row struct {
		Provider, Kind                                              string
		Day                                                         time.Time
		Queued, Pending, Sent, Failed, Skipped, Expired, Superseded int
	}
	rows, err := f.pool.Query(context.Background(), `SELECT provider, kind, day, queued, pending, sent, failed, skipped,
		skipped_expired, skipped_superseded FROM `+projections.Schema+`.mail_outcomes_daily ORDER BY kind`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	y, m, d := now.UTC().Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	want := []row{
		{"ACME", "email_code", day, 1, 0, 1, 0, 0, 0, 0},
		{"ACME", "reset_token", day, 2, 0, 1, 0, 1, 0, 1},
	}
	if len(got) != len(want) {
		t.Fatalf("rows %+v, want %+v", got, want)
	}
	for i := range want {
		if !got[i].Day.Equal(want[i].Day) {
			t.Errorf("row %d: day %s, want %s", i, got[i].Day, want[i].Day)
		}
		got[i].Day = want[i].Day
		if got[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	var all string
	if err := f.pool.QueryRow(context.Background(), `SELECT string_agg(t::text, ' ') FROM `+projections.Schema+`.mail_outcomes_daily t`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(all, "@") {
		t.Errorf("the view shows an address: %s", all)
	}
}
