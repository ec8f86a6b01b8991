package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// DeadLetter is a record that a sink's destination refused as invalid,
// kept with the reason so that an operator can see it, fix the cause and
// replay it (DESIGN.md §6).
type DeadLetter struct {
	Sink   string
	Seq    int64
	Record record.Record
	Reason string
	At     time.Time // when it was dead-lettered
}

// maxReasonBytes bounds a stored reason or last error: they come from
// remote services and are shown in one table cell.
const maxReasonBytes = 1024

// Confirm commits, in one transaction, the dead letters of a delivered
// batch and sink's cursor at seq, and clears the sink's last error: the
// shipper calls it once the destination accepted every other record of the
// batch. A dead letter already stored for the sink under the same id is
// replaced (a batch replayed after a crash).
func (s *Store) Confirm(ctx context.Context, sink string, seq int64, dead []DeadLetter) error {
	if sink == "" {
		return errors.New("confirm batch: empty sink name")
	}
	fn := func(ctx context.Context, tx *sql.Tx, now int64) error {
		for _, d := range dead {
			r := d.Record
			_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO dead_letters
				(sink, id, seq, kind, version, time, data, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				sink, r.ID, d.Seq, string(r.Kind), r.Version, r.Time.UnixNano(), []byte(r.Data),
				clip(d.Reason), now)
			if err != nil {
				return fmt.Errorf("insert dead letter %q: %w", r.ID, err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO cursors (sink, seq, updated) VALUES (?, ?, ?)
			ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, updated = excluded.updated,
			last_error = NULL, last_error_at = NULL`, sink, seq, now)
		if err != nil {
			return fmt.Errorf("set cursor: %w", err)
		}
		return nil
	}
	if _, err := s.do(ctx, &request{op: opExec, fn: fn}); err != nil {
		return fmt.Errorf("confirm batch of sink %q: %w", sink, err)
	}
	return nil
}

// SinkFailed records a failed attempt of sink in one transaction: msg
// becomes its last error, shown by `tapline query sinks` and the dashboard
// (Confirm clears it), and retries is added to its retry count, which
// nothing clears. The shipper calls it after each failed write with
// retries 1 (more if an earlier call failed), and with 0 for a failure
// that is not a write. msg must hold no secret (sinks' errors never do).
func (s *Store) SinkFailed(ctx context.Context, sink, msg string, retries int64) error {
	if retries < 0 {
		return fmt.Errorf("record failure of sink %q: negative retries %d", sink, retries)
	}
	fn := func(ctx context.Context, tx *sql.Tx, now int64) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO cursors (sink, seq, updated, last_error, last_error_at, retries)
			VALUES (?, 0, ?, ?, ?, ?) ON CONFLICT (sink) DO UPDATE SET
			last_error = excluded.last_error, last_error_at = excluded.last_error_at,
			retries = retries + excluded.retries`,
			sink, now, clip(msg), now, retries)
		return err
	}
	if _, err := s.do(ctx, &request{op: opExec, fn: fn}); err != nil {
		return fmt.Errorf("record failure of sink %q: %w", sink, err)
	}
	return nil
}

// SinkState is what the store knows of one sink's delivery.
type SinkState struct {
	Sink        string
	Cursor      int64     // last confirmed seq, 0 if none
	Confirmed   time.Time // when the cursor last moved; zero if never
	Lag         int64     // released records after the cursor
	Oldest      time.Time // record time of the first record after the cursor; zero if none
	LastError   string
	LastErrorAt time.Time
	Retries     int64 // failed writes, each retried, since the sink's first
	DeadLetters int64
}

// SinkStates returns the state of each named sink, in the order given; a
// sink the store has never seen has a zero state with its lag.
func (s *Store) SinkStates(ctx context.Context, sinks []string) ([]SinkState, error) {
	var last int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM records`).Scan(&last); err != nil {
		return nil, fmt.Errorf("read sink states: %w", err)
	}
	out := make([]SinkState, 0, len(sinks))
	for _, name := range sinks {
		st := SinkState{Sink: name}
		var updated, errAt sql.NullInt64
		var lastErr sql.NullString
		err := s.rdb.QueryRowContext(ctx, `SELECT seq, updated, last_error, last_error_at, retries FROM cursors WHERE sink = ?`,
			name).Scan(&st.Cursor, &updated, &lastErr, &errAt, &st.Retries)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("read state of sink %q: %w", name, err)
		}
		if st.Cursor > 0 && updated.Valid {
			st.Confirmed = time.Unix(0, updated.Int64).UTC()
		}
		st.LastError = lastErr.String
		if errAt.Valid {
			st.LastErrorAt = time.Unix(0, errAt.Int64).UTC()
		}
		if st.Cursor < last {
			// Pruned or dropped seqs leave gaps; count what is there.
			var oldest sql.NullInt64
			err := s.rdb.QueryRowContext(ctx, `SELECT count(*), min(time) FROM records WHERE seq > ?`,
				st.Cursor).Scan(&st.Lag, &oldest)
			if err != nil {
				return nil, fmt.Errorf("read lag of sink %q: %w", name, err)
			}
			if oldest.Valid {
				st.Oldest = time.Unix(0, oldest.Int64).UTC()
			}
		}
		err = s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM dead_letters WHERE sink = ?`, name).Scan(&st.DeadLetters)
		if err != nil {
			return nil, fmt.Errorf("count dead letters of sink %q: %w", name, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// DeadLetters calls fn with each dead letter of sink (every sink if sink is
// empty), oldest first, until fn returns an error.
func (s *Store) DeadLetters(ctx context.Context, sink string, fn func(DeadLetter) error) error {
	rows, err := s.rdb.QueryContext(ctx, `SELECT sink, id, seq, kind, version, time, data, reason, at
		FROM dead_letters WHERE ? = '' OR sink = ? ORDER BY at, sink, seq`, sink, sink)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d DeadLetter
		var kind string
		var t, at int64
		var data []byte
		if err := rows.Scan(&d.Sink, &d.Record.ID, &d.Seq, &kind, &d.Record.Version, &t, &data, &d.Reason, &at); err != nil {
			return fmt.Errorf("read dead letters: %w", err)
		}
		d.Record.Kind, d.Record.Time, d.Record.Data = record.Kind(kind), time.Unix(0, t).UTC(), data
		d.At = time.Unix(0, at).UTC()
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	return nil
}

// clip cuts s to maxReasonBytes on a rune boundary.
func clip(s string) string {
	if len(s) <= maxReasonBytes {
		return s
	}
	cut := maxReasonBytes
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// KnownSinks returns the names of the sinks the store has a cursor or dead
// letters for, sorted.
func (s *Store) KnownSinks(ctx context.Context) ([]string, error) {
	return queryStrings(ctx, s.rdb, "list sinks", `SELECT sink FROM cursors UNION SELECT sink FROM dead_letters ORDER BY 1`)
}
