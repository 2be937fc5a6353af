package http

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"sync"
	"time"
)

// memSessions keeps sessions in a map: the http tests' Sessions on the memory tier
// (newMemoryEnv), held to PGSessions' behaviour by testSessions. A revoked session is kept
// with its revocation time, as the table keeps the row.
type memSessions struct {
	mu   sync.Mutex
	byID map[string]Session
}

var _ Sessions = (*memSessions)(nil)

func newMemSessions() *memSessions { return &memSessions{byID: map[string]Session{}} }

func (m *memSessions) Create(_ context.Context, s Session) error {
	if len(s.ID) != sha256.Size { // the table's CHECK
		return errors.New("memSessions: a session id is a SHA-256")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.byID[string(s.ID)]; dup { // the table's primary key
		return errors.New("memSessions: a session with this id exists")
	}
	s.ID = slices.Clone(s.ID)
	m.byID[string(s.ID)] = s
	return nil
}

func (m *memSessions) Get(_ context.Context, id []byte, now time.Time) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.byID[string(id)]
	if !ok || !s.RevokedAt.IsZero() || !s.ExpiresAt.After(now) {
		return Session{}, ErrSessionNotFound
	}
	s.ID = slices.Clone(s.ID)
	return s, nil
}

// update applies f to the unrevoked session id, or says ErrSessionNotFound.
func (m *memSessions) update(id []byte, f func(*Session)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.byID[string(id)]
	if !ok || !s.RevokedAt.IsZero() {
		return ErrSessionNotFound
	}
	f(&s)
	m.byID[string(id)] = s
	return nil
}

func (m *memSessions) SetStepUp(_ context.Context, id []byte, until time.Time) error {
	return m.update(id, func(s *Session) { s.StepUpUntil = until })
}

func (m *memSessions) SetEpoch(_ context.Context, id []byte, epoch int) error {
	return m.update(id, func(s *Session) { s.Epoch = epoch })
}

func (m *memSessions) Revoke(_ context.Context, id []byte, at time.Time) error {
	_ = m.update(id, func(s *Session) { s.RevokedAt = at }) // revoking an unknown or revoked session is no error
	return nil
}

func (m *memSessions) RevokeUser(_ context.Context, provider, login string, at time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for id, s := range m.byID {
		if s.Provider == provider && s.Login == login && s.RevokedAt.IsZero() {
			s.RevokedAt = at
			m.byID[id] = s
			n++
		}
	}
	return n, nil
}
