package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"selfreset/domain"
	"selfreset/eventstore"
)

// Service is the audit API's access to the event store (the http package's AuditLog).
type Service struct {
	Store eventstore.Store
	Codec *domain.Codec
	Clock domain.Clock
}

// Events runs Query.
func (s *Service) Events(ctx context.Context, f Filter, after eventstore.Position, limit int, emit func(Record) error) (eventstore.Position, bool, error) {
	return Query(ctx, s.Store, s.Codec, f, after, limit, emit)
}

// State runs StateAt.
func (s *Service) State(ctx context.Context, provider, login string, asOf time.Time) (ProviderState, error) {
	return StateAt(ctx, s.Store, s.Codec, provider, login, asOf)
}

// RecordRead appends read to the provider's audit log stream with md (actor, client IP…).
// Reads of the same provider by several auditors at once all land (eventstore.Any).
func (s *Service) RecordRead(ctx context.Context, md eventstore.Metadata, read domain.AuditLogRead) error {
	typ, version, data, err := s.Codec.Encode(read)
	if err != nil {
		return err
	}
	_, err = s.Store.Append(ctx, domain.AuditLogStream(read.Provider), eventstore.Any, eventstore.EventData{
		ID: uuid.New(), Type: typ, SchemaVersion: version, OccurredAt: s.Clock.Now(), Data: data, Metadata: md,
	})
	if err != nil {
		return fmt.Errorf("audit: record the read: %w", err)
	}
	return nil
}
