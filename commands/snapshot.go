package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/google/uuid"

	"selfreset/domain"
	"selfreset/eventstore"
)

// Loading a user reads its latest snapshot (its fold up to some revision), then only the
// events after it. Anyone can lengthen an account's stream without signing in (wrong
// emails, wrong passwords, wrong tokens), so without this every load would cost time in
// proportion to the refusals the account has seen. A snapshot is a cache: one that is
// missing, unreadable, of another schema or that does not fit the stream is ignored and
// the stream folded in full, so it can never change a decision.
const (
	// snapshotEvery is how many events past its snapshot a load reads before it writes
	// a new one: a load folds fewer than this many events, plus one snapshot. A write is
	// a row of several kilobytes (the fold and its 128 ids) with its WAL: at 8, an account
	// taking refusals under load wrote one every eighth decision.
	snapshotEvery = 32
	// recentIDsKept is how many event ids a snapshot remembers, so that a redelivered
	// command (WithCommandID) still finds its decision when the snapshot covers it. A
	// redelivery then sees at least the stream's last recentIDsKept events.
	recentIDsKept = 128
	// snapshotWriters bounds the snapshot writes in flight, so that they never take more
	// than this many of the pool's connections from commands; a load that finds them all
	// busy skips its write (a later load of the stream writes it).
	snapshotWriters = 2
	// snapshotWriteTimeout bounds a snapshot write, which runs after the command's answer
	// is decided and never makes it fail.
	snapshotWriteTimeout = 5 * time.Second
)

// userSnapshot is what a user's snapshot holds.
type userSnapshot struct {
	User domain.User `json:"user"`
	// Recent is the ids of the last events folded, oldest first, 16 bytes each (base64
	// in JSON: a third of the size of uuid strings, which dominated the snapshot).
	Recent []byte `json:"recent"`
}

func packIDs(ids []uuid.UUID) []byte {
	b := make([]byte, 0, 16*len(ids))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// unpackIDs is packIDs backwards; ok is false for a length that is not a multiple of 16.
func unpackIDs(b []byte) (ids []uuid.UUID, ok bool) {
	if len(b)%16 != 0 {
		return nil, false
	}
	ids = make([]uuid.UUID, len(b)/16)
	for i := range ids {
		copy(ids[i][:], b[16*i:])
	}
	return ids, true
}

// userSnapshotSchema names the encoding. It carries a fingerprint of domain.User's
// shape, so that a field added, removed or retyped there makes older snapshots unusable
// without anyone remembering to bump a number; the leading version is for changes of
// meaning that keep the shape (bump it when User.Apply changes what it derives).
func userSnapshotSchema() string {
	h := fnv.New64a()
	fingerprint(h, reflect.TypeFor[userSnapshot](), 0)
	return fmt.Sprintf("user/1/%016x", h.Sum64())
}

func fingerprint(w interface{ Write([]byte) (int, error) }, t reflect.Type, depth int) {
	_, _ = w.Write([]byte(t.Kind().String() + ":" + t.String() + ";"))
	if depth > 8 {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			_, _ = w.Write([]byte(f.Name + " " + string(f.Tag) + "{"))
			fingerprint(w, f.Type, depth+1)
			_, _ = w.Write([]byte("}"))
		}
	case reflect.Pointer, reflect.Slice, reflect.Array:
		fingerprint(w, t.Elem(), depth+1)
	case reflect.Map:
		fingerprint(w, t.Key(), depth+1)
		fingerprint(w, t.Elem(), depth+1)
	}
}

// snapshots reads and writes user snapshots; a nil *snapshots folds in full.
type snapshots struct {
	store  eventstore.SnapshotStore
	schema string
	log    *slog.Logger
	// writing holds the streams whose snapshot is being written, so that a burst of
	// loads of one account writes it once.
	writing sync.Map
	slots   chan struct{} // one token per write in flight (snapshotWriters)
}

func newSnapshots(store eventstore.SnapshotStore, log *slog.Logger) *snapshots {
	if store == nil {
		return nil
	}
	return &snapshots{store: store, schema: userSnapshotSchema(), log: log, slots: make(chan struct{}, snapshotWriters)}
}

// loadUser folds the user stream from its snapshot if it has a usable one, else in full,
// and writes a new snapshot when it had to read snapshotEvery events or more. It also
// returns the ids of the last events folded (for the handler's memory of the account)
// and how many events the fold holds beyond the newest snapshot written.
func (s *snapshots) loadUser(ctx context.Context, h *Handler, r streamReader, stream string) (u domain.User, l loaded, ids []uuid.UUID, since int, err error) {
	if s == nil {
		l, ids, err = h.foldFrom(ctx, r, stream, 0, nil, u.Apply)
		return u, l, ids, len(ids), err
	}
	if snap, ok := s.read(ctx, stream); ok {
		u = snap.user
		l, ids, err := h.foldFrom(ctx, r, stream, snap.revision+1, snap.recent, u.Apply)
		// A stream has contiguous revisions, so the tail read from snap.revision+1 starts
		// right after the snapshot; only a stream that is gone makes it unusable.
		if err == nil && l.exists {
			return u, l, ids, s.maybeWrite(ctx, stream, u, l, ids, len(ids)-len(snap.recent)), nil
		}
		if err != nil && ctx.Err() != nil {
			return domain.User{}, loaded{}, nil, 0, err
		}
		// The snapshot does not fit the stream (or its tail could not be folded onto it):
		// fold in full, which tells the truth either way.
		u = domain.User{}
	}
	l, ids, err = h.foldFrom(ctx, r, stream, 0, nil, u.Apply)
	if err != nil {
		return domain.User{}, loaded{}, nil, 0, err
	}
	return u, l, ids, s.maybeWrite(ctx, stream, u, l, ids, len(ids)), nil
}

type readSnapshot struct {
	revision uint64
	user     domain.User
	recent   []uuid.UUID
}

// read returns the stream's snapshot when there is one of this schema that decodes.
// Failures are not errors: the caller folds in full.
func (s *snapshots) read(ctx context.Context, stream string) (readSnapshot, bool) {
	snap, err := s.store.ReadSnapshot(ctx, stream)
	if err != nil {
		if !errors.Is(err, eventstore.ErrSnapshotNotFound) && ctx.Err() == nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "snapshot unreadable; folding the stream in full",
				slog.String("stream", stream), slog.String("error", err.Error()))
		}
		return readSnapshot{}, false
	}
	if snap.Schema != s.schema {
		return readSnapshot{}, false // an older encoding: the next write replaces it
	}
	var st userSnapshot
	code, login, perr := domain.ParseUserStream(stream)
	err = json.Unmarshal(snap.Data, &st)
	recent, ok := unpackIDs(st.Recent)
	if err != nil || perr != nil || !ok || !st.User.Registered ||
		domain.NormalizeProviderCode(st.User.Provider) != code || domain.NormalizeLogin(st.User.Login) != login {
		s.log.LogAttrs(ctx, slog.LevelWarn, "snapshot does not decode to this stream's user; folding the stream in full",
			slog.String("stream", stream))
		return readSnapshot{}, false
	}
	return readSnapshot{revision: snap.Revision, user: st.User, recent: recent}, true
}

// maybeWrite stores u as the stream's snapshot at l.revision when read (the events
// folded beyond the previous snapshot) reached snapshotEvery. The write runs in the
// background, after this load, and its failure is only logged. It returns how many
// events the fold then holds beyond the snapshot: 0 once a write is on its way, else read.
func (s *snapshots) maybeWrite(ctx context.Context, stream string, u domain.User, l loaded, ids []uuid.UUID, read int) int {
	if s == nil || read < snapshotEvery || !l.exists || !u.Registered {
		return read
	}
	if _, busy := s.writing.LoadOrStore(stream, true); busy {
		return read
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.writing.Delete(stream)
		return read
	}
	release := func() {
		s.writing.Delete(stream)
		<-s.slots
	}
	if len(ids) > recentIDsKept {
		ids = ids[len(ids)-recentIDsKept:]
	}
	data, err := json.Marshal(userSnapshot{User: u, Recent: packIDs(ids)})
	if err != nil {
		release()
		s.log.LogAttrs(ctx, slog.LevelWarn, "snapshot not encoded", slog.String("stream", stream), slog.String("error", err.Error()))
		return read
	}
	snap := eventstore.Snapshot{Revision: l.revision, Schema: s.schema, Data: data}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), snapshotWriteTimeout)
	go func() {
		defer cancel()
		defer release()
		if err := s.store.WriteSnapshot(wctx, stream, snap); err != nil {
			s.log.LogAttrs(wctx, slog.LevelWarn, "snapshot not written; loads fold further until the next one is",
				slog.String("stream", stream), slog.String("error", err.Error()))
		}
	}()
	return 0
}
