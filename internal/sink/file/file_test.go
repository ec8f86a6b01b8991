package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
)

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// files returns the .jsonl files in dir, in name order.
func files(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// delivered decodes every line of every .jsonl file in dir, in name order.
func delivered(t *testing.T, dir string) []record.Record {
	t.Helper()
	var recs []record.Record
	for _, name := range files(t, dir) {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var r record.Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: bad line %.100q: %v", name, sc.Bytes(), err)
			}
			recs = append(recs, r)
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f.Close()
	}
	return recs
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinktest.Target {
			dir := filepath.Join(t.TempDir(), "out") // also proves New creates it
			s := newSink(t, Config{Dir: dir})
			t.Cleanup(func() { s.Close() })
			return sinktest.Target{
				Sink:      s,
				Delivered: func(t *testing.T) []record.Record { return delivered(t, dir) },
			}
		},
	})
}

func TestNewCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	newSink(t, Config{Dir: dir})
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("dir not created: %v", err)
	}
	if perm := fi.Mode().Perm(); perm&^0o750 != 0 {
		t.Errorf("dir mode %o, want at most 0750", perm)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"empty dir":          {},
		"negative max bytes": {Dir: t.TempDir(), MaxBytes: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg, nil); err == nil {
				t.Errorf("New(%+v) succeeded", cfg)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 2000
	s := newSink(t, Config{Dir: dir, MaxBytes: maxBytes})
	var want []record.Record
	for b := range 20 {
		recs := sinktest.Records(b*3, 3)
		if err := s.Write(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		want = append(want, recs...)
	}
	// One batch on its own is bigger than maxBytes: it gets a file of its own.
	big := sinktest.Records(100, 2)
	big[0].Data = json.RawMessage(`{"blob":"` + strings.Repeat("x", 3000) + `"}`)
	if err := s.Write(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	want = append(want, big...)
	tail := sinktest.Records(200, 1)
	if err := s.Write(context.Background(), tail); err != nil {
		t.Fatal(err)
	}
	want = append(want, tail...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	names := files(t, dir)
	if len(names) < 4 {
		t.Errorf("got %d files, want several", len(names))
	}
	oversized := 0
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(data, []byte("\n")) {
			t.Errorf("%s does not end with a complete line", name)
		}
		if len(data) > maxBytes {
			oversized++
			if n := bytes.Count(data, []byte("\n")); n != len(big) {
				t.Errorf("%s is over max_bytes with %d lines; only the big batch may be", name, n)
			}
		}
	}
	if oversized != 1 {
		t.Errorf("%d files over max_bytes, want 1 (the big batch)", oversized)
	}
	if d := sinktest.Diff(delivered(t, dir), want); d != "" {
		t.Errorf("records across files differ:\n%s", d)
	}
}

func TestNamesSortInWriteOrder(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Dir: dir, MaxBytes: 1})
	// A clock that goes backwards must not make a later file sort first.
	clock := []time.Time{
		time.Date(2026, 11, 22, 21, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 22, 20, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 22, 22, 0, 0, 0, time.UTC),
	}
	s.now = func() time.Time { t := clock[0]; clock = clock[1:]; return t }
	for i := range 3 {
		if err := s.Write(context.Background(), sinktest.Records(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	got := make([]string, 0, 3)
	for _, name := range files(t, dir) {
		got = append(got, filepath.Base(name))
	}
	want := []string{
		"tapline-20261122T210000-000000.jsonl",
		"tapline-20261122T210000-000001.jsonl",
		"tapline-20261122T220000-000002.jsonl",
	}
	if !slices.Equal(got, want) {
		t.Errorf("files = %q, want %q", got, want)
	}
	if d := sinktest.Diff(delivered(t, dir), sinktest.Records(0, 3)); d != "" {
		t.Errorf("order across files:\n%s", d)
	}
}

func TestRestartContinuesNumbering(t *testing.T) {
	dir := t.TempDir()
	s1 := newSink(t, Config{Dir: dir, MaxBytes: 1})
	first := sinktest.Records(0, 2)
	for i := range first {
		if err := s1.Write(context.Background(), first[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	s1.Close()
	before := map[string][]byte{}
	for _, name := range files(t, dir) {
		before[name], _ = os.ReadFile(name)
	}
	// A file that is not ours is ignored.
	os.WriteFile(filepath.Join(dir, "other.txt"), []byte("x"), 0o600)

	s2 := newSink(t, Config{Dir: dir})
	if len(files(t, dir)) != 2 {
		t.Fatalf("New created a file before any write")
	}
	second := sinktest.Records(2, 2)
	if err := s2.Write(context.Background(), second); err != nil {
		t.Fatal(err)
	}
	s2.Close()

	names := files(t, dir)
	if len(names) != 3 {
		t.Fatalf("got %d files after restart, want 3: %q", len(names), names)
	}
	for name, data := range before {
		now, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(now, data) {
			t.Errorf("%s changed after restart (err %v)", name, err)
		}
	}
	if !strings.HasSuffix(names[2], "-000002.jsonl") {
		t.Errorf("new file %s does not continue numbering at 000002", names[2])
	}
	if d := sinktest.Diff(delivered(t, dir), append(first, second...)); d != "" {
		t.Errorf("records after restart:\n%s", d)
	}
}

func TestSyncBeforeReturn(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Dir: dir})
	var synced []int64 // file size at each sync
	s.sync = func(f *os.File) error {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		synced = append(synced, fi.Size())
		return f.Sync()
	}
	for i := range 3 {
		if err := s.Write(context.Background(), sinktest.Records(i, 1)); err != nil {
			t.Fatal(err)
		}
		if len(synced) != i+1 {
			t.Fatalf("after write %d: %d syncs, want %d", i, len(synced), i+1)
		}
		fi, _ := os.Stat(files(t, dir)[0])
		if synced[i] != fi.Size() {
			t.Errorf("synced at %d bytes, file has %d", synced[i], fi.Size())
		}
	}
	if err := s.Write(context.Background(), nil); err != nil || len(synced) != 3 {
		t.Errorf("empty write synced or failed: %v", err)
	}
	s.Close()
}

func TestSyncFailureIsRetryableAndUndone(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Dir: dir})
	defer s.Close()
	ok := sinktest.Records(0, 2)
	if err := s.Write(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		err       error
		retryable bool
		after     time.Duration
	}{
		{"io error", syscall.EIO, true, 0},
		{"disk full", syscall.ENOSPC, true, fullDiskRetry},
		{"quota", syscall.EDQUOT, true, fullDiskRetry},
		{"permission", syscall.EACCES, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.sync = func(*os.File) error { return &os.PathError{Op: "sync", Path: "x", Err: tt.err} }
			err := s.Write(context.Background(), sinktest.Records(50, 2))
			if !errors.Is(err, tt.err) {
				t.Fatalf("Write error = %v, want it to wrap %v", err, tt.err)
			}
			after, retry := sink.Retryable(err)
			if retry != tt.retryable || after != tt.after {
				t.Errorf("Retryable = %v, %v; want %v, %v", after, retry, tt.after, tt.retryable)
			}
		})
	}
	s.sync = (*os.File).Sync
	more := sinktest.Records(2, 1)
	if err := s.Write(context.Background(), more); err != nil {
		t.Fatal(err)
	}
	// Failed batches were truncated away: no torn or unconfirmed lines.
	if d := sinktest.Diff(delivered(t, dir), append(ok, more...)); d != "" {
		t.Errorf("after failed writes:\n%s", d)
	}
}

func TestInvalidRecord(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Dir: dir})
	defer s.Close()
	recs := sinktest.Records(0, 2)
	recs[1].Data = json.RawMessage(`{"not json`)
	err := s.Write(context.Background(), recs)
	var inv *sink.InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("Write error = %v, want *sink.InvalidError", err)
	}
	if _, ok := sink.Retryable(err); ok {
		t.Errorf("invalid batch marked retryable")
	}
	if got := delivered(t, dir); len(got) != 0 {
		t.Errorf("invalid batch wrote %d records", len(got))
	}
}

func TestCanceledContext(t *testing.T) {
	s := newSink(t, Config{Dir: t.TempDir()})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Write(ctx, sinktest.Records(0, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with canceled ctx = %v", err)
	}
}

func TestCheck(t *testing.T) {
	t.Run("missing dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "gone")
		s := newSink(t, Config{Dir: dir})
		defer s.Close()
		os.Remove(dir)
		if err := s.Check(context.Background()); err == nil {
			t.Errorf("Check on a missing dir succeeded")
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		dir := t.TempDir()
		s := newSink(t, Config{Dir: dir})
		defer s.Close()
		os.Remove(dir)
		os.WriteFile(dir, []byte("x"), 0o600)
		if err := s.Check(context.Background()); err == nil {
			t.Errorf("Check on a regular file succeeded")
		}
	})
	t.Run("read-only dir", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("running as root: root may write to a 0500 directory, so access(2) cannot fail")
		}
		dir := t.TempDir()
		s := newSink(t, Config{Dir: dir})
		defer s.Close()
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		err := s.Check(context.Background())
		if !errors.Is(err, os.ErrPermission) {
			t.Errorf("Check on a 0500 dir = %v, want a permission error", err)
		}
		// And Write agrees: permission errors are permanent.
		werr := s.Write(context.Background(), sinktest.Records(0, 1))
		if werr == nil {
			t.Fatalf("Write to a 0500 dir succeeded")
		}
		if _, ok := sink.Retryable(werr); ok {
			t.Errorf("permission error marked retryable: %v", werr)
		}
	})
	t.Run("writes nothing", func(t *testing.T) {
		dir := t.TempDir()
		s := newSink(t, Config{Dir: dir})
		defer s.Close()
		if err := s.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 0 {
			t.Errorf("Check left %d entries in dir", len(entries))
		}
	})
}

// TestLineIsByteExact pins the envelope as written: compact, one line, data
// embedded raw with <, > and & unescaped and big numbers untouched.
func TestLineIsByteExact(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t, Config{Dir: dir})
	data := `{"q":"a<b && c>d","n":123456789012345678901234567890,"f":-0.000001e-7,"u":"\u00e9\u2028"}`
	rec := record.Record{
		ID:      "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		Kind:    record.KindActivityLog,
		Version: 1,
		Time:    time.Date(2026, 11, 22, 21, 5, 6, 700000000, time.UTC),
		Data:    json.RawMessage(data),
	}
	if err := s.Write(context.Background(), []record.Record{rec}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got, err := os.ReadFile(files(t, dir)[0])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","kind":"activity_log","version":1,` +
		`"time":"2026-11-22T21:05:06.7Z","data":` + data + "}\n"
	if string(got) != want {
		t.Errorf("line =\n%s\nwant\n%s", got, want)
	}
}
