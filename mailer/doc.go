// Package mailer sends the service's email: the 6-digit verification code, the password
// token, the "Password Reset Error" notice and the "your password was changed" notice.
//
// # Shape
//
// Intake and sending are separate. The intake (Projection, consumer name "mailer") runs
// inside the projections runner's per-event transaction, which also advances the
// consumer's checkpoint. For every mail-worthy event it inserts one row into the delivery
// log, mail_deliveries, keyed by the event id (INSERT … ON CONFLICT DO NOTHING): a replay,
// a restart or a second consumer never queues a mail twice, and a queued mail survives a
// crash. The row holds where the secret comes from (kind, key id, secret id), never the
// token or code itself.
//
// "Password Reset Error" mails come in two kinds: reset_error, the exact reason to the
// account's verified owner, and reset_notice, the seed's list of reasons to a typed
// address nobody verified. A reset_notice row keeps the address as the event has it,
// encrypted with the server key (recipient_sealed); the Sender opens it only to send. Both
// kinds carry the keyed hash of their recipient, and the intake queues at most
// MaxErrorMails of them per recipient within ErrorMailWindow (by event time, under an
// advisory lock on the recipient); the rest are recorded as skipped, "capped".
//
// The Sender works the log off (Run, or SendDue step by step in tests), sending up to
// Senders (SELFRESET_MAIL_SENDERS) mails at once. It claims due rows
// with SELECT … FOR UPDATE SKIP LOCKED, so replicas can compete, and settles what must not
// be sent: a token or code past its expiry (skipped, "expired"), or one superseded by a
// later secret of the same kind on the same stream (skipped, "superseded"). The rest it
// leases (next_attempt_at = now + Lease) and commits, then derives each secret with the
// keyring, renders the text and HTML bodies from the embedded templates and hands the
// message to a Driver, outside any transaction. The batch's successes are recorded
// together once its sends are done (state sent and the provider's message id, one
// statement); a PermanentError (SMTP 5xx to RCPT TO or to the message, Mailgun
// 4xx) records failed without holding up later mail; other errors retry with jittered
// exponential backoff until MaxAttempts, then fail.
//
// # At least once
//
// A crash after the mail server accepted a message but before the row was marked sent
// (which waits for the rest of its batch) leaves the row pending; when its lease runs out the message is sent again, once, with
// the same Message-ID (derived from the event id), which mail clients commonly fold. That
// duplicate is the price of never losing a mail. A crash before the send loses nothing.
//
// # Drivers
//
// console (the development default) prints the text body; smtp speaks SMTP with
// github.com/emersion/go-smtp (TLS none, starttls or tls; AUTH PLAIN) and sends a
// multipart/alternative MIME message; mailgun uses mailgun-go, over an HTTP client that
// keeps one idle connection per sender.
//
// The smtp driver reuses sessions: it keeps up to Senders of them open and sends message
// after message over each (after a refused message, RSET first), retiring a session after
// DefaultSMTPIdleTimeout idle, DefaultSMTPMaxAge or DefaultSMTPMaxMessages, and on Close.
// A session found dead on reuse (the relay hung up while it was idle) costs one redial,
// never the message; if a connection breaks after the end of DATA, the message may have
// been taken, so it is not sent again at once but left to the retry (at least once).
// go-smtp, the library in use, offers the pieces (a Client that sends several messages
// over one connection, Reset, Quit) but no pool of sessions; the pool is small enough to
// own here rather than take another SMTP library as a dependency. A Config is a plain
// struct: config.FromEnv reads it from the SELFRESET_MAIL_*, SELFRESET_SMTP_*,
// SELFRESET_MAILGUN_* and SELFRESET_PUBLIC_URL variables. Links in emails are built
// from the public URL only.
package mailer
