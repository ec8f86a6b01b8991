// Package file is the sink that appends records as JSON Lines to local files.
package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tidwall/gjson"
)

// DefaultMaxBytes is the rotation size used when Config.MaxBytes is 0.
const DefaultMaxBytes = 256 << 20

// envelopeBytes is about what a record's envelope adds to its data, used
// to size the write buffer; maxKeptBuffer is the largest buffer kept
// between writes (a default batch is some 8 MiB).
const (
	envelopeBytes = 128
	maxKeptBuffer = 16 << 20
)

// fullDiskRetry is the wait suggested when the disk or quota is full: space
// rarely comes back within the shipper's first, short backoff steps.
const fullDiskRetry = 10 * time.Second

// Config is the file sink's configuration (DESIGN.md §4, sinks[].file).
type Config struct {
	// Dir holds the files. It is created (0o750) if missing.
	Dir string
	// MaxBytes is the size a file may reach before the sink starts the next
	// one; 0 means DefaultMaxBytes. A batch larger than MaxBytes goes to a
	// file of its own: records are never split.
	MaxBytes int64
}

// Sink appends each record envelope as one JSON line to the current file
// tapline-<UTC yyyymmddThhmmss>-<seq>.jsonl in Dir, and fsyncs it before
// Write returns. File names sort in write order.
type Sink struct {
	dir      string
	maxBytes int64
	log      *slog.Logger

	// Seams for tests.
	now  func() time.Time
	sync func(*os.File) error

	f      *os.File // current file, nil until the first write or after rotation
	size   int64    // bytes in f
	seq    uint64   // sequence number of the next file
	stamp  string   // timestamp of the newest file, so names never go backwards
	closed bool
	buf    []byte
}

var (
	_ sink.Sink    = (*Sink)(nil)
	_ sink.Checker = (*Sink)(nil)
)

// namePattern matches the files this sink writes.
var namePattern = regexp.MustCompile(`^tapline-(\d{8}T\d{6})-(\d+)\.jsonl$`)

// New creates Dir if needed and returns a sink that continues numbering
// after any files already in it, so a restart never overwrites or appends to
// an earlier file. It opens no file until the first Write.
func New(cfg Config, log *slog.Logger) (*Sink, error) {
	if cfg.Dir == "" {
		return nil, errors.New("new file sink: dir is empty")
	}
	if cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("new file sink: max_bytes %d is negative", cfg.MaxBytes)
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("new file sink: %w", err)
	}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("new file sink: %w", err)
	}
	s := &Sink{
		dir:      cfg.Dir,
		maxBytes: cfg.MaxBytes,
		log:      log.With("component", "sink_file"),
		now:      time.Now,
		sync:     (*os.File).Sync,
	}
	for _, e := range entries {
		m := namePattern.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		n, err := strconv.ParseUint(m[2], 10, 64)
		if err != nil {
			continue
		}
		s.seq = max(s.seq, n+1)
		s.stamp = max(s.stamp, m[1])
	}
	return s, nil
}

// Write appends recs to the current file, starting the next one first if
// they would take it past MaxBytes, and returns after fsync. On failure it
// truncates what it appended, so a retry does not follow a torn line.
func (s *Sink) Write(ctx context.Context, recs []record.Record) error {
	if s.closed {
		return fmt.Errorf("write file sink: %w", sink.ErrClosed)
	}
	if len(recs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write file sink: %w", err)
	}
	// The data is appended byte for byte as the producer stored it
	// (DESIGN.md §5); a record whose data is not JSON would tear the line.
	need := 0
	for i := range recs {
		need += len(recs[i].Data) + envelopeBytes
	}
	if cap(s.buf) < need {
		s.buf = make([]byte, 0, need) // once, not by doubling through the batch
	}
	s.buf = s.buf[:0]
	for i := range recs {
		if !gjson.ValidBytes(recs[i].Data) {
			return fmt.Errorf("write file sink: %w", sink.InvalidRecords(nil,
				fmt.Sprintf("record %q has data that is not valid JSON", recs[i].ID), i))
		}
		s.buf = record.AppendJSON(s.buf, recs[i])
		s.buf = append(s.buf, '\n')
	}
	n := int64(len(s.buf))
	if s.f != nil && s.size > 0 && s.size+n > s.maxBytes {
		if err := s.closeFile(); err != nil {
			return fmt.Errorf("write file sink: %w", classify(err))
		}
	}
	if s.f == nil {
		if err := s.openNext(); err != nil {
			return fmt.Errorf("write file sink: %w", classify(err))
		}
	}
	if _, err := s.f.Write(s.buf); err != nil {
		s.undo()
		return fmt.Errorf("write file sink: %w", classify(err))
	}
	if err := s.sync(s.f); err != nil {
		s.undo()
		return fmt.Errorf("write file sink: %w", classify(err))
	}
	s.size += n
	if cap(s.buf) > maxKeptBuffer {
		s.buf = nil // do not keep a huge batch's buffer alive
	}
	return nil
}

// undo removes a partial append. If that fails too, the file is abandoned
// and the next Write starts a new one; a reader may then see a torn last
// line in the abandoned file, never a torn line followed by more records.
func (s *Sink) undo() {
	err := s.f.Truncate(s.size)
	if err == nil {
		return
	}
	s.log.Warn("abandon file after failed write", "file", s.f.Name(), "error", err)
	_ = s.f.Close()
	s.f, s.size = nil, 0
}

// openNext creates the next file and fsyncs the directory so that its name
// is as durable as its content.
func (s *Sink) openNext() error {
	stamp := max(s.now().UTC().Format("20060102T150405"), s.stamp)
	name := filepath.Join(s.dir, fmt.Sprintf("tapline-%s-%06d.jsonl", stamp, s.seq))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	// The sequence number is used even if the rest fails: never reuse a name.
	s.seq++
	s.stamp = stamp
	if err := syncDir(s.dir); err != nil {
		_ = f.Close()
		return err
	}
	s.f, s.size = f, 0
	return nil
}

func (s *Sink) closeFile() error {
	err := s.f.Close()
	s.f, s.size = nil, 0
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Check reports whether Dir exists, is a directory and this process may
// create files in it. It writes nothing.
func (s *Sink) Check(ctx context.Context) error {
	fi, err := os.Stat(s.dir)
	if err != nil {
		return fmt.Errorf("check file sink: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("check file sink: %s is not a directory", s.dir)
	}
	// Creating a file needs write and search permission on the directory.
	const wOK, xOK = 0x2, 0x1
	if err := syscall.Access(s.dir, wOK|xOK); err != nil {
		return fmt.Errorf("check file sink: %s: %w", s.dir, err)
	}
	return nil
}

// Close closes the current file. Later Writes fail with sink.ErrClosed.
// Closing twice is not an error.
func (s *Sink) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	if err := s.closeFile(); err != nil {
		return fmt.Errorf("close file sink: %w", err)
	}
	return nil
}

// classify marks err retryable unless it is a permission error, which a
// retry cannot fix. A full disk or quota may clear, but not at once.
func classify(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return err
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return &sink.RetryableError{Err: err, After: fullDiskRetry}
	default:
		return &sink.RetryableError{Err: err}
	}
}
