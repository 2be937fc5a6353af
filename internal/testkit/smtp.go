package testkit

import "selfreset/internal/smtpsink"

// SMTPServer is an in-process SMTP server on 127.0.0.1 that keeps every message it
// accepts and can be told to refuse (internal/smtpsink, which the bench harness runs
// too). Set the options, then Start it; it closes when the test ends.
type SMTPServer = smtpsink.Server

// Message is one message the server accepted, with its envelope and taken apart.
type Message = smtpsink.Message

// ErrGreylisted is the reply to RCPT TO that TempFail arranges.
var ErrGreylisted = smtpsink.ErrGreylisted
