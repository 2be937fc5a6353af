package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// benchReport is the JSON `bench --http --json` writes.
type benchReport struct {
	Started         time.Time     `json:"started"`
	BaseURL         string        `json:"base_url"`
	PID             int           `json:"pid"`
	Provider        string        `json:"provider"`
	DurationSeconds float64       `json:"duration_seconds"`
	MaxRequests     int           `json:"max_requests"`
	Accounts        int           `json:"accounts"`
	PrepareSeconds  float64       `json:"prepare_seconds"`
	Levels          []levelReport `json:"levels"`
	VmHWMBytes      int64         `json:"vmhwm_bytes"` // the serve's peak RSS at the end
}

type levelReport struct {
	Concurrency int           `json:"concurrency"`
	Phases      []phaseReport `json:"phases"`
	// Ratios against the floor of this level: forgot-password answers to one-row inserts,
	// and the events the forgot-password phase appended to the store's own appends.
	Ratios map[string]float64 `json:"ratios,omitempty"`
}

type phaseReport struct {
	Phase             string                  `json:"phase"`
	Seconds           float64                 `json:"seconds"`
	Requests          int                     `json:"requests"`
	PerSecond         float64                 `json:"per_second"`
	P50MS             float64                 `json:"p50_ms"`
	P99MS             float64                 `json:"p99_ms"`
	Errors            int                     `json:"errors"`
	Missed            int                     `json:"missed_ticks,omitempty"` // paced phase: ticks no worker was free for
	Outcomes          map[string]int          `json:"outcomes"`
	Steps             map[string]distribution `json:"steps"`
	Events            eventsReport            `json:"events"`
	Lag               lagReport               `json:"lag"`
	Mail              mailReport              `json:"mail"`
	CPU               cpuReport               `json:"machine_cpu"`
	SettledAfterEndMS float64                 `json:"settled_after_end_ms"` // queue empty, consumers at head, no mail pending
	VmHWMBytes        int64                   `json:"vmhwm_bytes"`
}

type distribution struct {
	N     int     `json:"n"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
}

type eventsReport struct {
	InWindow  int     `json:"in_window"` // appended while the phase ran
	After     int     `json:"after"`     // appended once it ended (the intake's backlog)
	PerSecond float64 `json:"per_second"`
	// SustainedPerSecond is every event the phase caused, over the time from its start to
	// the last of them: the rate the command path kept up, backlog included.
	SustainedPerSecond float64 `json:"sustained_per_second"`
	// ZeroLagAfterLastEventMS is from the last event's time to every consumer at the head
	// with nothing queued (the mail pending then is SettledAfterEndMS's, not the lag's).
	ZeroLagAfterLastEventMS float64        `json:"zero_lag_after_last_event_ms"`
	ByType                  map[string]int `json:"by_type"`
}

type lagReport struct {
	Samples   int     `json:"samples"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
	P99Events int     `json:"p99_events"`
	MaxEvents int     `json:"max_events"`
	// FurthestInSlowest counts, over the samples at or above the p90 age, which consumer
	// was furthest behind.
	FurthestInSlowest map[string]int `json:"furthest_in_slowest,omitempty"`
}

type mailReport struct {
	Received       int          `json:"received"`
	TokenMails     int          `json:"token_mails"`
	TokenDuring    int          `json:"token_during"`
	TokenAfter     int          `json:"token_after"`
	LastAfterEndMS float64      `json:"last_after_end_ms"`
	TokenDelay     distribution `json:"token_delay"` // token event → mail received
}

// ratios compares the forgot-password phase with the floor of the same level.
func (l *levelReport) ratios() {
	by := map[string]phaseReport{}
	for _, p := range l.Phases {
		by[p.Phase] = p
	}
	l.Ratios = map[string]float64{}
	forgot, okF := by[phaseForgot]
	if ins, ok := by[phaseInsertFloor]; ok && okF && ins.PerSecond > 0 {
		l.Ratios["forgot_answers_to_insert_floor"] = round3(forgot.PerSecond / ins.PerSecond)
	}
	if app, ok := by[phaseAppendFloor]; ok && okF && app.PerSecond > 0 {
		l.Ratios["forgot_events_to_append_floor"] = round3(forgot.Events.PerSecond / app.PerSecond)
	}
	// What a decision costs the machine against what an append does: the share of the
	// append floor a machine doing nothing but decisions would reach.
	if app, ok := by[phaseAppendFloor]; ok && okF && app.CPU.PerEventMS > 0 && forgot.CPU.PerEventMS > 0 {
		l.Ratios["append_cpu_to_forgot_event_cpu"] = round3(app.CPU.PerEventMS / forgot.CPU.PerEventMS)
	}
}

// cpuReport is the busy CPU time of the whole machine from a phase's start until the
// server had settled (the intake drained, the consumers at the head, the mail sent): all
// the work the phase caused, in every process. Per request and per event it is what one
// costs, a figure the speed of a shared machine moves less than a rate.
type cpuReport struct {
	Seconds      float64 `json:"seconds"`
	PerRequestMS float64 `json:"per_request_ms,omitempty"`
	PerEventMS   float64 `json:"per_event_ms,omitempty"`
	// ByProcess splits Seconds: serve, postgres, harness (this process, its HTTP clients
	// and SMTP sink) and rest (the kernel's own work, other processes, backends that ended).
	ByProcess map[string]float64 `json:"by_process_seconds,omitempty"`
}

// shares is ByProcess as each group's share of the machine's busy time ("" without it).
func (r cpuReport) shares() string {
	if len(r.ByProcess) == 0 || r.Seconds <= 0 {
		return ""
	}
	var parts []string
	for _, g := range []string{procServe, procPostgres, procHarness, procRest} {
		if sec, ok := r.ByProcess[g]; ok {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", g, 100*sec/r.Seconds))
		}
	}
	return strings.Join(parts, ", ")
}

func cpuReportOf(seconds float64, requests, events int) cpuReport {
	r := cpuReport{Seconds: round3(seconds)}
	if seconds <= 0 {
		return r
	}
	if requests > 0 {
		r.PerRequestMS = round3(seconds * 1000 / float64(requests))
	}
	if events > 0 {
		r.PerEventMS = round3(seconds * 1000 / float64(events))
	}
	return r
}

const benchHeader = "%-4s %-22s %7s %9s %8s %8s %6s %9s %9s %9s %13s %9s %8s\n"

func (b *httpBench) printHeader() {
	b.c.printf(benchHeader, "c", "phase", "n", "per s", "p50 ms", "p99 ms", "errors", "events/s",
		"lag p99ms", "lag→0 ms", "tokens dur/aft", "mail p99", "HWM MB")
}

func (p phaseReport) row(conc int) string {
	return fmt.Sprintf("%-4d %-22s %7d %9.1f %8.2f %8.2f %6d %9.1f %9.0f %9.0f %6d/%-6d %9.0f %8.1f",
		conc, p.Phase, p.Requests, p.PerSecond, p.P50MS, p.P99MS, p.Errors, p.Events.PerSecond,
		p.Lag.P99MS, p.Events.ZeroLagAfterLastEventMS, p.Mail.TokenDuring, p.Mail.TokenAfter,
		p.Mail.TokenDelay.P99MS, float64(p.VmHWMBytes)/1e6)
}

func (b *httpBench) printReport(rep benchReport) {
	b.c.printf("\n")
	for _, l := range rep.Levels {
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range l.Ratios {
				if !yield(k) {
					return
				}
			}
		}) {
			b.c.printf("c=%d %s: %.3f\n", l.Concurrency, k, l.Ratios[k])
		}
	}
	for _, l := range rep.Levels {
		for _, p := range l.Phases {
			if line := p.CPU.shares(); line != "" && (p.Phase == phaseForgot || p.Phase == phaseAppendFloor) {
				b.c.printf("c=%d %s machine CPU: %s\n", l.Concurrency, p.Phase, line)
			}
		}
	}
	b.c.printf("serve VmHWM (peak RSS): %.1f MB\n", float64(rep.VmHWMBytes)/1e6)
}

func writeJSONReport(path string, rep benchReport) error {
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}

// distributionOf sums up latencies.
func distributionOf(ds []time.Duration) distribution {
	s := slices.Clone(ds)
	slices.Sort(s)
	return sortedDistribution(s)
}

// sortedDistribution is distributionOf for values already sorted.
func sortedDistribution(s []time.Duration) distribution {
	if len(s) == 0 {
		return distribution{}
	}
	return distribution{N: len(s), P50MS: ms(percentile(s, 0.50)), P99MS: ms(percentile(s, 0.99)), MaxMS: ms(s[len(s)-1])}
}

// percentile of sorted values by the nearest-rank method: the smallest value that at
// least p of them are at or below (the ⌈p·n⌉-th); p = 1 is the largest. Of 100 lag
// samples the p99 is the second largest, not the largest.
func percentile[T int | time.Duration](sorted []T, p float64) T {
	rank := int(math.Ceil(p * float64(len(sorted))))
	return sorted[min(len(sorted), max(rank, 1))-1]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*100) / 100 }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
