package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/tapline/tapline/internal/record"
	"github.com/tidwall/gjson"
)

// InvalidError reports a record the store refuses: empty id or kind, a time
// outside 1678..2262 (the zero time included), or data that is not a JSON
// object. The request it came in writes nothing.
type InvalidError struct {
	Index  int    // position in the Append batch (0 for Begin and Finish)
	ID     string // the record's id, possibly empty
	Reason string
}

// Error names the record by id, or by position when it has none.
func (e *InvalidError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("invalid record #%d: %s", e.Index, e.Reason)
	}
	return fmt.Sprintf("invalid record %q: %s", e.ID, e.Reason)
}

// The range of times a record may carry: unix nanoseconds in an int64.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// row is a record as the writer stores it. It owns its data (a copy), so
// callers may reuse their records once the call returns; FinishAsync's is
// the caller's buffer, which the caller gets back at done.
type row struct {
	id      string
	kind    string
	version int
	time    int64 // unix nanoseconds
	state   any   // the payload's $.state as a string, or nil
	scope   any   // activity_log: scopeOf(data); other kinds: nil
	// gateway_request: the columns withColumns fills; other kinds: nil.
	principal, deployment, status any
	// gateway_request: its usage_hourly group and sums, read with the
	// columns (rollAcc adds them up).
	group rollupGroup
	sums  rollupRow
	data  string
}

func (r row) size() int64 { return int64(len(r.data)) }

// newRow validates rec and copies it into a row.
func newRow(i int, rec record.Record) (row, error) {
	return newRowColumns(i, rec, true)
}

// newRowColumns is newRow; without columns, a gateway_request row has its
// state but not the columns only the database's tables need, which a row
// that goes to the begin log rarely reaches (withColumns fills them).
func newRowColumns(i int, rec record.Record, columns bool) (row, error) {
	return makeRow(i, rec, string(rec.Data), columns)
}

// makeRow is newRowColumns with data, rec.Data or a copy of it, as the
// row's.
func makeRow(i int, rec record.Record, data string, columns bool) (row, error) {
	invalid := func(reason string) error { return &InvalidError{Index: i, ID: rec.ID, Reason: reason} }
	switch {
	case rec.ID == "":
		return row{}, invalid("empty id")
	case rec.Kind == "":
		return row{}, invalid("empty kind")
	case rec.Time.Before(minTime) || rec.Time.After(maxTime):
		// Stored as unix nanoseconds, which hold 1678 to 2262 only.
		return row{}, invalid(fmt.Sprintf("time %s out of range", rec.Time.Format(time.RFC3339)))
	case !rec.Encoded && !gjson.ValidBytes(rec.Data): // several times faster than encoding/json
		return row{}, invalid("data is not valid JSON")
	case !bytes.HasPrefix(bytes.TrimLeft(rec.Data, " \t\r\n"), []byte("{")):
		// Payloads are objects (DESIGN.md §5); recovery sets $.state on them.
		return row{}, invalid("data is not a JSON object")
	}
	r := row{
		id:      rec.ID,
		kind:    string(rec.Kind),
		version: rec.Version,
		time:    rec.Time.UnixNano(),
		data:    data,
	}
	// Only gateway records have a state and the columns the dashboard
	// filters on, only activity records a scope.
	switch rec.Kind {
	case record.KindGatewayRequest:
		if !columns {
			if v := gjson.Get(r.data, "state"); v.Type == gjson.String {
				r.state = v.Str
			}
			break
		}
		if g := rec.Gateway; g != nil && rec.Encoded && validUTF8(g.Principal.KeyName, g.Principal.UPN,
			g.Principal.OID, g.Deployment, g.ModelReturned, g.ModelRequested, g.Operation, g.Backend, g.State) {
			r = r.withValue(rec.Gateway)
		} else {
			r = r.withColumns()
		}
	case record.KindActivityLog:
		r.scope = scopeOf(rec.Data)
	}
	return r, nil
}

// withColumns returns r with the columns newRowColumns left out, and its
// usage sums, all from one pass over its payload.
func (r row) withColumns() row {
	if r.kind == string(record.KindGatewayRequest) && r.principal == nil {
		m := readGateway(gjson.Parse(r.data))
		r.group, r.sums = m.rollup(r.time)
		r.state, r.deployment, r.status = m.columns()
		r.principal = r.group.principal
	}
	return r
}

// validUTF8 reports whether every s is valid UTF-8, which the encoder
// keeps as it is (it replaces invalid bytes).
func validUTF8(s ...string) bool {
	for _, v := range s {
		if !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// withValue is withColumns from the value the payload encodes, not from a
// parse of it: the same columns and sums as withColumns reads from
// record.AppendGatewayRequest's encoding of g (TestWithValueMatchesPayload).
func (r row) withValue(g *record.GatewayRequest) row {
	r.group = rollupGroup{hour: r.time / hourNanos, principal: g.Principal.ID(), deployment: g.Deployment,
		model: cmp.Or(g.ModelReturned, g.ModelRequested), operation: g.Operation, backend: g.Backend}
	r.sums = rollupRow{0: 1, 1: b2i(g.Status >= 400), 2: b2i(g.Status == 429)}
	if u := g.Usage; u != nil {
		r.sums[3], r.sums[4], r.sums[5] = int64(u.PromptTokens), int64(u.CompletionTokens), int64(u.TotalTokens)
		r.sums[6], r.sums[7] = int64(u.CachedTokens), int64(u.ReasoningTokens)
		r.sums[8] = b2i(u.Source == record.UsageEstimated)
	}
	r.state, r.status, r.principal = g.State, int64(g.Status), r.group.principal
	if g.Deployment != "" {
		r.deployment = g.Deployment
	}
	return r
}

// columns is what a gateway_request row holds besides its payload
// (migration 8) and its principal's id (its rollup group's): $.state when
// a string, and $.deployment and $.status as json_extract gives them (nil
// where missing).
func (m *gatewayMembers) columns() (state, deployment, status any) {
	if m.state.Type == gjson.String {
		state = m.state.Str
	}
	return state, sqlValue(m.deployment), sqlValue(m.status)
}

// sqlValue is v as json_extract returns it: a string's text, a number's
// value, true and false as 1 and 0, nil for null or a missing member, and
// an object's or array's JSON.
func sqlValue(v gjson.Result) any {
	switch v.Type {
	case gjson.String:
		return v.Str
	case gjson.Number:
		if n, err := strconv.ParseInt(v.Raw, 10, 64); err == nil {
			return n
		}
		return v.Num
	case gjson.True:
		return int64(1)
	case gjson.False:
		return int64(0)
	case gjson.JSON:
		return v.Raw
	}
	return nil
}

// scopeOf is the scope column of an activity_log record with payload data:
// "<scope kind>:<scope id>", from record.ActivityLog's scope (scopeSQL
// computes the same in SQL). An activity_log record is unique by scope,
// time and id (migration 8).
func scopeOf(data []byte) string {
	v := gjson.GetManyBytes(data, "scope.kind", "scope.id")
	return v[0].String() + ":" + v[1].String()
}

// newRows validates and copies recs, and sums their sizes. An invalid
// record fails them all.
func newRows(recs []record.Record) ([]row, int64, error) {
	rows := make([]row, len(recs))
	var size int64
	for i, rec := range recs {
		r, err := newRow(i, rec)
		if err != nil {
			return nil, 0, err
		}
		rows[i] = r
		size += r.size()
	}
	return rows, size, nil
}

// Append commits recs as released records, each given the next delivery
// sequence number, and returns how many were new: an id already stored, or
// repeated within recs, is skipped and not counted. An invalid record fails
// the whole call with an *InvalidError before anything is written. Over
// MaxBytes under the reject policy the whole call fails with an error
// wrapping record.ErrFull. If ctx ends before the commit, Append returns
// ctx.Err() and the records may still be committed.
func (s *Store) Append(ctx context.Context, recs []record.Record) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	rows, size, err := newRows(recs)
	if err != nil {
		return 0, fmt.Errorf("append records: %w", err)
	}
	n, err := s.do(ctx, &request{op: opAppend, rows: rows, bytes: size})
	if err != nil {
		return 0, fmt.Errorf("append records: %w", err)
	}
	return n, nil
}

// Begin commits rec as pending: stored and visible to Records, but without
// a sequence number, so ReadAfter does not return it until Finish. An id
// already stored is left as it is. Pending records count against MaxBytes
// and are never dropped. The ctx rule of Append applies.
//
// While the store is not near MaxBytes, Begin commits rec to the begin log
// on the caller's goroutine (beginlog.go) and does not wait for the writer.
func (s *Store) Begin(ctx context.Context, rec record.Record) error {
	// The columns are filled if the row reaches the started table (start).
	// The begin log copies the data into its ring, and keeps no other.
	r, err := makeRow(0, rec, unsafe.String(unsafe.SliceData(rec.Data), len(rec.Data)), false)
	if err != nil {
		return fmt.Errorf("begin record: %w", err)
	}
	if s.begins != nil && s.roomFor(r.size()) {
		err := s.appendBegun(ctx, r)
		if !errors.Is(err, errRingFull) {
			return err
		}
		s.begins.full(s.log)
	}
	if r, err = newRowColumns(0, rec, false); err != nil { // the writer's own copy
		return fmt.Errorf("begin record: %w", err)
	}
	return s.send(ctx, opBegin, "begin", r)
}

// appendBegun commits r to the begin log.
func (s *Store) appendBegun(ctx context.Context, r row) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("begin record %q: %w", r.id, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("begin record %q: %w", r.id, ErrClosed)
	}
	if err := s.begins.append(r); err != nil {
		return fmt.Errorf("begin record %q: %w", r.id, err)
	}
	return nil
}

// showBegun copies the begin log's entries into the started table, so that
// a query of this process that follows sees every call in flight.
func (s *Store) showBegun(ctx context.Context) error {
	if s.begins == nil || s.begins.n.Load() == 0 {
		return nil
	}
	_, err := s.do(ctx, &request{op: opMaterialize})
	return err
}

// roomFor reports whether size more bytes leave the store clear of
// MaxBytes by an eighth of it, as of the last commit: only then does Begin
// take the begin log, which cannot drop the oldest records or refuse
// exactly at the bound as the writer does.
func (s *Store) roomFor(size int64) bool {
	if s.cfg.MaxBytes == 0 {
		return true
	}
	s.statsMu.Lock()
	used := s.stats.Bytes
	s.statsMu.Unlock()
	return used+s.begins.bytes.Load()+size <= s.cfg.MaxBytes-s.cfg.MaxBytes/8
}

// Finish replaces the pending record with rec's id by rec and releases it
// with the next sequence number. Without such a record it stores rec as a
// new, released one; if the record is already released Finish does nothing,
// so it is idempotent. The ctx rule of Append applies.
func (s *Store) Finish(ctx context.Context, rec record.Record) error {
	return s.single(ctx, opFinish, "finish", rec)
}

// FinishAsync is Finish without waiting for the commit: rec joins the next
// group commit and done, if not nil, gets the outcome on the writer
// goroutine. The caller is spared a commit's latency, and completions ride
// in the same transactions as other callers' writes. Close commits every
// queued request, so nothing queued is lost on a clean stop.
//
// The row is rec.Data itself, not a copy (record.Journal): the writer is
// done with it when done is called, and keeps nothing of it afterwards
// (addRollup copies the strings it keeps).
func (s *Store) FinishAsync(ctx context.Context, rec record.Record, done func(error)) error {
	r, err := makeRow(0, rec, unsafe.String(unsafe.SliceData(rec.Data), len(rec.Data)), true)
	if err != nil {
		return fmt.Errorf("finish record: %w", err)
	}
	req := &request{op: opFinish, rows: []row{r}, bytes: r.size(), async: true}
	if done != nil {
		id := rec.ID
		req.then = func(res result) {
			if res.err != nil {
				res.err = fmt.Errorf("finish record %q: %w", id, res.err)
			}
			done(res.err)
		}
	}
	if err := s.enqueue(ctx, req); err != nil {
		return fmt.Errorf("finish record %q: %w", rec.ID, err)
	}
	return nil
}

// single validates and queues a one-record request.
func (s *Store) single(ctx context.Context, op opKind, verb string, rec record.Record) error {
	r, err := newRow(0, rec)
	if err != nil {
		return fmt.Errorf("%s record: %w", verb, err)
	}
	return s.send(ctx, op, verb, r)
}

// send queues a one-row request and waits for its commit.
func (s *Store) send(ctx context.Context, op opKind, verb string, r row) error {
	if _, err := s.do(ctx, &request{op: op, rows: []row{r}, bytes: r.size()}); err != nil {
		return fmt.Errorf("%s record %q: %w", verb, r.id, err)
	}
	return nil
}
