package store

import (
	"container/heap"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/tapline/tapline/internal/record"
)

// activity.go reads activity_log records in time order. They have no index
// by time alone: records_kind_scope_time orders them by scope first, then
// time and id (migration 8), which keeps a collector's inserts local. A
// listing across scopes therefore merges one ordered run per scope: each
// run reads its scope's records a batch at a time, in the index's order.

// activityBuffered bounds the records the runs of one walk hold at once:
// a run's batch is this divided among the scopes (at least 4, at most
// 256), about 40 MB of 4 KB events.
const activityBuffered = 8192

// activityQuery is one walk over activity_log records.
type activityQuery struct {
	conds []string // SQL conditions besides the kind and scope
	args  []any    // their arguments
	// scope, if set, keeps only the scopes it returns true for (the scope
	// column's value, scopeOf).
	scope func(string) bool
	desc  bool    // newest first; else oldest first
	after *Cursor // if set, start strictly after it in the walk's order
	limit int     // at most this many records; 0: all
}

// walkActivity calls fn with the activity_log records q selects, in (time,
// id) order, inside one read transaction. It stops at the first error fn
// returns and returns that error as is.
func (s *Store) walkActivity(ctx context.Context, q activityQuery, fn func(record.Record) error) (err error) {
	if err := s.showBegun(ctx); err != nil {
		return err
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer func() {
		// fn's error stays as it is: a failed rollback of a read matters
		// only when nothing else went wrong.
		if rbErr := tx.Rollback(); rbErr != nil && err == nil {
			err = rbErr
		}
	}()
	scopes, err := activityScopes(ctx, tx)
	if err != nil {
		return err
	}
	if q.scope != nil {
		scopes = slices.DeleteFunc(scopes, func(sc string) bool { return !q.scope(sc) })
	}
	order, cmp := "time, id", ">"
	if q.desc {
		order, cmp = "time DESC, id DESC", "<"
	}
	cond := ""
	if len(q.conds) > 0 {
		cond = " AND " + strings.Join(q.conds, " AND ")
	}
	more, err := tx.PrepareContext(ctx, `SELECT `+recordColumns+` FROM records
		WHERE `+activityKind+` AND scope = ?`+cond+` AND (time, id) `+cmp+` (?, ?)
		ORDER BY `+order+` LIMIT ?`)
	if err != nil {
		return err
	}
	defer more.Close()
	// The first batch of a walk from the start has no keyset: a bound
	// that every key passes would do, but not in both directions.
	first, err := tx.PrepareContext(ctx, `SELECT `+recordColumns+` FROM records
		WHERE `+activityKind+` AND scope = ?`+cond+` ORDER BY `+order+` LIMIT ?`)
	if err != nil {
		return err
	}
	defer first.Close()

	batch := min(256, max(4, activityBuffered/max(1, len(scopes))))
	if q.limit > 0 {
		batch = min(batch, q.limit)
	}
	h := &runHeap{desc: q.desc}
	for _, sc := range scopes {
		r := &scopeRun{scope: sc}
		if q.after != nil {
			r.last = &Cursor{Time: q.after.Time, ID: q.after.ID}
		}
		if err := r.fill(ctx, more, first, q.args, batch); err != nil {
			return err
		}
		if len(r.recs) > 0 {
			h.runs = append(h.runs, r)
		}
	}
	heap.Init(h)
	for n := 0; h.Len() > 0 && (q.limit == 0 || n < q.limit); n++ {
		r := h.runs[0]
		rec := r.recs[0]
		r.recs[0] = record.Record{} // the caller may keep rec; the run does not
		r.recs = r.recs[1:]
		if err := fn(rec); err != nil {
			return err
		}
		if len(r.recs) == 0 && !r.done {
			if err := r.fill(ctx, more, first, q.args, batch); err != nil {
				return err
			}
		}
		if len(r.recs) == 0 {
			heap.Pop(h)
		} else {
			heap.Fix(h, 0)
		}
	}
	return nil
}

// scopeMatch is activityQuery.scope for a scope id (ASCII case ignored) or
// "tenant", as ActivityFilter and Filter name one; nil for "" (every scope).
func scopeMatch(want string) func(string) bool {
	if want == "" {
		return nil
	}
	return func(scope string) bool {
		kind, id, _ := strings.Cut(scope, ":")
		return strings.EqualFold(id, want) || (strings.EqualFold(want, record.ScopeTenant) && kind == record.ScopeTenant)
	}
}

// activityScopes lists the scopes of the stored activity_log records, in
// order, with one index seek each (a loose index scan).
func activityScopes(ctx context.Context, tx *sql.Tx) ([]string, error) {
	return queryStrings(ctx, tx, "list activity scopes", `WITH RECURSIVE s(scope) AS (
			SELECT min(scope) FROM records WHERE `+activityKind+`
			UNION ALL
			SELECT (SELECT min(scope) FROM records WHERE `+activityKind+` AND scope > s.scope)
			FROM s WHERE s.scope IS NOT NULL)
		SELECT scope FROM s WHERE scope IS NOT NULL`)
}

// queryStrings runs q, whose rows are one text column, and returns them in
// order; what says what it does in its errors.
func queryStrings(ctx context.Context, db interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, what, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// scopeRun is one scope's records in the walk's order, read a batch at a
// time.
type scopeRun struct {
	scope string
	recs  []record.Record // read, not yet taken
	last  *Cursor         // the last record read (or the walk's start)
	done  bool            // every record is read
}

// fill reads the run's next batch of records: first from the start, more after r.last.
func (r *scopeRun) fill(ctx context.Context, more, first *sql.Stmt, args []any, batch int) error {
	var rows *sql.Rows
	var err error
	if r.last == nil {
		rows, err = first.QueryContext(ctx, append(append([]any{r.scope}, args...), batch)...)
	} else {
		rows, err = more.QueryContext(ctx, append(append([]any{r.scope}, args...), r.last.Time.UnixNano(), r.last.ID, batch)...)
	}
	if err != nil {
		return fmt.Errorf("read activity of scope %q: %w", r.scope, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return fmt.Errorf("read activity of scope %q: %w", r.scope, err)
		}
		r.recs = append(r.recs, rec)
		n++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read activity of scope %q: %w", r.scope, err)
	}
	if n > 0 {
		last := r.recs[len(r.recs)-1]
		r.last = &Cursor{Time: last.Time, ID: last.ID}
	}
	r.done = n < batch
	return nil
}

// runHeap orders scope runs by their next key, in the walk's order.
type runHeap struct {
	runs []*scopeRun
	desc bool
}

func (h *runHeap) Len() int { return len(h.runs) }

func (h *runHeap) Less(i, j int) bool {
	a, b := h.runs[i].recs[0], h.runs[j].recs[0]
	if h.desc {
		a, b = b, a
	}
	return a.Time.Before(b.Time) || (a.Time.Equal(b.Time) && a.ID < b.ID)
}

func (h *runHeap) Swap(i, j int) { h.runs[i], h.runs[j] = h.runs[j], h.runs[i] }

func (h *runHeap) Push(x any) { h.runs = append(h.runs, x.(*scopeRun)) }

func (h *runHeap) Pop() any {
	r := h.runs[len(h.runs)-1]
	h.runs = h.runs[:len(h.runs)-1]
	return r
}
