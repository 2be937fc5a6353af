package main

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"selfreset/internal/smtpsink"
	"selfreset/projections"
	"selfreset/secret"
)

// ---- mail: the harness's SMTP sink ----

// mailRecord is what the harness keeps of a mail: when it came and what it was about.
type mailRecord struct {
	received time.Time
	eventID  string // from the Message-ID, which the mailer derives from the event id
	token    bool   // it carries a reset token
}

// mailbox is the sink the serve under test sends to: it keeps a record per mail and hands
// a token to the reset flow waiting for its recipient.
type mailbox struct {
	*smtpsink.Server
	mu      sync.Mutex
	records []mailRecord
	waiters map[string]chan string // recipient → the flow waiting for its token
}

func newMailbox() *mailbox {
	m := &mailbox{waiters: map[string]chan string{}}
	m.Server = &smtpsink.Server{OnMessage: m.receive}
	return m
}

func (m *mailbox) receive(msg smtpsink.Message) {
	id, _, _ := strings.Cut(strings.Trim(msg.Header.Get("Message-ID"), "<>"), "@")
	token := ""
	for line := range strings.SplitSeq(strings.ReplaceAll(msg.Text, "\r\n", "\n"), "\n") {
		if secret.TokenLine.MatchString(line) {
			token = line
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records = append(m.records, mailRecord{received: msg.Received, eventID: id, token: token != ""})
	if token == "" {
		return
	}
	for _, to := range msg.To {
		if ch, ok := m.waiters[to]; ok {
			select {
			case ch <- token:
			default:
			}
		}
	}
}

// expect registers a wait for the next token mailed to rcpt (before asking for it).
func (m *mailbox) expect(rcpt string) <-chan string {
	ch := make(chan string, 1)
	m.mu.Lock()
	m.waiters[rcpt] = ch
	m.mu.Unlock()
	return ch
}

func (m *mailbox) forget(rcpt string) {
	m.mu.Lock()
	delete(m.waiters, rcpt)
	m.mu.Unlock()
}

// mark is where the records stand, for report.
func (m *mailbox) mark() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}

// report sums up the mails received since mark: the token mails before and after end,
// and the delay from each one's token event (issuedAt by event id) to its arrival.
func (m *mailbox) report(mark int, end time.Time, issuedAt map[string]time.Time) mailReport {
	m.mu.Lock()
	recs := append([]mailRecord(nil), m.records[mark:]...)
	m.mu.Unlock()
	r := mailReport{Received: len(recs)}
	var delays []time.Duration
	var last time.Time
	for _, rec := range recs {
		if !rec.token {
			continue
		}
		r.TokenMails++
		if rec.received.After(end) {
			r.TokenAfter++
		} else {
			r.TokenDuring++
		}
		if rec.received.After(last) {
			last = rec.received
		}
		if at, ok := issuedAt[rec.eventID]; ok {
			delays = append(delays, rec.received.Sub(at))
		}
	}
	if r.TokenAfter > 0 {
		r.LastAfterEndMS = ms(last.Sub(end))
	}
	r.TokenDelay = distributionOf(delays)
	return r
}

// ---- projection lag ----

// lagSample is how far the furthest-behind consumer was at one moment.
type lagSample struct {
	at       time.Time
	events   int
	age      time.Duration // since the oldest event some consumer has not applied occurred
	furthest string        // the consumer that had not applied it
}

// sampleLag samples the lag every period until ctx ends (a failed sample is skipped).
func (b *httpBench) sampleLag(ctx context.Context, period time.Duration) []lagSample {
	var out []lagSample
	_ = every(period, func(ctx context.Context) {
		if s, err := b.lagNow(ctx); err == nil {
			out = append(out, s)
		}
	})(ctx)
	return out
}

func (b *httpBench) lagNow(ctx context.Context) (lagSample, error) {
	status, err := b.lag.Status(ctx)
	if err != nil {
		return lagSample{}, err
	}
	s := lagSample{at: time.Now()}
	var oldest *projections.ConsumerStatus
	tied := 0 // how many consumers stand where oldest does
	for _, c := range status {
		if !c.Configured || c.Behind == 0 {
			continue
		}
		s.events = max(s.events, c.Behind)
		switch {
		case oldest == nil || c.Checkpoint.Less(oldest.Checkpoint):
			oldest, tied = &c, 1
		case c.Checkpoint == oldest.Checkpoint:
			tied++
		}
	}
	if oldest != nil {
		page, err := b.store.ReadAll(ctx, oldest.Checkpoint, 1)
		if err != nil {
			return lagSample{}, err
		}
		if len(page) == 1 {
			// As of when the checkpoint was read, not of now: Status counted the events
			// behind in between, and its own time is no consumer's lag.
			s.age = oldest.ReadAt.Sub(page[0].OccurredAt)
			s.furthest = oldest.Name
			if tied > 1 {
				// None of them has the event yet: it is late before any consumer's apply
				// (the append's commit, the watermark, the read).
				s.furthest = fmt.Sprintf("%d consumers at the same place", tied)
			}
		}
	}
	return s, nil
}

// lagStats sums up the samples taken while the phase ran (up to end).
func lagStats(samples []lagSample, end time.Time) lagReport {
	var ages []time.Duration
	var events []int
	for _, s := range samples {
		if s.at.After(end) {
			break
		}
		ages = append(ages, s.age)
		events = append(events, s.events)
	}
	// ages and events are this function's own: sorted in place, once each.
	slices.Sort(ages)
	slices.Sort(events)
	d := sortedDistribution(ages)
	r := lagReport{Samples: d.N, P50MS: d.P50MS, P99MS: d.P99MS, MaxMS: d.MaxMS}
	// Which consumer was furthest behind in the slowest tenth of the samples: where the
	// p99 comes from.
	if len(ages) > 0 {
		p90 := percentile(ages, 0.90)
		r.FurthestInSlowest = map[string]int{}
		for _, s := range samples {
			if !s.at.After(end) && s.age >= p90 && s.furthest != "" {
				r.FurthestInSlowest[s.furthest]++
			}
		}
	}
	if len(events) > 0 {
		r.P99Events = percentile(events, 0.99)
		r.MaxEvents = events[len(events)-1]
	}
	return r
}

// ---- the server process ----

// readVmHWM is the peak resident set size of pid in bytes (0 when unknown).
func readVmHWM(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// pidListeningOn finds the process with a listening TCP socket on base's port, through
// /proc/net/tcp{,6} (the socket's inode) and /proc/<pid>/fd (who holds it). Only this
// user's processes can be seen.
func pidListeningOn(base string) (int, error) {
	u, err := url.Parse(base)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return 0, fmt.Errorf("no port in %q", base)
	}
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			f := strings.Fields(line)
			// sl local_address rem_address st … inode: st 0A is LISTEN.
			if len(f) < 10 || f[3] != "0A" {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && inodes[target] {
			return strconv.Atoi(strings.Split(fd, "/")[2])
		}
	}
	return 0, fmt.Errorf("no process of this user listens on port %d", port)
}
