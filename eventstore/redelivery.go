package eventstore

import "context"

// redeliveryKey marks a context whose writes are redone until acknowledged.
type redeliveryKey struct{}

// WithRedelivery marks the writes made under ctx as redone until acknowledged: the
// command they carry out was taken from a durable queue that delivers it again unless it
// is acknowledged, and it is acknowledged only after the write returned. An adapter may
// then return from such a write before it is on stable storage, if its log is ordered so
// that a write lost in a crash takes every later write with it: the acknowledgement is
// lost too, and the command is delivered and decided again. Whatever acts outside the
// store on such a write (a mail sent) must first make it durable, which any later
// durable write to the same log does.
func WithRedelivery(ctx context.Context) context.Context {
	return context.WithValue(ctx, redeliveryKey{}, true)
}

// Redelivered reports whether ctx was marked by WithRedelivery.
func Redelivered(ctx context.Context) bool {
	v, _ := ctx.Value(redeliveryKey{}).(bool)
	return v
}
