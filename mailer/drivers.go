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
		return NewSMTPDriver(cfg.SMTP)
	case DriverMailgun:
		return NewMailgunDriver(cfg.Mailgun, nil)
	default:
		return nil, fmt.Errorf("mailer: unknown driver %q (console, smtp, mailgun)", cfg.Driver)
	}
}
