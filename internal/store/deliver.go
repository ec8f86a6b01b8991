package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// pruneBatch bounds the rows one Prune transaction deletes, so that a large
// prune does not hold up appends for long.
const pruneBatch = 5000

// Stored is a released record with its delivery sequence number.
type Stored struct {
	Seq    int64
	Record record.Record
}

// ReadAfter returns up to limit released records with seq > afterSeq,
// ordered by seq. Pending records are not returned. Seqs increase in commit
// order, so a reader that resumes after the last seq it saw misses nothing.
// limit must be positive.
func (s *Store) ReadAfter(ctx context.Context, afterSeq int64, limit int) ([]Stored, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read records after %d: limit %d is not positive", afterSeq, limit)
	}
	const q = `SELECT seq, ` + recordColumns + ` FROM records
		WHERE seq > ? ORDER BY seq LIMIT ?`
	rows, err := s.rdb.QueryContext(ctx, q, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read records after %d: %w", afterSeq, err)
	}
	defer rows.Close()
	var out []Stored
	for rows.Next() {
		var st Stored
		var err error
		if st.Record, err = scanRecord(rows, &st.Seq); err != nil {
			return nil, fmt.Errorf("read records after %d: %w", afterSeq, err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read records after %d: %w", afterSeq, err)
	}
	return out, nil
}

// Cursor returns the last seq sink has confirmed, 0 if it has none.
func (s *Store) Cursor(ctx context.Context, sink string) (int64, error) {
	var seq int64
	err := s.rdb.QueryRowContext(ctx, `SELECT seq FROM cursors WHERE sink = ?`, sink).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cursor of sink %q: %w", sink, err)
	}
	return seq, nil
}

// SetCursor commits seq as the last record sink has confirmed. It stores
// what it is given, also a smaller seq (a replay); the shipper calls it only
// after the destination accepted the batch (DESIGN.md §6).
func (s *Store) SetCursor(ctx context.Context, sink string, seq int64) error {
	if sink == "" {
		return errors.New("set cursor: empty sink name")
	}
	if _, err := s.do(ctx, &request{op: opSetCursor, sink: sink, seq: seq}); err != nil {
		return fmt.Errorf("set cursor of sink %q: %w", sink, err)
	}
	return nil
}

// Prune deletes the released records whose time is before now minus
// Config.Retention and that every sink in sinks has confirmed (seq at most
// the least of their cursors; a sink without a cursor has confirmed
// nothing). With no sinks there is no cursor bound. Pending records are
// never pruned. With Retention 0 nothing is pruned. It returns how many
// records it deleted, in transactions of at most 5000 rows so that appends
// are not held up.
func (s *Store) Prune(ctx context.Context, now time.Time, sinks []string) (int, error) {
	if s.w == nil {
		return 0, fmt.Errorf("prune records: %w", ErrReadOnly)
	}
	if s.cfg.Retention == 0 {
		return 0, nil
	}
	cut := now.Add(-s.cfg.Retention).UnixNano()
	sinks = append([]string(nil), sinks...)
	total := 0
	for {
		n, err := s.do(ctx, &request{op: opPrune, sinks: sinks, cut: cut, limit: pruneBatch})
		total += n
		if err != nil {
			return total, fmt.Errorf("prune records: %w", err)
		}
		if n < pruneBatch {
			return total, nil
		}
	}
}
