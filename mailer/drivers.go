package mailer

import (
	"fmt"
	"io"
	"os"
)

// NewDriver builds the driver cfg names. out receives the console driver's output (nil
// means standard output).
func NewDriver(cfg Config, out io.Writer) (Driver, error) {
	switch cfg.Driver {
	case DriverConsole, "":
		if out == nil {
			out = os.Stdout
		}
		return NewConsoleDriver(out), nil
	case DriverSMTP:
		smtpCfg := cfg.SMTP
		smtpCfg.Conns = orDefault(cfg.Senders, DefaultSenders)
		return NewSMTPDriver(smtpCfg)
	case DriverMailgun:
		return NewMailgunDriver(cfg.Mailgun, mailgunClient(orDefault(cfg.Senders, DefaultSenders)))
	default:
		return nil, fmt.Errorf("mailer: unknown driver %q (console, smtp, mailgun)", cfg.Driver)
	}
}

// CloseDriver closes d if it holds connections (the smtp driver's open sessions).
func CloseDriver(d Driver) error {
	if c, ok := d.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
