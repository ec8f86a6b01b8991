package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tidwall/gjson"
)

// rollup.go keeps usage_hourly, the gateway calls' usage summed per UTC
// hour and per principal, deployment, model, operation and backend, so
// that the dashboard's usage and overview over weeks read thousands of
// rows, not a million JSON documents (issue 7: a page in under 200 ms with
// 1,000,000 records). It holds the released records up to the cursor
// usage_rollup.seq, which RollUp moves on from the writer's running sums
// (rollAcc) or, after a restart, by reading the records; a delete trigger
// takes out the summed records that prune and drop_oldest remove. The
// queries add the records past the cursor and those in flight, so every
// answer is exact. UsageFast answers a UsageQuery from it, with the same
// rows as Usage, reading records only for the partial hours at the ends of
// the period.
//
// The SQL here is part of migration 4 (schema.go): once shipped, change it
// only through a new migration.

const hourNanos = int64(time.Hour)

// rollupKeys are the usage_hourly key columns and, for each, its
// expression over a gateway_request payload (usageGroups' definitions):
// expr over the column data, pivot over the columns of rollupPivot.
var rollupKeys = []struct{ col, expr, pivot string }{
	{"principal", principalSQL, `(CASE
		WHEN coalesce(json_extract(p, '$.key_name'), '') <> '' THEN 'key:' || json_extract(p, '$.key_name')
		WHEN coalesce(json_extract(p, '$.upn'), '') <> '' THEN json_extract(p, '$.upn')
		ELSE coalesce(json_extract(p, '$.oid'), '') END)`},
	{"deployment", `coalesce(json_extract(data, '$.deployment'), '')`, `coalesce(deployment, '')`},
	{"model", `coalesce(nullif(json_extract(data, '$.model_returned'), ''), json_extract(data, '$.model_requested'), '')`,
		`coalesce(nullif(model_returned, ''), model_requested, '')`},
	{"operation", `coalesce(json_extract(data, '$.operation'), '')`, `coalesce(operation, '')`},
	{"backend", `coalesce(json_extract(data, '$.backend'), '')`, `coalesce(backend, '')`},
}

// rollupSums are the summed columns and their value for one payload, over
// data and over the columns of rollupPivot.
var rollupSums = []struct{ col, expr, pivot string }{
	{"requests", `1`, `1`},
	{"errors", `coalesce(json_extract(data, '$.status') >= 400, 0)`, `coalesce(status >= 400, 0)`},
	{"throttles", `coalesce(json_extract(data, '$.status') = 429, 0)`, `coalesce(status = 429, 0)`},
	{"prompt", `coalesce(json_extract(data, '$.usage.prompt_tokens'), 0)`, `coalesce(json_extract(u, '$.prompt_tokens'), 0)`},
	{"completion", `coalesce(json_extract(data, '$.usage.completion_tokens'), 0)`, `coalesce(json_extract(u, '$.completion_tokens'), 0)`},
	{"total", `coalesce(json_extract(data, '$.usage.total_tokens'), 0)`, `coalesce(json_extract(u, '$.total_tokens'), 0)`},
	{"cached", `coalesce(json_extract(data, '$.usage.cached_tokens'), 0)`, `coalesce(json_extract(u, '$.cached_tokens'), 0)`},
	{"reasoning", `coalesce(json_extract(data, '$.usage.reasoning_tokens'), 0)`, `coalesce(json_extract(u, '$.reasoning_tokens'), 0)`},
	{"estimated", `coalesce(json_extract(data, '$.usage.source') = 'estimated', 0)`, `coalesce(json_extract(u, '$.source') = 'estimated', 0)`},
}

// rollupPivot reads the top-level fields the rollup needs from the payload
// of row (NEW or OLD) in one pass of json_each, as one row of columns: p
// (the principal object, as JSON), deployment, model_returned,
// model_requested, operation, backend, status and u (the usage object).
// Each json_extract parses its whole argument, and SQLite caches a parse
// per call site only: eighteen extractions from a payload holding 1 MiB of
// captured text would parse it eighteen times on every write.
func rollupPivot(row string) string {
	col := func(key, name string) string {
		return fmt.Sprintf("max(CASE WHEN key = '%s' THEN value END) AS %s", key, name)
	}
	return `(SELECT ` + row + `.time AS time, ` + strings.Join([]string{
		col("principal", "p"), col("deployment", "deployment"), col("model_returned", "model_returned"),
		col("model_requested", "model_requested"), col("operation", "operation"), col("backend", "backend"),
		col("status", "status"), col("usage", "u"),
	}, ", ") + ` FROM json_each(` + row + `.data) WHERE key IN ('principal', 'deployment', 'model_returned',
		'model_requested', 'operation', 'backend', 'status', 'usage'))`
}

func rollupCols() (keys, sums []string) {
	for _, k := range rollupKeys {
		keys = append(keys, k.col)
	}
	for _, s := range rollupSums {
		sums = append(sums, s.col)
	}
	return keys, sums
}

// rollupUpsert adds (sign 1) or removes (sign -1) the usage of the row
// named row (NEW or OLD) to its hour, if cond (SQL) holds.
func rollupUpsert(row string, sign int, cond string) string {
	keys, sums := rollupCols()
	vals := []string{`time / ` + fmt.Sprint(hourNanos)}
	for _, k := range rollupKeys {
		vals = append(vals, k.pivot)
	}
	for _, s := range rollupSums {
		vals = append(vals, fmt.Sprintf("%d * %s", sign, s.pivot))
	}
	var set []string
	for _, c := range sums {
		set = append(set, fmt.Sprintf("%s = %s + excluded.%s", c, c, c))
	}
	// The WHERE also settles the parsing ambiguity of an upsert's SELECT
	// (SQLite docs, "upsert").
	return `INSERT INTO usage_hourly (hour, ` + strings.Join(keys, ", ") + `, ` + strings.Join(sums, ", ") + `)
		SELECT ` + strings.Join(vals, ", ") + ` FROM ` + rollupPivot(row) + `
		WHERE ` + cond + `
		ON CONFLICT (hour, ` + strings.Join(keys, ", ") + `) DO UPDATE SET ` + strings.Join(set, ", ") + `;`
}

// rollupMigration is the part of migration 4 that creates usage_hourly,
// fills it from the records already stored, and adds its triggers.
func rollupMigration() []string {
	keys, sums := rollupCols()
	var cols []string
	for _, k := range keys {
		cols = append(cols, k+" TEXT NOT NULL")
	}
	for _, s := range sums {
		cols = append(cols, s+" INTEGER NOT NULL")
	}
	var exprs, sumExprs []string
	for _, k := range rollupKeys {
		exprs = append(exprs, k.expr)
	}
	for _, s := range rollupSums {
		sumExprs = append(sumExprs, "sum("+s.expr+")")
	}
	const gw = `'gateway_request'`
	return []string{
		// hour is the record's time in whole hours since the Unix epoch.
		`CREATE TABLE usage_hourly (hour INTEGER NOT NULL, ` + strings.Join(cols, ", ") +
			`, PRIMARY KEY (hour, ` + strings.Join(keys, ", ") + `)) WITHOUT ROWID`,
		// usage_hourly holds the released gateway records with seq up to
		// usage_rollup.seq. RollUp moves it on in batches, off the calls'
		// path; queries add the records after it and the pending ones
		// (records_pending), so every answer is exact at any moment.
		`CREATE TABLE usage_rollup (seq INTEGER NOT NULL)`,
		`INSERT INTO usage_rollup SELECT coalesce(max(seq), 0) FROM records`,
		`INSERT INTO usage_hourly SELECT time / ` + fmt.Sprint(hourNanos) + `, ` + strings.Join(exprs, ", ") + `, ` +
			strings.Join(sumExprs, ", ") + ` FROM records WHERE kind = ` + gw + ` AND seq IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6`,
		`CREATE INDEX records_pending ON records(kind, time) WHERE seq IS NULL`,
		// Prune and drop_oldest delete released records; those already
		// summed leave the sums with them. Pending records are never deleted.
		rollupDeleteTrigger(),
	}
}

// rollupDeleteTrigger takes the records that Prune and drop_oldest delete
// out of usage_hourly, if it holds them.
func rollupDeleteTrigger() string {
	return `CREATE TRIGGER usage_hourly_delete AFTER DELETE ON records WHEN OLD.kind = 'gateway_request'` +
		` AND OLD.seq <= (SELECT seq FROM usage_rollup) BEGIN ` + rollupUpsert("OLD", -1, "true") + ` END`
}

// rollupStep bounds the records one RollUp transaction sums, so that the
// writer (and a strict call's Begin behind it) is not held up for long:
// about 25 ms a step with 1 KB payloads.
const rollupStep = 1000

// rollupBatchSQL reads the released gateway records with seq in (?1, ?2],
// by seq, the rowid (the unary + keeps SQLite off the kind's index,
// which would read every record of the kind for each batch).
const rollupBatchSQL = `SELECT time, data FROM records WHERE seq > ?1 AND seq <= ?2 AND +kind = 'gateway_request'`

// rollupUpsertSQL adds one group's sums to its hour.
var rollupUpsertSQL = func() string {
	keys, sums := rollupCols()
	var set []string
	for _, c := range sums {
		set = append(set, fmt.Sprintf("%s = %s + excluded.%s", c, c, c))
	}
	return `INSERT INTO usage_hourly (hour, ` + strings.Join(keys, ", ") + `, ` + strings.Join(sums, ", ") + `)
		VALUES (` + strings.Repeat("?, ", len(keys)+len(sums)) + `?)
		ON CONFLICT (hour, ` + strings.Join(keys, ", ") + `) DO UPDATE SET ` + strings.Join(set, ", ")
}()

// rollupGroup is a key of usage_hourly: an hour and the values of
// rollupKeys, in order.
type rollupGroup struct {
	hour                                             int64
	principal, deployment, model, operation, backend string
}

// owned is g with strings of its own: a row's group may point into its
// payload, which a FinishAsync caller gets back after the commit.
func (g rollupGroup) owned() rollupGroup {
	g.principal, g.deployment, g.model = strings.Clone(g.principal), strings.Clone(g.deployment), strings.Clone(g.model)
	g.operation, g.backend = strings.Clone(g.operation), strings.Clone(g.backend)
	return g
}

// rollupRow holds the values of rollupSums, in order.
type rollupRow [9]int64

// gatewayMembers are the top-level members of a gateway_request payload
// that its row's columns and its usage sums are made of, each the first of
// its name (as for json_extract); a missing one is the zero Result.
type gatewayMembers struct {
	state, principal, deployment, modelReturned, modelRequested, operation, backend, status, usage gjson.Result
}

// readGateway reads doc's members in one pass over its top level. Reading
// in Go rather than with json_extract or json_each spares SQLite a parse of
// the whole record (captured prompt and response included) for each.
func readGateway(doc gjson.Result) gatewayMembers {
	var m gatewayMembers
	var seen uint16
	doc.ForEach(func(k, v gjson.Result) bool {
		var bit uint16
		var dst *gjson.Result
		switch k.Str {
		case "state":
			bit, dst = 1<<0, &m.state
		case "principal":
			bit, dst = 1<<1, &m.principal
		case "deployment":
			bit, dst = 1<<2, &m.deployment
		case "model_returned":
			bit, dst = 1<<3, &m.modelReturned
		case "model_requested":
			bit, dst = 1<<4, &m.modelRequested
		case "operation":
			bit, dst = 1<<5, &m.operation
		case "backend":
			bit, dst = 1<<6, &m.backend
		case "status":
			bit, dst = 1<<7, &m.status
		case "usage":
			bit, dst = 1<<8, &m.usage
		default:
			return true
		}
		if seen&bit == 0 {
			seen |= bit
			*dst = v
		}
		// Once all are seen, the rest (the captured prompt and response,
		// after them in a gateway record) need not be read. The requested
		// model counts only where the returned one is empty (rollup), and
		// is missing from most records (a deployment's URL names no model).
		const all, requested = 1<<9 - 1, 1 << 4
		return seen != all && (seen|requested != all || sqlText(m.modelReturned) == "")
	})
	return m
}

// rollupOf reads one gateway payload as the SQL expressions of rollupKeys
// and rollupSums do (TestUsageFastMatchesUsage holds them equal).
func rollupOf(nanos int64, doc gjson.Result) (rollupGroup, rollupRow) {
	m := readGateway(doc)
	return m.rollup(nanos)
}

// rollup is the payload's usage_hourly group and sums, for a record of
// time nanos.
func (m *gatewayMembers) rollup(nanos int64) (g rollupGroup, r rollupRow) {
	g = rollupGroup{hour: nanos / hourNanos, // truncated, as SQLite's integer division
		principal: principalID(m.principal), deployment: sqlText(m.deployment),
		operation: sqlText(m.operation), backend: sqlText(m.backend)}
	g.model = sqlText(m.modelReturned)
	if g.model == "" {
		g.model = sqlText(m.modelRequested)
	}
	r[0] = 1
	if m.status.Type == gjson.Number {
		r[1] = b2i(m.status.Num >= 400)
		r[2] = b2i(m.status.Num == 429)
	}
	// One pass over usage, each member the first of its name (as for
	// json_extract).
	var seen uint8
	m.usage.ForEach(func(k, v gjson.Result) bool {
		i := 0
		switch k.Str {
		case "prompt_tokens":
			i = 3
		case "completion_tokens":
			i = 4
		case "total_tokens":
			i = 5
		case "cached_tokens":
			i = 6
		case "reasoning_tokens":
			i = 7
		case "source":
			i = 8
		default:
			return true
		}
		if bit := uint8(1) << (i - 3); seen&bit == 0 {
			seen |= bit
			switch {
			case i == 8:
				r[8] = b2i(v.Type == gjson.String && v.Str == "estimated")
			case v.Type == gjson.Number:
				r[i] = v.Int()
			}
		}
		return seen != 1<<6-1
	})
	return g, r
}

// principalID is record.Principal.ID of a payload's principal object, as
// principalSQL computes it: "key:" and the key name, else the UPN, else
// the object id.
func principalID(p gjson.Result) string {
	if s := sqlText(p.Get("key_name")); s != "" {
		return "key:" + s
	}
	if s := sqlText(p.Get("upn")); s != "" {
		return s
	}
	return sqlText(p.Get("oid"))
}

// sqlText is coalesce(json_extract(...), ”) of a scalar: a string's text,
// a number's literal, ” for null or missing. (Objects and arrays are not
// expected in these fields.)
func sqlText(v gjson.Result) string {
	switch v.Type {
	case gjson.String:
		return v.Str
	case gjson.Number:
		return v.Raw
	case gjson.True:
		return "1"
	case gjson.False:
		return "0"
	}
	return ""
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// RollUp sums the released gateway records not yet in usage_hourly, in
// transactions of at most rollupStep records, and returns how many seqs it
// moved past. `tapline serve` runs it every few seconds; the usage and
// series queries are exact without it, only slower as the records after
// the rollup grow. Once it has caught up, the writer keeps running sums
// of what it commits (rollAcc) and the next RollUp writes those, one
// upsert per hour and group; otherwise each step reads its records once
// and sums them in Go.
func (s *Store) RollUp(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := s.do(ctx, &request{op: opRollUp})
		if err != nil {
			return total, fmt.Errorf("roll up usage: %w", err)
		}
		total += n
		if n < rollupStep {
			return total, nil
		}
	}
}

// rollupBatch sums the gateway records with seq in (from, to] per group.
func rollupBatch(ctx context.Context, tx *sql.Tx, from, to int64) (map[rollupGroup]*rollupRow, error) {
	rows, err := tx.QueryContext(ctx, rollupBatchSQL, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	sums := map[rollupGroup]*rollupRow{}
	for rows.Next() {
		var nanos int64
		var data sql.RawBytes
		if err := rows.Scan(&nanos, &data); err != nil {
			return nil, err
		}
		g, r := rollupOf(nanos, gjson.ParseBytes(data))
		addRollup(sums, g, &r)
	}
	return sums, rows.Err()
}

// addRollup adds r to g's sums in m.
func addRollup(m map[rollupGroup]*rollupRow, g rollupGroup, r *rollupRow) {
	acc := m[g]
	if acc == nil {
		acc = new(rollupRow)
		m[g.owned()] = acc
	}
	for i, v := range r {
		acc[i] += v
	}
}

// rollAcc is the writer's running sum of the gateway records it commits
// after the rollup's cursor, so that RollUp writes sums it already has
// instead of reading the records back: that read was 5% of a busy
// gateway's CPU (BENCHMARKS.md). It is lost on a restart, and dropped
// whenever it could disagree with the database (a failed transaction or
// request, records deleted after the cursor); RollUp then reads the
// records as before, and starts a new sum once it has caught up.
type rollAcc struct {
	valid      bool  // sums hold the gateway records with seq in (from, upTo]
	from, upTo int64 // from is usage_rollup.seq
	sums       map[rollupGroup]*rollupRow
	batch      map[rollupGroup]*rollupRow // the current transaction's, until it commits
	fast       int64                      // RollUp steps answered from sums, for tests
}

// add sums a released gateway record of the current transaction, from
// what newRow read of it.
func (a *rollAcc) add(r row) {
	if a.valid && r.kind == string(record.KindGatewayRequest) {
		r = r.withColumns() // read already unless the row came another way
		addRollup(a.batch, r.group, &r.sums)
	}
}

// commit folds the committed transaction's sums in; seq is the last seq
// it assigned.
func (a *rollAcc) commit(seq int64) {
	if a.valid {
		for g, v := range a.batch {
			addRollup(a.sums, g, v)
		}
		a.upTo = seq
	}
	clear(a.batch)
}

// drop forgets the sums: RollUp reads the records again.
func (a *rollAcc) drop() {
	a.valid = false
	clear(a.sums)
	clear(a.batch)
}

// restart begins empty sums after seq, the rollup's cursor, which the
// current transaction has moved to the last record.
func (a *rollAcc) restart(seq int64) {
	a.valid, a.from, a.upTo = true, seq, seq
	clear(a.sums)
	clear(a.batch)
}

// deleted tells the sums that records up to seq are gone.
func (a *rollAcc) deleted(seq int64) {
	if seq > a.from {
		a.drop()
	}
}

// rollUp is one step of RollUp in the writer's transaction: it writes the
// running sums if it has them, else reads at most rollupStep records after
// the cursor. It returns how many seqs the cursor moved.
func (w *writer) rollUp(ctx context.Context, t *txn) (int, error) {
	tx := t.tx
	var from int64
	if err := tx.QueryRowContext(ctx, `SELECT seq FROM usage_rollup`).Scan(&from); err != nil {
		return 0, err
	}
	a := &w.roll
	if a.valid && a.from == from {
		if err := upsertRollup(ctx, tx, a.sums); err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE usage_rollup SET seq = ?`, a.upTo); err != nil {
			return 0, err
		}
		n := a.upTo - a.from
		a.from = a.upTo
		clear(a.sums)
		a.fast++
		return int(n), nil
	}
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM records`).Scan(&last); err != nil {
		return 0, err
	}
	to := min(last, from+rollupStep)
	if to > from {
		sums, err := rollupBatch(ctx, tx, from, to)
		if err != nil {
			return 0, err
		}
		if err := upsertRollup(ctx, tx, sums); err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE usage_rollup SET seq = ?`, to); err != nil {
			return 0, err
		}
	}
	if to == last {
		a.restart(max(to, from))
	}
	return int(max(to-from, 0)), nil
}

// upsertRollup adds sums to usage_hourly.
func upsertRollup(ctx context.Context, tx *sql.Tx, sums map[rollupGroup]*rollupRow) error {
	for g, r := range sums {
		args := []any{g.hour, g.principal, g.deployment, g.model, g.operation, g.backend}
		for _, v := range r {
			args = append(args, v)
		}
		if _, err := tx.ExecContext(ctx, rollupUpsertSQL, args...); err != nil {
			return err
		}
	}
	return nil
}

// rollupGroups maps UsageQuery.By keys to usage_hourly expressions.
var rollupGroups = map[string]string{
	"principal":  "principal",
	"deployment": "deployment",
	"model":      "model",
	"operation":  "operation",
	"backend":    "backend",
	"day":        `strftime('%Y-%m-%d', hour * 3600, 'unixepoch')`,
}

// UsageFast returns what Usage returns for q, reading whole hours from
// usage_hourly and only the partial hours at the ends from records.
func (s *Store) UsageFast(ctx context.Context, q UsageQuery) ([]UsageRow, error) {
	from, to := hourRange(q.Since, q.Until)
	if from >= to {
		return s.Usage(ctx, q) // less than one whole hour
	}
	var parts [][]UsageRow
	if !q.Since.IsZero() && q.Since.UnixNano() < from*hourNanos {
		head, err := s.Usage(ctx, UsageQuery{By: q.By, Since: q.Since, Until: time.Unix(0, from*hourNanos)})
		if err != nil {
			return nil, err
		}
		parts = append(parts, head)
	}
	if !q.Until.IsZero() && q.Until.UnixNano() > to*hourNanos {
		tail, err := s.Usage(ctx, UsageQuery{By: q.By, Since: time.Unix(0, to*hourNanos), Until: q.Until})
		if err != nil {
			return nil, err
		}
		parts = append(parts, tail)
	}
	mid, err := s.usageHours(ctx, q.By, from, to)
	if err != nil {
		return nil, err
	}
	pending, err := s.usage(ctx, UsageQuery{By: q.By, Since: hourTime(from), Until: hourTime(to)}, true) // not rolled up
	if err != nil {
		return nil, err
	}
	parts = append(parts, mid, pending)
	return mergeUsage(parts), nil
}

// hourTime is the start of hour h, or the zero time for the extreme hours
// hourRange gives unbounded ends.
func hourTime(h int64) time.Time {
	if h <= -1<<62 || h >= 1<<62 {
		return time.Time{}
	}
	return time.Unix(0, h*hourNanos)
}

// hourRange is the whole hours [from, to) inside [since, until), as hour
// numbers; unbounded ends give the extreme hours.
func hourRange(since, until time.Time) (from, to int64) {
	from, to = -1<<62, 1<<62
	if !since.IsZero() {
		n := since.UnixNano()
		from = n / hourNanos
		if n%hourNanos != 0 {
			from++
		}
	}
	if !until.IsZero() {
		to = until.UnixNano() / hourNanos
	}
	return from, to
}

// usageHours sums usage_hourly over the hours [from, to).
func (s *Store) usageHours(ctx context.Context, by []string, from, to int64) ([]UsageRow, error) {
	var keys, names []string
	for i, b := range by {
		expr, ok := rollupGroups[b]
		if !ok {
			return nil, fmt.Errorf("query usage: unknown group %q (want one of %s)", b, strings.Join(UsageGroups, ", "))
		}
		keys = append(keys, fmt.Sprintf("%s AS k%d", expr, i))
		names = append(names, fmt.Sprintf("k%d", i))
	}
	sums := []string{"sum(requests)", "sum(errors)", "sum(prompt)", "sum(completion)", "sum(total)",
		"sum(cached)", "sum(reasoning)", "sum(estimated)"}
	q := `SELECT ` + strings.Join(slices.Concat(keys, sums), ", ") + ` FROM usage_hourly WHERE hour >= ? AND hour < ?`
	if len(names) > 0 {
		q += ` GROUP BY ` + strings.Join(names, ", ")
	}
	rows, err := s.rdb.QueryContext(ctx, q, from, to)
	if err != nil {
		return nil, fmt.Errorf("query usage: %w", err)
	}
	defer rows.Close()
	var out []UsageRow
	for rows.Next() {
		u := UsageRow{Keys: make([]string, len(by))}
		var dest []any
		for i := range u.Keys {
			dest = append(dest, &u.Keys[i])
		}
		var req, errs, p, c, t, ca, r, e *int64 // NULL when no hour matched
		dest = append(dest, &req, &errs, &p, &c, &t, &ca, &r, &e)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("query usage: %w", err)
		}
		if req == nil || *req <= 0 {
			continue
		}
		u.Requests, u.Errors, u.PromptTokens, u.CompletionTokens = *req, *errs, *p, *c
		u.TotalTokens, u.CachedTokens, u.ReasoningTokens, u.Estimated = *t, *ca, *r, *e
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query usage: %w", err)
	}
	return out, nil
}

// mergeUsage adds up rows of the same keys and orders them by their keys,
// as Usage's ORDER BY does (TEXT in SQLite's BINARY collation compares as
// Go strings do).
func mergeUsage(parts [][]UsageRow) []UsageRow {
	byKey := map[string]*UsageRow{}
	var out []*UsageRow
	for _, part := range parts {
		for _, r := range part {
			k := strings.Join(r.Keys, "\x00")
			if m, ok := byKey[k]; ok {
				m.Requests += r.Requests
				m.Errors += r.Errors
				m.PromptTokens += r.PromptTokens
				m.CompletionTokens += r.CompletionTokens
				m.TotalTokens += r.TotalTokens
				m.CachedTokens += r.CachedTokens
				m.ReasoningTokens += r.ReasoningTokens
				m.Estimated += r.Estimated
				continue
			}
			r := r
			byKey[k] = &r
			out = append(out, &r)
		}
	}
	slices.SortFunc(out, func(a, b *UsageRow) int { return slices.Compare(a.Keys, b.Keys) })
	res := make([]UsageRow, 0, len(out))
	for _, r := range out {
		if r.Requests > 0 {
			res = append(res, *r)
		}
	}
	return res
}

// seriesHours is Series from usage_hourly, for a step of whole hours and a
// since on an hour.
func (s *Store) seriesHours(ctx context.Context, since, until time.Time, step time.Duration, out []Bucket) error {
	q := `SELECT (hour * ? - ?) / ?, sum(requests), sum(total), sum(errors), sum(throttles)
		FROM usage_hourly WHERE hour >= ? AND hour < ? GROUP BY 1`
	from, to := hourRange(since, until)
	rows, err := s.rdb.QueryContext(ctx, q, hourNanos, since.UnixNano(), int64(step), from, to)
	if err != nil {
		return fmt.Errorf("query series: %w", err)
	}
	return addBuckets(rows, out)
}
