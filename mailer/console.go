package mailer

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ConsoleDriver prints each mail's headers and text body to a writer instead of sending
// it: the development default. It prints tokens and codes in clear, so never use it where
// its output is collected.
type ConsoleDriver struct {
	mu sync.Mutex
	w  io.Writer
}

// NewConsoleDriver prints to w.
func NewConsoleDriver(w io.Writer) *ConsoleDriver { return &ConsoleDriver{w: w} }

// Send implements Driver.
func (d *ConsoleDriver) Send(ctx context.Context, m Message) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	id := messageID(m)
	var b strings.Builder
	fmt.Fprintf(&b, "----- mail (console driver: not sent) -----\n")
	fmt.Fprintf(&b, "Date: %s\nFrom: %s\nTo: %s\nSubject: %s\nMessage-ID: %s\n\n", m.Date.Format(time.RFC1123Z), m.From, m.To, m.Subject, id)
	b.WriteString(strings.TrimRight(m.Text, "\n"))
	b.WriteString("\n----- end of mail -----\n")
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := io.WriteString(d.w, b.String()); err != nil {
		return "", fmt.Errorf("console driver: %w", err)
	}
	return id, nil
}
