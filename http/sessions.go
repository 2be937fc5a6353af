package http

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrSessionNotFound is returned by Sessions.Get for a session that does not exist, has
// expired or was revoked.
var ErrSessionNotFound = errors.New("http: session not found")

// Session is a signed-in user's session. API clients hold its token as a bearer token;
// the HTML pages hold the same kind of token in a cookie. Only the token's SHA-256 (ID)
// is stored.
type Session struct {
	ID          []byte // SHA-256 of the token
	Provider    string // normalized provider code
	Login       string // normalized login
	Epoch       int    // the user's SessionEpoch when the session was opened
	CreatedAt   time.Time
	ExpiresAt   time.Time
	StepUpUntil time.Time // zero when the password was never re-entered on this session
	RevokedAt   time.Time // zero while not revoked
}

// Handle is a short, non-secret name for the session (a prefix of the token's hash),
// safe to record in events and logs.
func (s Session) Handle() string { return SessionHandle(s.ID) }

// SessionHandle is Session.Handle for an id.
func SessionHandle(id []byte) string {
	if len(id) < 8 {
		return hex.EncodeToString(id)
	}
	return hex.EncodeToString(id[:8])
}

// SteppedUp reports whether the password was re-entered on this session recently enough.
func (s Session) SteppedUp(now time.Time) bool { return now.Before(s.StepUpUntil) }

// Sessions stores sessions. PGSessions is the Postgres implementation.
type Sessions interface {
	// Create stores a new session.
	Create(ctx context.Context, s Session) error
	// Get returns the live session with id at now, or ErrSessionNotFound.
	Get(ctx context.Context, id []byte, now time.Time) (Session, error)
	// SetStepUp records a password re-entry valid until until.
	SetStepUp(ctx context.Context, id []byte, until time.Time) error
	// SetEpoch carries a live session over to the user's new SessionEpoch (the session
	// that changed the password survives the change; the others end).
	SetEpoch(ctx context.Context, id []byte, epoch int) error
	// Revoke ends one session.
	Revoke(ctx context.Context, id []byte, at time.Time) error
	// RevokeUser ends every session of a user and says how many were live.
	RevokeUser(ctx context.Context, provider, login string, at time.Time) (int64, error)
}

// tokenBytes is the entropy of a session token.
const tokenBytes = 32

// NewSessionToken returns a fresh random session token and its id (SHA-256).
func NewSessionToken() (token string, id []byte) {
	var raw [tokenBytes]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails
	token = base64.RawURLEncoding.EncodeToString(raw[:])
	return token, SessionID(token)
}

// SessionID is the stored id of a token.
func SessionID(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// wellFormedToken reports whether token could be one NewSessionToken made.
func wellFormedToken(token string) bool {
	if len(token) != base64.RawURLEncoding.EncodedLen(tokenBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil
}

// PGSessions keeps sessions in the Postgres table http_sessions (see Migrate).
type PGSessions struct {
	db DB
}

var _ Sessions = (*PGSessions)(nil)

// NewPGSessions returns a session store on db.
func NewPGSessions(db DB) *PGSessions { return &PGSessions{db: db} }

// Create implements Sessions.
func (p *PGSessions) Create(ctx context.Context, s Session) error {
	if len(s.ID) != sha256.Size {
		return fmt.Errorf("http: create session: id must be %d bytes", sha256.Size)
	}
	_, err := p.db.Exec(ctx, `INSERT INTO http_sessions
		(id, provider, login, session_epoch, created_at, expires_at, step_up_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		s.ID, s.Provider, s.Login, s.Epoch, s.CreatedAt, s.ExpiresAt, nullTime(s.StepUpUntil))
	if err != nil {
		return fmt.Errorf("http: create session: %w", err)
	}
	return nil
}

// Get implements Sessions.
func (p *PGSessions) Get(ctx context.Context, id []byte, now time.Time) (Session, error) {
	var (
		s       Session
		stepUp  *time.Time
		revoked *time.Time
	)
	err := p.db.QueryRow(ctx, `SELECT id, provider, login, session_epoch, created_at, expires_at, step_up_until, revoked_at
		FROM http_sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2`, id, now).
		Scan(&s.ID, &s.Provider, &s.Login, &s.Epoch, &s.CreatedAt, &s.ExpiresAt, &stepUp, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrSessionNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("http: get session: %w", err)
	}
	if stepUp != nil {
		s.StepUpUntil = stepUp.UTC()
	}
	if revoked != nil {
		s.RevokedAt = revoked.UTC()
	}
	s.CreatedAt, s.ExpiresAt = s.CreatedAt.UTC(), s.ExpiresAt.UTC()
	return s, nil
}

// SetStepUp implements Sessions.
func (p *PGSessions) SetStepUp(ctx context.Context, id []byte, until time.Time) error {
	return p.updateLive(ctx, "step up session", `UPDATE http_sessions SET step_up_until = $2 WHERE id = $1 AND revoked_at IS NULL`, id, until)
}

// SetEpoch implements Sessions.
func (p *PGSessions) SetEpoch(ctx context.Context, id []byte, epoch int) error {
	return p.updateLive(ctx, "set session epoch", `UPDATE http_sessions SET session_epoch = $2 WHERE id = $1 AND revoked_at IS NULL`, id, epoch)
}

// updateLive runs an UPDATE of one session that is not revoked (sql's $1 is id, $2 the
// value): ErrSessionNotFound when there is no such session.
func (p *PGSessions) updateLive(ctx context.Context, what, sql string, id []byte, value any) error {
	tag, err := p.db.Exec(ctx, sql, id, value)
	if err != nil {
		return fmt.Errorf("http: %s: %w", what, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrSessionNotFound
	}
	return nil
}

// Revoke implements Sessions.
func (p *PGSessions) Revoke(ctx context.Context, id []byte, at time.Time) error {
	if _, err := p.db.Exec(ctx, `UPDATE http_sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, id, at); err != nil {
		return fmt.Errorf("http: revoke session: %w", err)
	}
	return nil
}

// RevokeUser implements Sessions.
func (p *PGSessions) RevokeUser(ctx context.Context, provider, login string, at time.Time) (int64, error) {
	tag, err := p.db.Exec(ctx, `UPDATE http_sessions SET revoked_at = $3
		WHERE provider = $1 AND login = $2 AND revoked_at IS NULL`, provider, login, at)
	if err != nil {
		return 0, fmt.Errorf("http: revoke sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}

// DeleteExpired removes sessions that expired or were revoked before before; serve may
// call it now and then. It returns how many rows went.
func (p *PGSessions) DeleteExpired(ctx context.Context, before time.Time) (int64, error) {
	tag, err := p.db.Exec(ctx, `DELETE FROM http_sessions WHERE expires_at < $1 OR revoked_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("http: delete expired sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
