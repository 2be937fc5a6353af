package metrics

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/mailer"
	"selfreset/projections"
	"selfreset/reset"
)

// DefaultScrapeTimeout bounds each source's queries at scrape time.
const DefaultScrapeTimeout = 3 * time.Second

// Consumers reports where each consumer of the event feed stands (*projections.Runner).
type Consumers interface {
	Status(ctx context.Context) ([]projections.ConsumerStatus, error)
}

// Feed reads the global event feed (eventstore.Store).
type Feed interface {
	ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error)
}

// ScrapeConfig says where the scrape-time figures come from. Each part left nil is
// not reported.
type ScrapeConfig struct {
	// Pool holds the intake queues and the mail delivery log.
	Pool *pgxpool.Pool
	// Consumers and Feed give projection lag: events behind each checkpoint and the age
	// of the oldest event a consumer has not applied yet.
	Consumers Consumers
	Feed      Feed
	Clock     domain.Clock  // the commands' clock, which stamps the events
	Timeout   time.Duration // per source; DefaultScrapeTimeout when 0
	Logger    *slog.Logger
}

// scrapeCollector reads shared state from the databases at each scrape: the figures are
// the same whichever process is asked, and always current, with nothing kept in memory.
type scrapeCollector struct {
	cfg ScrapeConfig

	up, intakeDepth, intakeOldest, lagEvents, lagSeconds, mail, mailOldest *prometheus.Desc
}

// Source names (the source label of selfreset_scrape_source_up).
const (
	SourceIntake      = "intake"
	SourceProjections = "projections"
	SourceMail        = "mail"
)

// NewScrapeCollector makes the collector of the intake queue, projection lag and mail
// delivery figures; register it with Registry().MustRegister.
func NewScrapeCollector(c ScrapeConfig) prometheus.Collector {
	if c.Timeout <= 0 {
		c.Timeout = DefaultScrapeTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	return &scrapeCollector{
		cfg: c,
		up: desc("scrape_source_up",
			"1 when the last scrape could read the source (intake, projections, mail), 0 when it failed or timed out; its other figures are then missing.", "source"),
		intakeDepth: desc("intake_queue_depth",
			"Forgot Password (reset_request_token) and Resend (reset_resend_token) commands queued and not yet decided.", "queue"),
		intakeOldest: desc("intake_oldest_message_age_seconds",
			"Age of the oldest command waiting in the queue; 0 when it is empty.", "queue"),
		lagEvents: desc("projection_lag_events",
			"Events in the feed after the consumer's checkpoint, counted up to "+strconv.Itoa(LagCap)+".", "consumer"),
		lagSeconds: desc("projection_lag_seconds",
			"Age of the oldest event the consumer has not applied yet; 0 when it has caught up.", "consumer"),
		mail: desc("mail_deliveries",
			"Rows of the mail delivery log by kind (email_code, reset_token, reset_error, password_changed) and state (pending, sent, skipped, failed).", "kind", "state"),
		mailOldest: desc("mail_oldest_pending_age_seconds",
			"Age of the oldest delivery still pending; 0 when none is."),
	}
}

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.intakeDepth, c.intakeOldest, c.lagEvents, c.lagSeconds, c.mail, c.mailOldest} {
		ch <- d
	}
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.cfg.Pool != nil {
		c.source(ch, SourceIntake, c.intake)
		c.source(ch, SourceMail, c.mailDeliveries)
	}
	if c.cfg.Consumers != nil && c.cfg.Feed != nil {
		c.source(ch, SourceProjections, c.projections)
	}
}

// source runs one source under the timeout. Its figures are sent only when all of them
// could be read, so a scrape never mixes a fresh figure with a missing one.
func (c *scrapeCollector) source(ch chan<- prometheus.Metric, name string, read func(ctx context.Context, now time.Time) ([]prometheus.Metric, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	ms, err := read(ctx, c.now())
	up := 1.0
	if err != nil {
		up = 0
		c.cfg.Logger.Warn("metrics: reading a source failed", "source", name, "err", err)
	} else {
		for _, m := range ms {
			ch <- m
		}
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, name)
}

func (c *scrapeCollector) now() time.Time {
	if c.cfg.Clock != nil {
		return c.cfg.Clock.Now()
	}
	return time.Now()
}

// age is how long ago t was, 0 for the zero time or a t ahead of now (clock skew).
func age(now, t time.Time) float64 {
	if t.IsZero() || !t.Before(now) {
		return 0
	}
	return now.Sub(t).Seconds()
}

func (c *scrapeCollector) intake(ctx context.Context, now time.Time) ([]prometheus.Metric, error) {
	stats, err := reset.QueueStats(ctx, c.cfg.Pool)
	if err != nil {
		return nil, err
	}
	var out []prometheus.Metric
	for _, s := range stats {
		out = append(out,
			prometheus.MustNewConstMetric(c.intakeDepth, prometheus.GaugeValue, float64(s.Depth), s.Queue),
			prometheus.MustNewConstMetric(c.intakeOldest, prometheus.GaugeValue, age(now, s.Oldest), s.Queue))
	}
	return out, nil
}

func (c *scrapeCollector) mailDeliveries(ctx context.Context, now time.Time) ([]prometheus.Metric, error) {
	counts, oldest, err := mailer.DeliveryStats(ctx, c.cfg.Pool)
	if err != nil {
		return nil, err
	}
	var out []prometheus.Metric
	for _, n := range counts {
		out = append(out, prometheus.MustNewConstMetric(c.mail, prometheus.GaugeValue, float64(n.Count), n.Kind, n.State))
	}
	return append(out, prometheus.MustNewConstMetric(c.mailOldest, prometheus.GaugeValue, age(now, oldest))), nil
}

// projections reports the configured consumers only: a checkpoint row nobody here owns
// may be a retired consumer, which would lag for ever.
func (c *scrapeCollector) projections(ctx context.Context, now time.Time) ([]prometheus.Metric, error) {
	status, err := c.cfg.Consumers.Status(ctx)
	if err != nil {
		return nil, err
	}
	var out []prometheus.Metric
	for _, s := range status {
		if !s.Configured {
			continue
		}
		lag := 0.0
		if s.Behind > 0 {
			// The first event after the checkpoint is the oldest one not applied.
			next, err := c.cfg.Feed.ReadAll(ctx, s.Checkpoint, 1)
			if err != nil {
				return nil, err
			}
			if len(next) > 0 {
				lag = age(now, next[0].OccurredAt)
			}
		}
		out = append(out,
			prometheus.MustNewConstMetric(c.lagEvents, prometheus.GaugeValue, float64(s.Behind), s.Name),
			prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, lag, s.Name))
	}
	return out, nil
}
