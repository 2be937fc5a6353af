package projections

import (
	"strings"
	"testing"
	"time"

	"selfreset/commands"
	"selfreset/domain"
)

// TestAnalytics checks the analytics model's tables and the daily views over them, and the
// reset-duration views, on the shared test history plus an admin disabling and enabling
// bob again at the end.
func TestAnalytics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.writeHistory()
	admin := domain.Actor{Provider: e.acme, Login: "admin", Admin: true}
	bob := commands.UserCommand{Actor: admin, Provider: e.acme, Login: "bob"}
	e.clock.Add(time.Minute)
	disabledAt := e.clock.Now()
	e.must(e.cmd.DisableSelfReset(e.ctx, bob))
	e.clock.Add(time.Minute)
	reenabledAt := e.clock.Now()
	e.must(e.cmd.EnableSelfReset(e.ctx, bob))
	e.runToHead(e.runner(nil))
	day := utcDay(t0)

	t.Run("login_activity_daily", func(t *testing.T) {
		type row struct {
			Provider                                                  string
			Day                                                       time.Time
			Succeeded, Failures, WrongPassword, Locked, Unknown, Step int
			Accounts, Lockouts, Unlocks, ByReset, ByAdmin             int
		}
		got := query[row](t, e, `SELECT provider, day, logins_succeeded, login_failures, failed_wrong_password,
			failed_locked, failed_unknown_account, failed_step_up, accounts_failed, lockouts, unlocks,
			unlocks_by_reset, unlocks_by_admin
			FROM readmodels.login_activity_daily WHERE provider = ANY($1) ORDER BY provider, day`, e.codes())
		// alice and gus fail five times each and are locked; alice's reset unlocks her;
		// "ghost" does not exist (counted, but with no login).
		same(t, got, []row{{e.acme, day, 0, 11, 10, 0, 1, 0, 2, 2, 1, 1, 0}})
		if n := e.count(`SELECT count(*) FROM readmodels.login_activity_facts WHERE provider = $1 AND reason = 'unknown_account' AND login IS NULL`, e.acme); n != 1 {
			t.Errorf("%d unknown-account failures without a login, want 1", n)
		}
	})

	t.Run("configuration_funnel_daily", func(t *testing.T) {
		type row struct {
			Provider                                    string
			Day                                         time.Time
			Sent, SentAccounts, Rejected, Verified      int
			VerifiedAccounts, Configured, ConfiguredAcc int
		}
		got := query[row](t, e, `SELECT provider, day, codes_sent, accounts_sent_code, codes_rejected, codes_verified,
			accounts_verified, configured, accounts_configured
			FROM readmodels.configuration_funnel_daily WHERE provider = ANY($1) ORDER BY provider, day`, e.codes())
		// alice, carol and erin each get a code, verify it and configure; alice mistypes once.
		same(t, got, []row{{e.acme, day, 3, 3, 1, 3, 3, 3, 3}})
	})

	t.Run("enablement_history", func(t *testing.T) {
		type row struct {
			Login      string
			EnabledAt  time.Time
			EnabledBy  string
			DisabledAt *time.Time
			DisabledBy *string
		}
		got := query[row](t, e, `SELECT login, enabled_at, enabled_by, disabled_at, disabled_by
			FROM readmodels.enablement_history WHERE provider = ANY($1) ORDER BY login, enabled_at`, e.codes())
		by := admin.ID()
		open := func(login string) row { return row{login, t0, operator.ID(), nil, nil} }
		same(t, got, []row{
			open("alice"),
			{"bob", t0, operator.ID(), &disabledAt, &by},
			{"bob", reenabledAt, by, nil, nil},
			open("carol"), open("erin"),
		})
	})

	t.Run("reset_durations", func(t *testing.T) {
		type row struct {
			Login       string
			RequestedAt time.Time
			Resends     int
			CompletedAt *time.Time
			Seconds     *float64
		}
		got := query[row](t, e, `SELECT login, requested_at, resends, completed_at, seconds
			FROM readmodels.reset_durations WHERE provider = $1 AND day = $2 ORDER BY requested_at, login`, e.acme, day)
		seconds := h.ResetAt.Sub(t0.Add(time.Minute)).Seconds()
		want := []row{{"alice", t0.Add(time.Minute), 1, &h.ResetAt, &seconds}}
		for range h.Extra {
			want = append(want, row{"alice", h.ResetAt, 0, nil, nil})
		}
		want = append(want, row{"carol", h.ResetAt, 0, nil, nil}, row{"erin", h.ResetAt, 0, nil, nil})
		same(t, got, want)

		type daily struct {
			Requests, Completed int
			P50, Max            *float64
		}
		d := query[daily](t, e, `SELECT requests, completed, p50_seconds, max_seconds
			FROM readmodels.reset_durations_daily WHERE provider = $1 AND day = $2`, e.acme, day)
		same(t, d, []daily{{len(want), 1, &seconds, &seconds}})
	})

	t.Run("no addresses, hashes or IPs", func(t *testing.T) {
		for _, table := range e.schemaTables() {
			for _, row := range e.dumpTable("readmodels." + table) {
				for _, bad := range []string{"@example.", "$argon2id$", "127.0.0.1"} {
					if strings.Contains(row, bad) {
						t.Errorf("%s holds %q: %s", table, bad, row)
					}
				}
			}
		}
	})
}
