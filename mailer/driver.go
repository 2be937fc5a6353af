package mailer

import (
	"context"
	"errors"
	"time"
)

// Message is one email, rendered and ready for a Driver.
type Message struct {
	// ID identifies the delivery (the event id). Drivers that control headers derive the
	// Message-ID from it, so a re-send after a crash carries the same Message-ID.
	ID      string
	From    string // RFC 5322 address, optionally with a display name
	To      string // bare address
	Subject string
	Text    string // text/plain body
	HTML    string // text/html body
	Date    time.Time
	// Tag names the kind of mail (email_code, reset_token, …) for providers that can
	// label messages.
	Tag string
}

// Driver hands a message to a mail system. It returns the provider's id for the message.
// Errors are transient (the sender retries later) unless wrapped with Permanent.
type Driver interface {
	Send(ctx context.Context, m Message) (providerID string, err error)
}

// PermanentError marks a failure that retrying cannot fix for this message (a rejected
// recipient address, a message the provider refuses). The delivery is recorded failed and
// later mail is not held up.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError (nil stays nil).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	var pe *PermanentError
	if errors.As(err, &pe) {
		return err
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err is, or wraps, a PermanentError.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}
