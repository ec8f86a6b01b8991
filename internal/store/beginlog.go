package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// beginlog.go commits strict audit's started records (Begin) to an
// append-only log beside the database instead of a SQLite transaction.
//
// Strict audit commits a record of each call before the call is forwarded
// (DESIGN.md §6). Through SQLite that put a whole transaction on every
// call's path: the handoff to the writer goroutine and back, an insert into
// started and a commit, then a delete from started when the call ended,
// about a third of the gateway's CPU beyond the bare proxy's (BENCHMARKS.md).
// A Begin now appends one checksummed frame to the log with one write(2)
// on the caller's goroutine. The log is as durable as the database: the
// writer runs with synchronous=NORMAL, so a commit is in the operating
// system, not on the disk, when it returns, and so is a frame; both
// survive kill -9, neither a power loss.
//
// The call's completion is stored as standard audit stores it, one insert
// in a shared commit (Finish), and once that is committed the log entry is
// released. Open reads the log first: an entry whose id the database does
// not hold is a call of a process that died before its Finish, and becomes
// a started record, which recovery turns into an interrupted one.
//
// An entry is also copied into the started table (materialized, which
// releases it from the log) when a query of this process is about to read
// records, and by the writer once it is a second old, so calls in flight
// are visible to queries (another process's within two seconds: an
// idle writer wakes every second to look). Near MaxBytes, Begin goes
// through the writer as before, where the bound is exact.
//
// The log is a series of segment files, <database>-begun-<n>. A segment is
// deleted once every entry in it is released; a long call keeps only its
// own segment. An exclusive lock on <database>-begun.lock makes one Store
// at a time use the log: a second writer on the same database (a mistake
// TestSecondWriter shows fails loudly) runs without it rather than reading
// another live process's entries as a crash's.

const (
	begunSegmentBytes = 8 << 20     // a segment is closed past this size
	materializeAfter  = time.Second // an entry older than this is materialized
)

// castagnoli is the CRC-32C table the frames are checked with.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// begun is one log entry: a started record not yet released.
type begun struct {
	row row
	seg uint64
	at  time.Time // when it was begun (monotonic)
}

// beginLog is the log of started records. Its methods may be called
// concurrently: Begin appends from the callers' goroutines, the writer
// releases.
type beginLog struct {
	prefix  string   // segment path prefix: <database>-begun-
	segSize int64    // a segment is closed past this size
	lock    *os.File // holds the exclusive lock

	mu     sync.Mutex
	f      *os.File       // active segment, nil until the first append after a rotation
	seg    uint64         // active segment's number
	size   int64          // bytes written to the active segment
	live   map[uint64]int // entries not yet released, per segment
	byID   map[string]*begun
	queue  []*begun // begin order; released entries are skipped
	buf    []byte
	closed bool

	n      atomic.Int64 // entries not yet released
	bytes  atomic.Int64 // sum of their sizes
	begins atomic.Int64 // appends since open
}

// openBeginLog locks the log of the database at path and reads what an
// earlier process left in it. It returns nil, nil when another Store holds
// the lock, and the entries found (in log order, an id once) with the
// segment files they came from, to remove once they are recovered.
func openBeginLog(path string, segmentBytes int64) (*beginLog, []row, []string, error) {
	lock, ok, err := lockFile(path + "-begun.lock")
	if err != nil || !ok {
		return nil, nil, nil, err
	}
	l := &beginLog{
		prefix:  path + "-begun-",
		segSize: segmentBytes,
		lock:    lock,
		live:    map[uint64]int{},
		byID:    map[string]*begun{},
	}
	files, last, err := l.segments()
	if err != nil {
		return nil, nil, nil, errors.Join(err, l.close())
	}
	l.seg = last + 1
	var rows []row
	seen := map[string]bool{}
	for _, f := range files {
		rs, err := readSegment(f)
		if err != nil {
			return nil, nil, nil, errors.Join(err, l.close())
		}
		for _, r := range rs {
			if !seen[r.id] {
				seen[r.id] = true
				rows = append(rows, r)
			}
		}
	}
	return l, rows, files, nil
}

// segments lists the segment files in order, and the highest number.
func (l *beginLog) segments() ([]string, uint64, error) {
	dir, base := filepath.Split(l.prefix)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("list begin log: %w", err)
	}
	type seg struct {
		n    uint64
		path string
	}
	var segs []seg
	for _, e := range ents {
		num, ok := strings.CutPrefix(e.Name(), base)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, seg{n, filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(segs, func(a, b seg) int { return cmp.Compare(a.n, b.n) })
	var paths []string
	var last uint64
	for _, s := range segs {
		paths = append(paths, s.path)
		last = max(last, s.n)
	}
	return paths, last, nil
}

// Frame layout: payload length and CRC-32C of the payload (little endian
// uint32 each), then the payload: version and time (varints), id, kind and
// state (uvarint-length-prefixed; state's length is 0 for none, else
// length+1), then the data to the end.
const frameHeader = 8

// appendFrame encodes r as a frame onto buf.
func appendFrame(buf []byte, r row) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, frameHeader)...)
	buf = binary.AppendVarint(buf, int64(r.version))
	buf = binary.AppendVarint(buf, r.time)
	buf = appendString(buf, r.id)
	buf = appendString(buf, r.kind)
	if s, ok := r.state.(string); ok {
		buf = binary.AppendUvarint(buf, uint64(len(s))+1)
		buf = append(buf, s...)
	} else {
		buf = binary.AppendUvarint(buf, 0)
	}
	buf = append(buf, r.data...)
	payload := buf[start+frameHeader:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, castagnoli))
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// errBadFrame ends a segment's reading: a frame cut short by a crash in
// the middle of its write, or damaged.
var errBadFrame = errors.New("bad frame")

// parseFrame decodes one frame's payload.
func parseFrame(p []byte) (row, error) {
	var r row
	v, n := binary.Varint(p)
	if n <= 0 {
		return r, errBadFrame
	}
	r.version, p = int(v), p[n:]
	if r.time, n = binary.Varint(p); n <= 0 {
		return r, errBadFrame
	}
	p = p[n:]
	var ok bool
	if r.id, p, ok = cutString(p, 0); !ok {
		return r, errBadFrame
	}
	if r.kind, p, ok = cutString(p, 0); !ok {
		return r, errBadFrame
	}
	sl, n := binary.Uvarint(p)
	if n <= 0 {
		return r, errBadFrame
	}
	if sl > 0 {
		var s string
		if s, p, ok = cutString(p, 1); !ok {
			return r, errBadFrame
		}
		r.state = s
	} else {
		p = p[n:]
	}
	r.data = string(p)
	return r, nil
}

// cutString reads a uvarint length (less off) and that many bytes.
func cutString(p []byte, off uint64) (string, []byte, bool) {
	l, n := binary.Uvarint(p)
	if n <= 0 || l < off || l-off > uint64(len(p)-n) {
		return "", nil, false
	}
	l -= off
	return string(p[n : n+int(l)]), p[n+int(l):], true
}

// readSegment returns the entries of one segment, up to the first frame
// that is cut short or fails its checksum (a write the crash interrupted:
// its Begin never returned, so its call was never forwarded).
func readSegment(path string) ([]row, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read begin log: %w", err)
	}
	var rows []row
	for len(b) >= frameHeader {
		size := binary.LittleEndian.Uint32(b)
		sum := binary.LittleEndian.Uint32(b[4:])
		if uint64(size) > uint64(len(b)-frameHeader) {
			break
		}
		payload := b[frameHeader : frameHeader+int(size)]
		if crc32.Checksum(payload, castagnoli) != sum {
			break
		}
		r, err := parseFrame(payload)
		if err != nil {
			break
		}
		rows = append(rows, r)
		b = b[frameHeader+int(size):]
	}
	return rows, nil
}

// removeSegments deletes segment files once their entries are recovered.
func removeSegments(paths []string) error {
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove recovered begin log: %w", err))
		}
	}
	return errors.Join(errs...)
}

// append commits r to the log; an id already in the log is left as it is.
// It returns once the frame is written to the operating system.
func (l *beginLog) append(r row) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if _, ok := l.byID[r.id]; ok {
		return nil
	}
	if l.f != nil && l.size >= l.segSize {
		l.rotate()
	}
	if l.f == nil {
		f, err := os.OpenFile(l.path(l.seg), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
		for tries := 0; errors.Is(err, os.ErrExist) && tries < 100; tries++ {
			l.seg++ // a file left by a failed removal: never append to it
			f, err = os.OpenFile(l.path(l.seg), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
		}
		if err != nil {
			return fmt.Errorf("begin log: %w", err)
		}
		l.f, l.size = f, 0
	}
	l.buf = appendFrame(l.buf[:0], r)
	n, err := l.f.Write(l.buf)
	l.size += int64(n)
	if err != nil {
		// A frame cut short ends the segment's reading: never append after
		// one.
		l.rotate()
		return fmt.Errorf("begin log: %w", err)
	}
	e := &begun{row: r, seg: l.seg, at: time.Now()}
	l.byID[r.id] = e
	l.queue = append(l.queue, e)
	l.live[l.seg]++
	l.n.Add(1)
	l.bytes.Add(r.size())
	l.begins.Add(1)
	return nil
}

func (l *beginLog) path(seg uint64) string { return l.prefix + strconv.FormatUint(seg, 10) }

// rotate closes the active segment, deleting it if nothing in it is live;
// the next append opens the next one. l.mu is held.
func (l *beginLog) rotate() {
	if l.f == nil {
		return
	}
	_ = l.f.Close() // written with write(2) alone: nothing to flush
	l.f = nil
	if l.live[l.seg] == 0 {
		delete(l.live, l.seg)
		_ = os.Remove(l.path(l.seg))
	}
	l.seg++
}

// entry returns the size of the live entry id, if there is one.
func (l *beginLog) entry(id string) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.byID[id]
	if !ok {
		return 0, false
	}
	return e.row.size(), true
}

// due returns the live entries begun before cut (all of them for the zero
// time), oldest first.
func (l *beginLog) due(cut time.Time) []row {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.queue) > 0 {
		if l.byID[l.queue[0].row.id] == l.queue[0] {
			break // live
		}
		l.queue[0] = nil
		l.queue = l.queue[1:]
	}
	var out []row
	for _, e := range l.queue {
		if !cut.IsZero() && !e.at.Before(cut) {
			break
		}
		if l.byID[e.row.id] == e {
			out = append(out, e.row)
		}
	}
	return out
}

// release removes entries whose record is committed to the database, and
// deletes the segments left with none (the active one stays open).
func (l *beginLog) release(ids []string) {
	if len(ids) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		e, ok := l.byID[id]
		if !ok {
			continue
		}
		delete(l.byID, id)
		l.n.Add(-1)
		l.bytes.Add(-e.row.size())
		e.row = row{id: id} // the queue may hold e a while: not its data
		if l.live[e.seg]--; l.live[e.seg] == 0 && (e.seg != l.seg || l.f == nil) {
			delete(l.live, e.seg)
			_ = os.Remove(l.path(e.seg))
		}
	}
	if len(l.byID) == 0 {
		clear(l.queue)
		l.queue = l.queue[:0]
	}
}

// close closes the active segment (deleting it if nothing in it is live)
// and gives up the lock. Entries not released stay in their segments for
// the next Open to recover.
func (l *beginLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.rotate()
	if l.lock == nil {
		return nil
	}
	err := unlockFile(l.lock)
	l.lock = nil
	return err
}
