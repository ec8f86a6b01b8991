package store

import (
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// bulk returns n activity records of about size bytes each, ids prefix-i.
func bulk(prefix string, n, size int) []record.Record {
	pad := strings.Repeat("x", size)
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = rec(fmt.Sprintf("%s-%d", prefix, i), t0.Add(time.Duration(i)*time.Second), fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad))
	}
	return recs
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestBackgroundCheckpoint commits more than walCopyBytes and proves the
// copier, not the writer, moved the pages into the database file: the
// writer's own automatic checkpoint would only start at 8192 frames (32
// MiB), far beyond what this writes. Every record reads back after a
// reopen.
func TestBackgroundCheckpoint(t *testing.T) {
	cfg := testConfig(t)
	s := openStore(t, cfg)
	const n, size = 1500, 4000 // 6 MB
	mustAppend(t, s, bulk("a", n, size)...)
	// The poke follows the commit; the copy runs on its own time, and a
	// pass that finds the database busy copies less or nothing (seen once
	// on a loaded machine), so a pass that left the file short is poked
	// again, as the next 4 MiB of records would.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		mustAppend(t, s, bulk("b", 1, 10)...) // publishes the stats
		st, _ := s.Stats(t.Context())
		got := fileSize(t, cfg.Path)
		if st.Checkpoints > 0 && got >= n*size {
			break
		}
		if st.Checkpoints > 0 {
			s.w.wal.poke()
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after writing 6 MB: %d background checkpoints, database file %d bytes, want at least %d",
				st.Checkpoints, got, n*size)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if got := len(allRecords(t, s, Filter{})); got != n+1 { // "b-0" once: the rest were duplicates
		t.Errorf("reopened store holds %d records, want %d", got, n+1)
	}
}

// TestLongWALIsTruncated: once the copier reports a WAL of walMaxFrames,
// the writer's next commit empties it.
func TestLongWALIsTruncated(t *testing.T) {
	cfg := testConfig(t)
	s := openStore(t, cfg)
	mustAppend(t, s, bulk("a", 200, 4000)...)
	if got := fileSize(t, cfg.Path+"-wal"); got < 200*4000 {
		t.Fatalf("WAL holds %d bytes after 800 kB of records, want at least that", got)
	}
	s.w.wal.frames.Store(walMaxFrames) // as a copier falling behind reports
	mustAppend(t, s, bulk("b", 1, 10)...)
	if got := fileSize(t, cfg.Path+"-wal"); got != 0 {
		t.Errorf("WAL holds %d bytes after a commit with %d frames reported, want 0 (truncated)", got, walMaxFrames)
	}
	if got := len(allRecords(t, s, Filter{})); got != 201 {
		t.Errorf("store holds %d records, want 201", got)
	}
}

// TestLongWALWithOldReader: a reader holding an old snapshot keeps the WAL
// from being emptied; the writer tries once per report, not on every
// commit, and loses nothing.
func TestLongWALWithOldReader(t *testing.T) {
	cfg := testConfig(t)
	s := openStore(t, cfg)
	mustAppend(t, s, bulk("a", 200, 4000)...)
	tx, err := s.rdb.BeginTx(t.Context(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM records`).Scan(&n); err != nil || n != 200 {
		t.Fatalf("reader sees %d records, %v", n, err)
	}
	mustAppend(t, s, bulk("b", 1, 10)...) // the reader's snapshot is now old
	s.w.wal.frames.Store(walMaxFrames)
	mustAppend(t, s, bulk("c", 1, 10)...)
	if got := fileSize(t, cfg.Path+"-wal"); got == 0 {
		t.Error("WAL emptied under a reader of an older snapshot")
	}
	if got := s.w.wal.frames.Load(); got != 0 {
		t.Errorf("the long WAL is still reported (%d frames): every commit would try again", got)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := len(allRecords(t, s, Filter{})); got != 202 {
		t.Errorf("store holds %d records, want 202", got)
	}
}
