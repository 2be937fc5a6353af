package http

import (
	"bufio"
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"selfreset/audit"
	"selfreset/domain"
	"selfreset/eventstore"
)

// AuditLog is what the audit API reads and records (*audit.Service).
type AuditLog interface {
	Events(ctx context.Context, f audit.Filter, after eventstore.Position, limit int, emit func(audit.Record) error) (eventstore.Position, bool, error)
	State(ctx context.Context, provider, login string, asOf time.Time) (audit.ProviderState, error)
	RecordRead(ctx context.Context, md eventstore.Metadata, read domain.AuditLogRead) error
}

var _ AuditLog = (*audit.Service)(nil)

// Audit event paging.
const (
	defaultAuditPage = 100
	maxAuditPage     = 1000
	// NDJSON is the media type that asks GET /api/v1/audit/events to stream every
	// matching event, one JSON object per line, instead of returning a page.
	NDJSON = "application/x-ndjson"
)

type auditEventsResponse struct {
	Events     []audit.Record `json:"events"`
	NextCursor *string        `json:"next_cursor"`
}

func badAuditRequest(msg string) *Error { return NewError(http.StatusBadRequest, CodeBadRequest, msg) }

// auditorOf checks that the audit log is configured and, on the caller's own aggregate,
// that they are an auditor of the provider named by the query, and returns its normalized
// code. When either fails it has answered w and reports false.
func (s *Server) auditorOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.cfg.Audit == nil {
		s.WriteError(w, r, errNotConfigured)
		return "", false
	}
	v := r.URL.Query().Get("provider")
	code := domain.NormalizeProviderCode(v)
	if !domain.ValidProviderCode(code) {
		writeAPIError(w, badAuditRequest("provider must be a provider code"))
		return "", false
	}
	if !PrincipalFrom(r.Context()).Actor().CanAudit(code) {
		writeAPIError(w, errForbidden)
		return "", false
	}
	return code, true
}

// queryTime parses an optional RFC 3339 query parameter.
func queryTime(r *http.Request, name string) (time.Time, *Error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badAuditRequest(name + " must be an RFC 3339 time such as 2026-03-01T00:00:00Z")
	}
	return t, nil
}

// auditFilter reads the filters of GET /api/v1/audit/events.
func auditFilter(r *http.Request, code string) (audit.Filter, *Error) {
	q := r.URL.Query()
	f := audit.Filter{Provider: code, Type: q.Get("type"), Actor: q.Get("actor"), ClientIP: q.Get("client_ip")}
	if v := q.Get("login"); v != "" {
		if f.Login = domain.NormalizeLogin(v); !domain.ValidLogin(f.Login) {
			return f, badAuditRequest("login is not a login name")
		}
	}
	for _, v := range []string{f.Type, f.Actor} {
		if len(v) > maxSearchLen {
			return f, badAuditRequest("type and actor must be at most " + strconv.Itoa(maxSearchLen) + " characters")
		}
	}
	if f.ClientIP != "" {
		if _, err := netip.ParseAddr(f.ClientIP); err != nil {
			return f, badAuditRequest("client_ip must be an IP address")
		}
	}
	var e *Error
	if f.Since, e = queryTime(r, "since"); e != nil {
		return f, e
	}
	if f.Until, e = queryTime(r, "until"); e != nil {
		return f, e
	}
	return f, nil
}

// recordRead notes the read before anything is answered: a read that cannot be recorded
// is not served.
func (s *Server) recordRead(w http.ResponseWriter, r *http.Request, read domain.AuditLogRead) bool {
	md := eventstore.Metadata{Actor: PrincipalFrom(r.Context()).Actor().ID(), CorrelationID: RequestID(r.Context()),
		UserAgent: domain.Clip(r.UserAgent(), 256)}
	if ip := ClientIP(r.Context()); ip.IsValid() {
		md.ClientIP = ip.String()
	}
	if err := s.cfg.Audit.RecordRead(r.Context(), md, read); err != nil {
		s.WriteError(w, r, err)
		return false
	}
	return true
}

// wantsNDJSON reports whether the Accept header asks for the stream.
func wantsNDJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == NDJSON {
			return true
		}
	}
	return false
}

// GET /api/v1/audit/events
func (s *Server) handleAuditEvents(w http.ResponseWriter, r *http.Request) {
	code, ok := s.auditorOf(w, r)
	if !ok {
		return
	}
	f, e := auditFilter(r, code)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	q := r.URL.Query()
	limit := defaultAuditPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditPage {
			writeAPIError(w, badAuditRequest("limit must be a number from 1 to "+strconv.Itoa(maxAuditPage)))
			return
		}
		limit = n
	}
	after := eventstore.Start
	if v := q.Get("cursor"); v != "" {
		p, err := audit.ParseCursor(v)
		if err != nil {
			writeAPIError(w, badAuditRequest("cursor is not one this server gave out"))
			return
		}
		after = p
	}
	stream := wantsNDJSON(r)
	params := f.Params()
	if v := q.Get("cursor"); v != "" {
		params["cursor"] = v
	}
	if !s.recordRead(w, r, domain.AuditLogRead{Provider: code, What: "events", Filters: params}) {
		return
	}
	if stream {
		s.streamAuditEvents(w, r, f, after)
		return
	}
	resp := auditEventsResponse{Events: []audit.Record{}}
	next, more, err := s.cfg.Audit.Events(r.Context(), f, after, limit, func(rec audit.Record) error {
		resp.Events = append(resp.Events, rec)
		return nil
	})
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	if more {
		c := audit.FormatCursor(next)
		resp.NextCursor = &c
	}
	WriteJSON(w, http.StatusOK, resp)
}

// streamWindow is how long a stream may go between flushes (the server's write timeout is
// shorter: a sparse filter over a long feed can read for a while before the next match).
const streamWindow = 5 * time.Minute

// streamAuditEvents writes every matching event as one line, flushing as it goes; the
// write deadline moves on with each flush so that a long history is not cut off.
func (s *Server) streamAuditEvents(w http.ResponseWriter, r *http.Request, f audit.Filter, after eventstore.Position) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(streamWindow))
	w.Header().Set("Content-Type", NDJSON)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	n := 0
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		_ = rc.SetWriteDeadline(time.Now().Add(streamWindow))
		return rc.Flush()
	}
	_, _, err := s.cfg.Audit.Events(r.Context(), f, after, 0, func(rec audit.Record) error {
		if err := enc.Encode(rec); err != nil {
			return err
		}
		if n++; n%500 == 0 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil && r.Context().Err() == nil {
		// The status has gone: the client sees a stream that ends early.
		s.log.Error("audit stream ended early", "request_id", RequestID(r.Context()), "error", err.Error())
	}
}

// GET /api/v1/audit/state
func (s *Server) handleAuditState(w http.ResponseWriter, r *http.Request) {
	code, ok := s.auditorOf(w, r)
	if !ok {
		return
	}
	login := ""
	if v := r.URL.Query().Get("login"); v != "" {
		if login = domain.NormalizeLogin(v); !domain.ValidLogin(login) {
			writeAPIError(w, badAuditRequest("login is not a login name"))
			return
		}
	}
	asOf, e := queryTime(r, "as_of")
	if e != nil {
		writeAPIError(w, e)
		return
	}
	if asOf.IsZero() {
		writeAPIError(w, badAuditRequest("as_of is required: an RFC 3339 time such as 2026-03-01T00:00:00Z"))
		return
	}
	params := map[string]string{"provider": code, "as_of": asOf.UTC().Format(time.RFC3339Nano)}
	if login != "" {
		params["login"] = login
	}
	if !s.recordRead(w, r, domain.AuditLogRead{Provider: code, What: "state", Filters: params}) {
		return
	}
	st, err := s.cfg.Audit.State(r.Context(), code, login, asOf)
	if err != nil {
		s.WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, st)
}
