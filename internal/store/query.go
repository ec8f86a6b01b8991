package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// principalSQL is record.Principal.ID written in SQL over a gateway_request
// payload: "key:" and the key name, else the UPN, else the object id. It is
// the one definition both Filter.Principal and Usage's "principal" use.
const principalSQL = `(CASE
	WHEN coalesce(json_extract(data, '$.principal.key_name'), '') <> ''
		THEN 'key:' || json_extract(data, '$.principal.key_name')
	WHEN coalesce(json_extract(data, '$.principal.upn'), '') <> ''
		THEN json_extract(data, '$.principal.upn')
	ELSE coalesce(json_extract(data, '$.principal.oid'), '')
END)`

// Filter selects records for Records. Zero fields match everything. The
// payload fields (Principal, Deployment, Operation, Status, Text) are those
// of gateway_request records; other kinds never match them.
type Filter struct {
	Kind       record.Kind
	Since      time.Time // record time at or after; zero: no lower bound
	Until      time.Time // record time before; zero: no upper bound
	Principal  string    // record.Principal.ID() of the caller
	Deployment string
	Operation  string
	Status     int    // the gateway's response status; 0: any
	State      string // started, completed, interrupted, denied
	// Text is a substring of the captured prompt or response text, matched
	// case-insensitively for ASCII letters (SQLite's lower()).
	Text string
	// Scope keeps the activity_log records of one scope: its id (ASCII
	// case ignored) or "tenant". Only Records and Page of Kind
	// activity_log read it; those read that scope's records alone.
	Scope string
	Limit int // at most this many, oldest first; 0: all
}

// where renders f as a SQL WHERE clause (with leading space) and its args.
func (f Filter) where() (string, []any) {
	conds, args := f.conds()
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// conds renders f as SQL conditions, to be joined with AND, and their args.
// For activity_log records the first is activityKind.
func (f Filter) conds() ([]string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		conds = append(conds, cond)
		args = append(args, arg)
	}
	switch {
	case f.Kind == record.KindGatewayRequest,
		f.Kind == "" && (f.Principal != "" || f.Deployment != "" || f.Operation != "" || f.Status != 0 || f.Text != ""):
		// The payload fields are those of gateway calls; the literal lets
		// SQLite use the partial indexes of migration 5, and scope IS NULL
		// the time order of records_kind_scope_time (migration 8).
		conds = append(conds, gatewayKind, `scope IS NULL`)
	case f.Kind == record.KindActivityLog:
		conds = append(conds, activityKind)
	case f.Kind != "":
		add(`kind = ?`, string(f.Kind))
		conds = append(conds, `scope IS NULL`)
	}
	if !f.Since.IsZero() {
		add(`time >= ?`, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add(`time < ?`, f.Until.UnixNano())
	}
	if f.Principal != "" {
		add(`principal = ?`, f.Principal)
	}
	if f.Deployment != "" {
		add(`deployment = ?`, f.Deployment)
	}
	if f.Operation != "" {
		add(`json_extract(data, '$.operation') = ?`, f.Operation)
	}
	if f.Status != 0 {
		add(`status = ?`, f.Status)
	}
	if f.State != "" {
		add(`state = ?`, f.State)
	}
	if f.Text != "" {
		conds = append(conds, `(instr(lower(coalesce(json_extract(data, '$.prompt.text'), '')), lower(?)) > 0
			OR instr(lower(coalesce(json_extract(data, '$.response.text'), '')), lower(?)) > 0)`)
		args = append(args, f.Text, f.Text)
	}
	return conds, args
}

// Records calls fn with every record matching f, pending ones included,
// oldest first (by time, then id). It stops at the first error fn returns
// and returns that error as is. fn may keep the records it is given. The
// query holds a read transaction open until Records returns.
func (s *Store) Records(ctx context.Context, f Filter, fn func(record.Record) error) error {
	if f.Kind == record.KindActivityLog {
		conds, args := f.conds()
		var fnErr error
		q := activityQuery{conds: conds[1:], args: args, scope: scopeMatch(f.Scope), limit: f.Limit}
		err := s.walkActivity(ctx, q, func(r record.Record) error {
			fnErr = fn(r)
			return fnErr
		})
		switch {
		case fnErr != nil:
			return fnErr
		case err != nil:
			return fmt.Errorf("query records: %w", err)
		}
		return nil
	}
	if err := s.showBegun(ctx); err != nil {
		return fmt.Errorf("query records: %w", err)
	}
	where, args := f.where()
	q := `SELECT ` + recordColumns + ` FROM ` + everyRecord + where + ` ORDER BY time, id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("query records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return fmt.Errorf("query records: %w", err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query records: %w", err)
	}
	return nil
}

// usageGroups maps each key UsageQuery.By may name to the SQL it groups on.
// "model" is the model the upstream returned, else the one requested; "day"
// is the UTC date (YYYY-MM-DD) of the record's time.
var usageGroups = map[string]string{
	"principal":  principalSQL,
	"deployment": `coalesce(json_extract(data, '$.deployment'), '')`,
	"model": `coalesce(nullif(json_extract(data, '$.model_returned'), ''),
		json_extract(data, '$.model_requested'), '')`,
	"operation": `coalesce(json_extract(data, '$.operation'), '')`,
	"backend":   `coalesce(json_extract(data, '$.backend'), '')`,
	"day":       `strftime('%Y-%m-%d', time / 1000000000, 'unixepoch')`,
}

// UsageGroups lists the keys UsageQuery.By accepts.
var UsageGroups = []string{"principal", "deployment", "model", "operation", "backend", "day"}

// UsageQuery asks for token usage of gateway_request records, grouped.
type UsageQuery struct {
	By    []string  // group keys from UsageGroups, in output order; none: one total
	Since time.Time // record time at or after; zero: no lower bound
	Until time.Time // record time before; zero: no upper bound
}

// UsageRow is one group of a usage report.
type UsageRow struct {
	Keys             []string // the group's values, in UsageQuery.By order
	Requests         int64
	Errors           int64 // requests answered with status >= 400
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
	CachedTokens     int64
	ReasoningTokens  int64
	Estimated        int64 // requests whose usage was estimated, not reported
}

// Usage sums the usage of gateway_request records per group, ordered by the
// group keys. Groups without requests are not returned.
func (s *Store) Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error) {
	return s.usage(ctx, q, false)
}

// gatewaySource is what follows FROM to read the gateway records of
// [since, until) (zero times: unbounded), every one or, when unrolled, only
// those usage_hourly does not hold yet: the started ones (a small table),
// and those after the rollup's seq, by seq (the rowid)
// (the unary + keeps SQLite from scanning the time range instead).
func gatewaySource(since, until time.Time, unrolled bool) (string, []any) {
	if !unrolled {
		where, args := Filter{Kind: record.KindGatewayRequest, Since: since, Until: until}.where()
		return everyRecord + where, args
	}
	var pending, after []string
	var pargs, aargs []any
	add := func(col string, op string, v any) {
		pending = append(pending, col+" "+op+" ?")
		after = append(after, "+"+col+" "+op+" ?")
		pargs, aargs = append(pargs, v), append(aargs, v)
	}
	add("kind", "=", string(record.KindGatewayRequest))
	if !since.IsZero() {
		add("time", ">=", since.UnixNano())
	}
	if !until.IsZero() {
		add("time", "<", until.UnixNano())
	}
	src := `(SELECT * FROM started WHERE ` + strings.Join(pending, " AND ") +
		` UNION ALL SELECT * FROM records WHERE seq > (SELECT seq FROM usage_rollup) AND ` +
		strings.Join(after, " AND ") + `)`
	return src, append(pargs, aargs...)
}

// usage is Usage over every record, or over those not in usage_hourly.
func (s *Store) usage(ctx context.Context, q UsageQuery, unrolled bool) ([]UsageRow, error) {
	if err := s.showBegun(ctx); err != nil {
		return nil, fmt.Errorf("query usage: %w", err)
	}
	var keys, names []string
	for i, by := range q.By {
		expr, ok := usageGroups[by]
		if !ok {
			return nil, fmt.Errorf("query usage: unknown group %q (want one of %s)", by, strings.Join(UsageGroups, ", "))
		}
		keys = append(keys, fmt.Sprintf("%s AS k%d", expr, i))
		names = append(names, fmt.Sprintf("k%d", i))
	}
	src, args := gatewaySource(q.Since, q.Until, unrolled)
	inner := slices.Concat(keys, []string{
		`json_extract(data, '$.status') AS status`,
		`json_extract(data, '$.usage.prompt_tokens') AS prompt`,
		`json_extract(data, '$.usage.completion_tokens') AS completion`,
		`json_extract(data, '$.usage.total_tokens') AS total`,
		`json_extract(data, '$.usage.cached_tokens') AS cached`,
		`json_extract(data, '$.usage.reasoning_tokens') AS reasoning`,
		`json_extract(data, '$.usage.source') AS source`,
	})
	outer := slices.Concat(names, []string{
		`count(*)`,
		`coalesce(sum(status >= 400), 0)`,
		`coalesce(sum(prompt), 0)`,
		`coalesce(sum(completion), 0)`,
		`coalesce(sum(total), 0)`,
		`coalesce(sum(cached), 0)`,
		`coalesce(sum(reasoning), 0)`,
		`coalesce(sum(source = 'estimated'), 0)`,
	})
	sqlq := `SELECT ` + strings.Join(outer, ", ") +
		` FROM (SELECT ` + strings.Join(inner, ", ") + ` FROM ` + src + `)`
	if len(names) > 0 {
		sqlq += ` GROUP BY ` + strings.Join(names, ", ") + ` ORDER BY ` + strings.Join(names, ", ")
	}
	rows, err := s.rdb.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, fmt.Errorf("query usage: %w", err)
	}
	defer rows.Close()
	var out []UsageRow
	for rows.Next() {
		u := UsageRow{Keys: make([]string, len(names))}
		dest := make([]any, 0, len(names)+8)
		for i := range u.Keys {
			dest = append(dest, &u.Keys[i])
		}
		dest = append(dest, &u.Requests, &u.Errors, &u.PromptTokens, &u.CompletionTokens,
			&u.TotalTokens, &u.CachedTokens, &u.ReasoningTokens, &u.Estimated)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("query usage: %w", err)
		}
		if u.Requests > 0 {
			out = append(out, u)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query usage: %w", err)
	}
	return out, nil
}
