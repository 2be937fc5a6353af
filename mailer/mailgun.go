package mailer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mailgun/mailgun-go/v4"
)

// MailgunDriver sends through Mailgun's HTTP API.
type MailgunDriver struct {
	mg *mailgun.MailgunImpl
}

// mailgunClient is the HTTP client of the mailgun driver: with conns senders at work it
// keeps as many connections to the API open (http.DefaultTransport keeps 2 per host, so
// with more senders every burst would dial and shake hands again).
func mailgunClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = conns
	return &http.Client{Timeout: 30 * time.Second, Transport: t}
}

// NewMailgunDriver returns the driver (config.FromEnv checked the operator's settings).
// client may be nil (a client with a 30-second timeout that keeps DefaultSenders idle
// connections is used).
func NewMailgunDriver(cfg MailgunConfig, client *http.Client) (*MailgunDriver, error) {
	if cfg.Domain == "" || cfg.APIKey == "" {
		return nil, errors.New("mailer: mailgun: a domain and an API key are required")
	}
	mg := mailgun.NewMailgun(cfg.Domain, cfg.APIKey.Reveal())
	if cfg.APIBase != "" {
		mg.SetAPIBase(cfg.APIBase)
	}
	if client == nil {
		client = mailgunClient(DefaultSenders)
	}
	mg.SetClient(client)
	return &MailgunDriver{mg: mg}, nil
}

// Send implements Driver. Mailgun's 4xx answers (a malformed or refused message or
// address) are permanent, except 401/403 (credentials: fixable by an operator, and not
// the message's fault), 408 and 429 (try later); 5xx answers and network trouble are
// transient.
func (d *MailgunDriver) Send(ctx context.Context, m Message) (string, error) {
	msg := mailgun.NewMessage(m.From, m.Subject, m.Text, m.To)
	if m.HTML != "" {
		msg.SetHTML(m.HTML)
	}
	if m.Tag != "" {
		_ = msg.AddTag(m.Tag) // at most 10 tags; we add one
	}
	if m.ID != "" {
		_ = msg.AddVariable("delivery_id", m.ID) // v:delivery_id, visible in Mailgun's events and webhooks
	}
	_, id, err := d.mg.Send(ctx, msg)
	if err != nil {
		var ure *mailgun.UnexpectedResponseError
		if errors.As(err, &ure) {
			// ure.Error() carries the URL and response body, never the API key.
			err = fmt.Errorf("mailgun: HTTP %d: %s", ure.Actual, truncate(string(ure.Data), 300))
			switch {
			case ure.Actual == http.StatusUnauthorized, ure.Actual == http.StatusForbidden,
				ure.Actual == http.StatusRequestTimeout, ure.Actual == http.StatusTooManyRequests:
				return "", err
			case ure.Actual >= 400 && ure.Actual < 500:
				return "", Permanent(err)
			}
			return "", err
		}
		if errors.Is(err, mailgun.ErrInvalidMessage) {
			return "", Permanent(fmt.Errorf("mailgun: %w", err))
		}
		return "", fmt.Errorf("mailgun: %w", err)
	}
	return id, nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
