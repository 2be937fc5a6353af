package mailer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"selfreset/internal/testkit"
	"selfreset/mailer"
)

// BenchmarkSenderThroughput sends the same burst through the sender to a loopback SMTP
// sink in four ways, in one run, so the ratios hold whatever the machine is doing: one
// sender with a new connection per message (how it was: the floor), one sender reusing
// its session, and DefaultSenders senders either way. The sink answers each message at
// once ("instant relay") or after 5 ms, like a relay that writes the message down first.
// Reported: mails/s per way and each way against the floor.
func BenchmarkSenderThroughput(b *testing.B) {
	const burst = 100
	for _, delay := range []time.Duration{0, 5 * time.Millisecond} {
		b.Run(fmt.Sprintf("relay_delay=%s", delay), func(b *testing.B) {
			ways := []struct {
				name    string
				senders int
				perConn int // messages per connection; 0 is the default (reuse)
			}{
				{"1_sender_new_conn", 1, 1},
				{"1_sender_reuse", 1, 0},
				{fmt.Sprintf("%d_senders_new_conn", mailer.DefaultSenders), mailer.DefaultSenders, 1},
				{fmt.Sprintf("%d_senders_reuse", mailer.DefaultSenders), mailer.DefaultSenders, 0},
			}
			f := newFixture(b)
			f.srv.Delay = delay
			f.srv.OnMessage = func(testkit.Message) {} // count-and-drop: the sink keeps nothing
			spent := make([]time.Duration, len(ways))
			for range b.N {
				for i, w := range ways {
					spent[i] += sendBurst(b, f, burst, w.senders, w.perConn)
				}
			}
			floor := float64(burst*b.N) / spent[0].Seconds()
			for i, w := range ways {
				rate := float64(burst*b.N) / spent[i].Seconds()
				b.ReportMetric(rate, w.name+"_mails/s")
				if i > 0 {
					b.ReportMetric(rate/floor, w.name+"_x_floor")
				}
			}
			b.ReportMetric(0, "ns/op") // the per-way figures are the result
		})
	}
}

// sendBurst queues n mails (not timed), then times a sender working them off.
func sendBurst(b *testing.B, f *fixture, n, senders, perConn int) time.Duration {
	b.StopTimer()
	drv, err := mailer.NewSMTPDriver(mailer.SMTPConfig{Addr: f.srv.Addr, TLS: mailer.TLSNone, Timeout: 5 * time.Second,
		Conns: senders, MaxMessages: perConn})
	if err != nil {
		b.Fatal(err)
	}
	defer drv.Close()
	cfg := f.cfg
	cfg.Driver, cfg.Senders = drv, senders
	s := f.newSender(b, cfg)
	f.emitNotices(b, n)
	b.StartTimer()
	start := time.Now()
	sent := 0
	for sent < n {
		res, err := s.SendDue(context.Background())
		if err != nil || res.Claimed == 0 {
			b.Fatalf("sent %d of %d: %+v, %v", sent, n, res, err)
		}
		sent += res.Sent
	}
	return time.Since(start)
}
