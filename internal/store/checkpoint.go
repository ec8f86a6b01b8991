package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// opAppendCheckpoint appends rows (as opAppend) and sets the checkpoint of
// request.sink (the scope) to request.seq (unix nanoseconds) in the same
// transaction. It is declared here, not in writer.go's list, so that the
// collector's op stays in one file; its value cannot clash with iota's.
const opAppendCheckpoint opKind = 100

// Checkpoint returns the collector checkpoint of scope: the end of the last
// window whose events are all committed. ok is false if the scope has none.
func (s *Store) Checkpoint(ctx context.Context, scope string) (t time.Time, ok bool, err error) {
	var until int64
	err = s.rdb.QueryRowContext(ctx, `SELECT until FROM checkpoints WHERE scope = ?`, scope).Scan(&until)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return time.Time{}, false, nil
	case err != nil:
		return time.Time{}, false, fmt.Errorf("read checkpoint of %q: %w", scope, err)
	}
	return time.Unix(0, until).UTC(), true, nil
}

// AppendWithCheckpoint commits recs as Append does and sets scope's
// checkpoint to until in the same transaction: either both are committed or
// neither is. recs may be empty. It returns how many records were new. The
// ctx rule of Append applies.
func (s *Store) AppendWithCheckpoint(ctx context.Context, recs []record.Record, scope string, until time.Time) (int, error) {
	if scope == "" {
		return 0, errors.New("set checkpoint: empty scope")
	}
	if until.Before(minTime) || until.After(maxTime) {
		return 0, fmt.Errorf("set checkpoint of %q: time %s out of range", scope, until.Format(time.RFC3339))
	}
	rows, size, err := newRows(recs)
	if err != nil {
		return 0, fmt.Errorf("append records: %w", err)
	}
	n, err := s.do(ctx, &request{op: opAppendCheckpoint, rows: rows, bytes: size, sink: scope, seq: until.UnixNano()})
	if err != nil {
		return 0, fmt.Errorf("append records with checkpoint of %q: %w", scope, err)
	}
	return n, nil
}

// appendCheckpoint is opAppendCheckpoint inside the batch's transaction.
func (w *writer) appendCheckpoint(ctx context.Context, t *txn, r *request) (int, error) {
	n, err := w.appendRows(ctx, t, r.rows)
	if err != nil {
		return 0, err
	}
	const q = `INSERT INTO checkpoints (scope, until, updated) VALUES (?, ?, ?)
		ON CONFLICT (scope) DO UPDATE SET until = excluded.until, updated = excluded.updated`
	if _, err := t.tx.ExecContext(ctx, q, r.sink, r.seq, w.now().UnixNano()); err != nil {
		return 0, fmt.Errorf("set checkpoint: %w", err)
	}
	return n, nil
}
