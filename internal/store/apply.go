package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// errFull is record.ErrFull, the error of a write refused for size.
var errFull = record.ErrFull

// stmtID names one of the writer's prepared statements.
type stmtID int

const (
	sInsert stmtID = iota
	sKnown
	sStart
	sTake
	sOldest
	sDeleteTo
	sSetCursor
	sGetCursor
	sPrune
	sSavepoint
	sRelease
	sRollbackTo
	numStmts
)

// stmtSQL is the text of each writer statement, prepared once at Open.
var stmtSQL = [numStmts]string{
	// ON CONFLICT on the two keys (migration 8), not OR IGNORE: a record
	// already stored is skipped, but any other conflict (a seq taken by a
	// second writer process) is an error, never a silently lost record.
	sInsert: `INSERT INTO records (id, seq, kind, version, time, state, size, data, scope, principal, deployment, status)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) WHERE ` + notActivity + ` DO NOTHING
		ON CONFLICT (kind, scope, time, id) DO NOTHING`,
	sKnown: `SELECT 1 FROM records WHERE id = ? AND ` + notActivity,
	sStart: `INSERT INTO started (id, seq, kind, version, time, state, size, data, principal, deployment, status)
		VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
	sTake:     `DELETE FROM started WHERE id = ? RETURNING size`,
	sOldest:   `SELECT seq, size FROM records WHERE seq <= ? ORDER BY seq LIMIT 512`,
	sDeleteTo: `DELETE FROM records WHERE seq <= ?`,
	sSetCursor: `INSERT INTO cursors (sink, seq, updated) VALUES (?, ?, ?)
		ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, updated = excluded.updated`,
	sGetCursor: `SELECT seq FROM cursors WHERE sink = ?`,
	sPrune: `DELETE FROM records WHERE rowid IN (
		SELECT rowid FROM records WHERE seq <= ? AND time < ? LIMIT ?) RETURNING seq, size`,
	sSavepoint:  `SAVEPOINT request`,
	sRelease:    `RELEASE request`,
	sRollbackTo: `ROLLBACK TO request`,
}

// txn binds the writer's prepared statements to one transaction, lazily.
type txn struct {
	tx *sql.Tx
	w  *writer
	st [numStmts]*sql.Stmt
}

func (t *txn) stmt(ctx context.Context, id stmtID) *sql.Stmt {
	if t.st[id] == nil {
		t.st[id] = t.tx.StmtContext(ctx, t.w.prepared[id])
	}
	return t.st[id]
}

func (t *txn) exec(ctx context.Context, id stmtID, args ...any) (sql.Result, error) {
	return t.stmt(ctx, id).ExecContext(ctx, args...)
}

func (t *txn) query(ctx context.Context, id stmtID, args ...any) (*sql.Rows, error) {
	return t.stmt(ctx, id).QueryContext(ctx, args...)
}

// apply performs one request inside the batch's transaction.
func (w *writer) apply(ctx context.Context, t *txn, r *request) (int, error) {
	switch r.op {
	case opAppend:
		return w.appendRows(ctx, t, r.rows)
	case opBegin:
		return 0, w.begin(ctx, t, r.rows[0])
	case opFinish:
		return 0, w.finish(ctx, t, r.rows[0])
	case opMaterialize:
		return 0, w.materialize(ctx, t, time.Time{})
	case opRollUp:
		return w.rollUp(ctx, t)
	case opSetCursor:
		if _, err := t.exec(ctx, sSetCursor, r.sink, r.seq, w.now().UnixNano()); err != nil {
			return 0, fmt.Errorf("set cursor: %w", err)
		}
		return 0, nil
	case opPrune:
		return w.prune(ctx, t, r)
	case opAppendCheckpoint:
		return w.appendCheckpoint(ctx, t, r)
	case opExec:
		return 0, r.fn(ctx, t.tx, w.now().UnixNano())
	}
	return 0, fmt.Errorf("unknown write op %d", r.op)
}

// appendRows inserts rows as released records, skipping ids already stored.
func (w *writer) appendRows(ctx context.Context, t *txn, rows []row) (int, error) {
	floor := w.seq
	var added, delta int64
	for _, r := range rows {
		res, err := t.exec(ctx, sInsert, r.id, w.seq+1, r.kind, r.version, r.time, r.state, r.size(), r.data, r.scope,
			r.principal, r.deployment, r.status)
		if err != nil {
			return 0, fmt.Errorf("insert record %q: %w", r.id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return 0, fmt.Errorf("insert record %q: %w", r.id, err)
		} else if n == 1 {
			w.seq++
			added++
			delta += r.size()
			w.roll.add(r)
		}
	}
	w.c.records += added
	if err := w.fit(ctx, t, delta, floor); err != nil {
		return 0, err
	}
	return int(added), nil
}

// begin stores r as started (pending); an id already stored, started or
// released, is left alone.
func (w *writer) begin(ctx context.Context, t *txn, r row) error {
	if added, err := w.start(ctx, t, r); err != nil || !added {
		return err
	}
	return w.fit(ctx, t, r.size(), w.seq)
}

// start inserts r into started, unless its id is stored already, and
// counts it, but leaves its bytes (and the bound) to its caller.
func (w *writer) start(ctx context.Context, t *txn, r row) (bool, error) {
	r = r.withColumns()
	var one int
	switch err := t.stmt(ctx, sKnown).QueryRowContext(ctx, r.id).Scan(&one); {
	case err == nil:
		return false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return false, fmt.Errorf("look up record %q: %w", r.id, err)
	}
	res, err := t.exec(ctx, sStart, r.id, r.kind, r.version, r.time, r.state, r.size(), r.data,
		r.principal, r.deployment, r.status)
	if err != nil {
		return false, fmt.Errorf("insert record %q: %w", r.id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert record %q: %w", r.id, err)
	}
	if n == 0 {
		return false, nil
	}
	w.c.records++
	w.c.pending++
	return true, nil
}

// materialize copies the begin log's entries begun before cut (all for the
// zero time) into started, where queries see them; the commit releases
// them from the log. Their bytes only move, so the bound is not checked.
func (w *writer) materialize(ctx context.Context, t *txn, cut time.Time) error {
	if w.begins == nil {
		return nil
	}
	due, err := w.begins.due(cut)
	if err != nil {
		w.log.Error("calls in flight lost from the begin log", "err", err)
	}
	for _, r := range due {
		if w.moved[r.id] {
			continue
		}
		added, err := w.start(ctx, t, r)
		if err != nil {
			return err
		}
		if added {
			w.c.bytes += r.size()
		}
		w.c.credit += r.size()
		w.moved[r.id] = true
		w.released = append(w.released, r.id)
	}
	return nil
}

// finish moves a started record to records as r, released with the next
// seq; without one it stores r as a new released record, and does nothing
// if the id is already released, so it is idempotent.
func (w *writer) finish(ctx context.Context, t *txn, r row) error {
	if w.begins != nil && !w.moved[r.id] {
		if size, ok := w.begins.entry(r.id); ok { // begun in the log: stored as a new record
			w.c.credit += size
			w.moved[r.id] = true
			w.released = append(w.released, r.id)
			_, err := w.appendRows(ctx, t, []row{r})
			return err
		}
	}
	if w.c.pending == 0 { // nothing started (standard audit): no table to look in
		_, err := w.appendRows(ctx, t, []row{r})
		return err
	}
	var old int64
	switch err := t.stmt(ctx, sTake).QueryRowContext(ctx, r.id).Scan(&old); {
	case errors.Is(err, sql.ErrNoRows):
		_, err := w.appendRows(ctx, t, []row{r})
		return err
	case err != nil:
		return fmt.Errorf("take started record %q: %w", r.id, err)
	}
	w.c.records--
	w.c.pending--
	w.c.bytes -= old
	_, err := w.appendRows(ctx, t, []row{r})
	return err
}

// fit accounts for delta more bytes under MaxBytes. Over the bound it
// returns record.ErrFull under the reject policy; under drop_oldest it first
// deletes the oldest released records with seq <= floor (those committed
// before this request), and returns record.ErrFull only if they are not
// enough. Pending records are never dropped.
func (w *writer) fit(ctx context.Context, t *txn, delta, floor int64) error {
	used := w.used()
	if w.maxBytes == 0 || delta <= 0 || used+delta <= w.maxBytes {
		w.c.bytes += delta
		return nil
	}
	if !w.dropOldest {
		return fmt.Errorf("need %d bytes with %d of %d in use: %w", delta, used, w.maxBytes, errFull)
	}
	need := used + delta - w.maxBytes
	freed, n, err := w.drop(ctx, t, need, floor)
	if err != nil {
		return err
	}
	if freed < need {
		return fmt.Errorf("need %d bytes with %d of %d in use, only %d droppable: %w",
			delta, used, w.maxBytes, freed, errFull)
	}
	w.c.bytes += delta - freed
	w.c.records -= n
	w.c.dropped += n
	return nil
}

// used is the bytes MaxBytes bounds: the database's and the begin log's,
// each counted once.
func (w *writer) used() int64 {
	u := w.c.bytes - w.c.credit
	if w.begins != nil {
		u += w.begins.bytes.Load()
	}
	return u
}

// drop deletes the oldest released records with seq <= floor until at
// least need bytes are freed or none are left.
func (w *writer) drop(ctx context.Context, t *txn, need, floor int64) (freed, n int64, err error) {
	for freed < need {
		rows, err := t.query(ctx, sOldest, floor)
		if err != nil {
			return 0, 0, fmt.Errorf("find oldest records: %w", err)
		}
		last := int64(-1)
		for rows.Next() && freed < need {
			var seq, size int64
			if err := rows.Scan(&seq, &size); err != nil {
				rows.Close()
				return 0, 0, fmt.Errorf("find oldest records: %w", err)
			}
			freed += size
			n++
			last = seq
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return 0, 0, fmt.Errorf("find oldest records: %w", err)
		}
		if last < 0 {
			break
		}
		if _, err := t.exec(ctx, sDeleteTo, last); err != nil {
			return 0, 0, fmt.Errorf("drop oldest records: %w", err)
		}
		w.roll.deleted(last)
	}
	return freed, n, nil
}

// prune deletes up to r.limit released records older than r.cut that every
// sink in r.sinks has (seq <= the least of their cursors).
func (w *writer) prune(ctx context.Context, t *txn, r *request) (int, error) {
	upTo := int64(math.MaxInt64)
	for _, sink := range r.sinks {
		var c int64
		err := t.stmt(ctx, sGetCursor).QueryRowContext(ctx, sink).Scan(&c)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("read cursor of sink %q: %w", sink, err)
		}
		upTo = min(upTo, c)
	}
	rows, err := t.query(ctx, sPrune, upTo, r.cut, r.limit)
	if err != nil {
		return 0, fmt.Errorf("delete old records: %w", err)
	}
	var n, freed, last int64
	for rows.Next() {
		var seq, size int64
		if err := rows.Scan(&seq, &size); err != nil {
			rows.Close()
			return 0, fmt.Errorf("delete old records: %w", err)
		}
		n++
		freed += size
		last = max(last, seq)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, fmt.Errorf("delete old records: %w", err)
	}
	w.c.records -= n
	w.c.bytes -= freed
	w.roll.deleted(last)
	return int(n), nil
}
