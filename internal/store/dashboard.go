package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// dashboard.go holds the queries behind the web dashboard (internal/dashboard)
// that `tapline query` does not need: newest-first pages with a keyset
// cursor, one record by id, time series, activity and limit filters in SQL.

// ErrNotFound is returned by Record when no record has the id.
var ErrNotFound = errors.New("record not found")

// Cursor is a position in a newest-first listing: the (time, id) of the
// last record shown. Pages continue strictly after it, so a page is found
// through an index however deep it is (no OFFSET). The zero Cursor is the
// start of the listing.
type Cursor struct {
	Time time.Time
	ID   string
}

// IsZero reports whether c is the start of a listing.
func (c Cursor) IsZero() bool { return c.ID == "" }

// ActivityFilter selects activity_log records by the fields `tapline query
// activity` filters on, with the same meaning: Scope is a scope id or
// "tenant", Operation a case-insensitive substring of the operation name,
// Caller the caller, UPN, object id or app id, Status the event status;
// the comparisons ignore ASCII case. Zero fields match everything.
type ActivityFilter struct {
	Since, Until time.Time
	Scope        string
	Operation    string
	Caller       string
	Status       string
}

// query renders f as a walk over activity_log records (activity.go): the
// scope is matched on the scope column, the rest in SQL.
func (f ActivityFilter) query() activityQuery {
	conds, args := Filter{Kind: record.KindActivityLog, Since: f.Since, Until: f.Until}.conds()
	conds = conds[1:] // the kind, which the walk says itself
	q := activityQuery{scope: scopeMatch(f.Scope)}
	if f.Operation != "" {
		conds = append(conds, `instr(lower(coalesce(json_extract(data, '$.operation_name'), '')), lower(?)) > 0`)
		args = append(args, f.Operation)
	}
	if f.Caller != "" {
		conds = append(conds, `lower(?) IN (lower(coalesce(json_extract(data, '$.caller'), '')),
			lower(coalesce(json_extract(data, '$.identity.upn'), '')),
			lower(coalesce(json_extract(data, '$.identity.oid'), '')),
			lower(coalesce(json_extract(data, '$.identity.appid'), '')))`)
		args = append(args, f.Caller)
	}
	if f.Status != "" {
		conds = append(conds, `lower(coalesce(json_extract(data, '$.status'), '')) = lower(?)`)
		args = append(args, f.Status)
	}
	q.conds, q.args = conds, args
	return q
}

// limitedWhere selects the gateway calls the gateway's limits refused, as
// `tapline query throttles` does: denied records whose limit says
// throttled (429 over a per-minute limit, 403 over a quota, 503 while the
// shared limiter is down). It is written with literals, not parameters, so
// that SQLite can use the partial index records_throttled_time (migration
// 4), whose WHERE is this clause.
const limitedWhere = `kind = 'gateway_request' AND state = 'denied' AND json_extract(data, '$.limit.throttled') = 1`

// limitedFilter renders f's time, principal, deployment and status
// conditions after limitedWhere.
func limitedFilter(f Filter) (string, []any) {
	f.Kind, f.State, f.Limit = "", "", 0
	where, args := f.where()
	if where == "" {
		return " WHERE " + limitedWhere, nil
	}
	return " WHERE " + limitedWhere + " AND " + strings.TrimPrefix(where, " WHERE "), args
}

// Page returns up to n records matching f, newest first (by time, then id,
// both descending), strictly after the cursor after, and the cursor of the
// next page (zero when there is none). f.Limit is ignored.
func (s *Store) Page(ctx context.Context, f Filter, after Cursor, n int) ([]record.Record, Cursor, error) {
	f.Limit = 0
	if f.Kind == record.KindActivityLog {
		conds, args := f.conds()
		return s.activityPage(ctx, activityQuery{conds: conds[1:], args: args, scope: scopeMatch(f.Scope)}, after, n)
	}
	where, args := f.where()
	return s.page(ctx, where, args, after, n)
}

// ActivityPage is Page for activity_log records selected by f.
func (s *Store) ActivityPage(ctx context.Context, f ActivityFilter, after Cursor, n int) ([]record.Record, Cursor, error) {
	return s.activityPage(ctx, f.query(), after, n)
}

// activityPage is page for a walk over activity_log records.
func (s *Store) activityPage(ctx context.Context, q activityQuery, after Cursor, n int) ([]record.Record, Cursor, error) {
	if n <= 0 {
		n = 50
	}
	q.desc, q.limit = true, n+1
	if !after.IsZero() {
		q.after = &after
	}
	var out []record.Record
	err := s.walkActivity(ctx, q, func(r record.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, Cursor{}, fmt.Errorf("query page: %w", err)
	}
	out, next := cutPage(out, n)
	return out, next, nil
}

// LimitedPage is Page for the gateway calls refused by a limit (see
// limitedWhere) that match f; f.Kind and f.State are ignored.
func (s *Store) LimitedPage(ctx context.Context, f Filter, after Cursor, n int) ([]record.Record, Cursor, error) {
	where, args := limitedFilter(f)
	return s.page(ctx, where, args, after, n)
}

func (s *Store) page(ctx context.Context, where string, args []any, after Cursor, n int) ([]record.Record, Cursor, error) {
	if err := s.showBegun(ctx); err != nil {
		return nil, Cursor{}, fmt.Errorf("query records: %w", err)
	}
	if n <= 0 {
		n = 50
	}
	if !after.IsZero() {
		cond := `(time < ? OR (time = ? AND id < ?))`
		if where == "" {
			where = " WHERE " + cond
		} else {
			where += " AND " + cond
		}
		t := after.Time.UnixNano()
		args = append(args, t, t, after.ID)
	}
	q := `SELECT ` + recordColumns + ` FROM ` + everyRecord + where + ` ORDER BY time DESC, id DESC LIMIT ?`
	args = append(args, n+1)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, Cursor{}, fmt.Errorf("query page: %w", err)
	}
	defer rows.Close()
	var out []record.Record
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return nil, Cursor{}, fmt.Errorf("query page: %w", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, Cursor{}, fmt.Errorf("query page: %w", err)
	}
	out, next := cutPage(out, n)
	return out, next, nil
}

// cutPage returns the page in out, read with one record more than its n,
// and the cursor of the page after it (zero when out holds no more).
func cutPage(out []record.Record, n int) ([]record.Record, Cursor) {
	if len(out) <= n {
		return out, Cursor{}
	}
	out = out[:n]
	last := out[n-1]
	return out, Cursor{Time: last.Time, ID: last.ID}
}

// recordColumns are the columns scanRecord reads, in its order.
const recordColumns = `id, kind, version, time, data`

// scanRecord reads a row of recordColumns, after the columns of before.
func scanRecord(rows interface{ Scan(...any) error }, before ...any) (record.Record, error) {
	var rec record.Record
	var kind string
	var nanos int64
	var data []byte
	if err := rows.Scan(append(before, &rec.ID, &kind, &rec.Version, &nanos, &data)...); err != nil {
		return rec, err
	}
	rec.Kind, rec.Time, rec.Data = record.Kind(kind), time.Unix(0, nanos).UTC(), data
	return rec, nil
}

// Record returns the record with the given id, pending or not, or an error
// wrapping ErrNotFound.
func (s *Store) Record(ctx context.Context, id string) (record.Record, error) {
	if err := s.showBegun(ctx); err != nil {
		return record.Record{}, fmt.Errorf("query record: %w", err)
	}
	// Other kinds are found through records_id; an activity_log record
	// only through the ids in records_kind_scope_time, all of them read.
	row := s.rdb.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM `+everyRecord+` WHERE id = ? AND `+notActivity+`
		UNION ALL SELECT `+recordColumns+` FROM records WHERE `+activityKind+` AND id = ? LIMIT 1`, id, id)
	rec, err := scanRecord(row)
	if errors.Is(err, sql.ErrNoRows) {
		return rec, fmt.Errorf("read record %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("read record %q: %w", id, err)
	}
	return rec, nil
}

// Bucket is one step of a gateway time series.
type Bucket struct {
	Start     time.Time
	Requests  int64
	Tokens    int64 // total tokens
	Errors    int64 // status >= 400
	Throttles int64 // status 429
}

// Series counts the gateway calls of [since, until) in buckets of step,
// oldest first; every bucket of the range is returned, empty ones too.
func (s *Store) Series(ctx context.Context, since, until time.Time, step time.Duration) ([]Bucket, error) {
	if step <= 0 || !until.After(since) {
		return nil, fmt.Errorf("query series: empty range or step")
	}
	n := int((until.Sub(since) + step - 1) / step)
	if n > 10000 {
		return nil, fmt.Errorf("query series: %d buckets is too many", n)
	}
	out := make([]Bucket, n)
	for i := range out {
		out[i].Start = since.Add(time.Duration(i) * step).UTC()
	}
	if step%time.Hour == 0 && since.UnixNano()%hourNanos == 0 {
		// Whole hours from usage_hourly, plus the records it does not
		// hold yet (pending, or released after the last RollUp).
		if err := s.seriesHours(ctx, since, until, step, out); err != nil {
			return nil, err
		}
		return out, s.seriesRecords(ctx, since, until, step, out, true)
	}
	return out, s.seriesRecords(ctx, since, until, step, out, false)
}

// seriesRecords adds the gateway records of [since, until) (only those
// not in usage_hourly if unrolled) to the buckets of out.
func (s *Store) seriesRecords(ctx context.Context, since, until time.Time, step time.Duration, out []Bucket, unrolled bool) error {
	if err := s.showBegun(ctx); err != nil {
		return fmt.Errorf("query series: %w", err)
	}
	src, args := gatewaySource(since, until, unrolled)
	q := `SELECT (time - ?) / ?, count(*),
		coalesce(sum(json_extract(data, '$.usage.total_tokens')), 0),
		coalesce(sum(st >= 400), 0), coalesce(sum(st = 429), 0)
		FROM (SELECT time, data, json_extract(data, '$.status') AS st FROM ` + src + `)
		GROUP BY 1`
	args = append([]any{since.UnixNano(), int64(step)}, args...)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("query series: %w", err)
	}
	return addBuckets(rows, out)
}

// addBuckets adds rows of (bucket index, requests, tokens, errors,
// throttles) to the buckets of out, and closes rows.
func addBuckets(rows *sql.Rows, out []Bucket) error {
	defer rows.Close()
	for rows.Next() {
		var i int
		var b Bucket
		if err := rows.Scan(&i, &b.Requests, &b.Tokens, &b.Errors, &b.Throttles); err != nil {
			return fmt.Errorf("query series: %w", err)
		}
		if i >= 0 && i < len(out) {
			o := &out[i]
			o.Requests += b.Requests
			o.Tokens += b.Tokens
			o.Errors += b.Errors
			o.Throttles += b.Throttles
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query series: %w", err)
	}
	return nil
}

// LimitedCount is how many calls one principal had refused by one limit.
type LimitedCount struct {
	Principal string
	Limit     string
	Status    int
	Count     int64
	Last      time.Time
}

// LimitedByPrincipal counts the gateway calls refused by a limit (see
// LimitedPage) that match f, per principal, limit name and status, most
// refused first. It names the partial index: left to itself, SQLite walks
// records_principal_time for the GROUP BY, which reads every gateway call.
func (s *Store) LimitedByPrincipal(ctx context.Context, f Filter) ([]LimitedCount, error) {
	where, args := limitedFilter(f)
	q := `SELECT ` + principalSQL + `, coalesce(json_extract(data, '$.limit.name'), ''),
		json_extract(data, '$.status'), count(*), max(time)
		FROM records INDEXED BY records_throttled_time` + where + `
		GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3`
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query limited calls: %w", err)
	}
	defer rows.Close()
	var out []LimitedCount
	for rows.Next() {
		var c LimitedCount
		var last int64
		if err := rows.Scan(&c.Principal, &c.Limit, &c.Status, &c.Count, &last); err != nil {
			return nil, fmt.Errorf("query limited calls: %w", err)
		}
		c.Last = time.Unix(0, last).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query limited calls: %w", err)
	}
	return out, nil
}
