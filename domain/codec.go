package domain

import "selfreset/eventstore"

// Codec maps domain events to and from their stored JSON; decoding returns an Event.
type Codec = eventstore.Codec[Event]

// NewCodec returns the codec that knows every domain event at its current schema version.
// This is the one registry of event types: when an event's shape changes, raise its version
// here and register the upcaster from the old version next to it, so stored histories still
// decode (docs/events.md lists the shapes).
func NewCodec() *Codec {
	c := eventstore.NewCodec[Event]()
	for _, e := range AllEvents() {
		c.Register(e, 1)
	}
	return c
}
