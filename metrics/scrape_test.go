package metrics_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"selfreset/internal/testdb"
	"selfreset/mailer"
	"selfreset/metrics"
	"selfreset/projections"
	"selfreset/reset"
)

// The scrape-time collector reads the intake queues and the mail log as they stand, and
// a database it cannot reach turns into source_up 0 instead of a failed scrape.
func TestScrapeCollectorReadsTheDatabases(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, migrate := range []func() error{
		func() error { return projections.Migrate(ctx, pool) },
		func() error { return mailer.Migrate(ctx, pool) },
		func() error { return reset.Migrate(ctx, pool) },
	} {
		if err := migrate(); err != nil {
			t.Fatal(err)
		}
	}
	// Given: two Forgot Password commands queued, the older two minutes ago; three mails
	// in the log, one still pending since five minutes.
	for _, q := range []string{
		`INSERT INTO reset_intake_request (uuid, created_at) VALUES ('a', now() - interval '2 minutes'), ('b', now())`,
		`INSERT INTO mail_deliveries (event_id, stream, revision, kind, recipient, occurred_at, state, next_attempt_at, created_at, updated_at) VALUES
			(gen_random_uuid(), 'user-ACME-ann', 3, 'reset_error', 'x', now(), 'sent', now(), now(), now()),
			(gen_random_uuid(), 'user-ACME-bob', 4, 'reset_error', 'x', now(), 'sent', now(), now(), now()),
			(gen_random_uuid(), 'user-ACME-cid', 5, 'password_changed', 'x', now(), 'pending', now(), now() - interval '5 minutes', now())`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewScrapeCollector(metrics.ScrapeConfig{Pool: pool}))

	// When scraped, then:
	want := `
# HELP selfreset_intake_queue_depth Forgot Password (reset_request_token) and Resend (reset_resend_token) commands queued and not yet decided.
# TYPE selfreset_intake_queue_depth gauge
selfreset_intake_queue_depth{queue="reset_request_token"} 2
selfreset_intake_queue_depth{queue="reset_resend_token"} 0
# HELP selfreset_mail_deliveries Rows of the mail delivery log by kind (email_code, reset_token, reset_error, password_changed) and state (pending, sent, skipped, failed).
# TYPE selfreset_mail_deliveries gauge
selfreset_mail_deliveries{kind="password_changed",state="pending"} 1
selfreset_mail_deliveries{kind="reset_error",state="sent"} 2
# HELP selfreset_scrape_source_up 1 when the last scrape could read the source (intake, projections, mail), 0 when it failed or timed out; its other figures are then missing.
# TYPE selfreset_scrape_source_up gauge
selfreset_scrape_source_up{source="intake"} 1
selfreset_scrape_source_up{source="mail"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"selfreset_intake_queue_depth", "selfreset_mail_deliveries", "selfreset_scrape_source_up"); err != nil {
		t.Error(err)
	}
	ages := gauges(t, reg, "selfreset_intake_oldest_message_age_seconds")
	if a := ages[`queue="reset_request_token"`]; a < 115 || a > 600 {
		t.Errorf("oldest request age %v s, want about 120", a)
	}
	if a := ages[`queue="reset_resend_token"`]; a != 0 {
		t.Errorf("empty queue's oldest age %v, want 0", a)
	}
	if a := gauges(t, reg, "selfreset_mail_oldest_pending_age_seconds")[""]; a < 295 || a > 900 {
		t.Errorf("oldest pending mail age %v s, want about 300", a)
	}

	// Given the database is gone, a scrape still answers, with the sources down and
	// their figures left out.
	pool.Close()
	want = `
# HELP selfreset_scrape_source_up 1 when the last scrape could read the source (intake, projections, mail), 0 when it failed or timed out; its other figures are then missing.
# TYPE selfreset_scrape_source_up gauge
selfreset_scrape_source_up{source="intake"} 0
selfreset_scrape_source_up{source="mail"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "selfreset_scrape_source_up"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "selfreset_intake_queue_depth", "selfreset_mail_deliveries"); err != nil || n != 0 {
		t.Errorf("%d figures from an unreachable database (%v)", n, err)
	}
}

// gauges maps each series of a gauge family (its labels as name="value",…) to its value.
func gauges(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			out[strings.Join(labels, ",")] = m.GetGauge().GetValue()
		}
	}
	return out
}
