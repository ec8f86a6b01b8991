package store

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// beginlog.go commits strict audit's started records (Begin) to a log
// beside the database instead of a SQLite transaction.
//
// Strict audit commits a record of each call before the call is forwarded
// (DESIGN.md §6). Through SQLite that put a whole transaction on every
// call's path: the handoff to the writer goroutine and back, an insert into
// started and a commit, then a delete from started when the call ended,
// about a third of the gateway's CPU beyond the bare proxy's (BENCHMARKS.md).
// A Begin now copies one checksummed frame into a ring file mapped into
// memory (shared with the page cache), on the caller's goroutine, with no
// system call. The log is as durable as the database: the writer runs with
// synchronous=NORMAL, so a commit is in the operating system, not on the
// disk, when it returns, and so is a frame once copied; both survive
// kill -9, neither a power loss.
//
// The call's completion is stored as standard audit stores it, one insert
// in a shared commit (Finish), and once that is committed the log entry is
// released: its frame is marked so, in place. Open reads the log first: a
// live frame whose id the database does not hold is a call of a process
// that died before its Finish, and becomes a started record, which
// recovery turns into an interrupted one. Each Open then starts the ring
// over under a new random epoch, which every frame carries, so frames of
// an earlier process are never read again.
//
// An entry is also copied into the started table (materialized, which
// releases it from the log) when a query of this process is about to read
// records, and by the writer once it is a second old, so calls in flight
// are visible to queries (another process's within two seconds: an
// idle writer wakes every second to look). A frame's space is reused once
// every frame begun before it is released, so a long call holds the ring
// for a second at most; when the ring is over half full the writer
// materializes every entry, and a Begin that finds it full goes through
// the writer, as it does near MaxBytes, where the bound is exact.
//
// Before the ring, the log was a series of append-only segment files,
// <database>-begun-<n>, written with write(2), a system call that cost the
// gateway about 5% of its CPU a call. Open still recovers what such files
// hold, so an upgrade after a crash loses no call.
//
// An exclusive lock on <database>-begun.lock makes one Store at a time use
// the log: a second writer on the same database (a mistake TestSecondWriter
// shows fails loudly) runs without it rather than reading another live
// process's entries as a crash's.

const (
	begunRingBytes    = 8 << 20     // the ring file's size
	materializeAfter  = time.Second // an entry older than this is materialized
	begunFullLogEvery = time.Minute
)

// Ring file layout: a header of ringStart bytes (ringFileMagic, then the
// epoch, little endian), then frames at ringAlign-byte offsets. A frame is
// a ringHeader-byte header, then the payload (as a segment frame's):
//
//	0  magic  uint32 (ringFrameMagic)
//	4  live   uint32 (1 until released, then 0; outside the checksum)
//	8  sum    uint32 (CRC-32C of bytes 12 to the payload's end)
//	12 size   uint32 (payload bytes)
//	16 seq    uint64 (begin order)
//	24 epoch  uint64 (the ring's, at the frame's writing)
//
// A frame is read only if its magic, epoch and sum agree; the epoch is
// random and never leaves the file, and a payload's JSON holds no byte
// below 0x20 where a size's high bytes are zero, so no caller can plant a
// frame through what it sends.
const (
	ringFileMagic  = "TPLRING1"
	ringFrameMagic = 0x5246_4C54 // "TLFR"
	ringStart      = 64
	ringHeader     = 32
	ringAlign      = 16
)

// castagnoli is the CRC-32C table the frames are checked with.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errRingFull is append's answer when the ring has no room for a frame.
var errRingFull = errors.New("begin log full")

// begun is one log entry: a started record not yet released, whose row
// is in its frame.
type begun struct {
	id   string
	size int64     // its row's size()
	off  int       // its frame's offset in the ring
	end  int       // where the frame ends (aligned)
	at   time.Time // when it was begun (monotonic)
	live bool
}

// beginLog is the log of started records. Its methods may be called
// concurrently: Begin appends from the callers' goroutines, the writer
// releases.
type beginLog struct {
	path string   // the ring file
	lock *os.File // holds the exclusive lock

	mu     sync.Mutex
	f      *os.File
	mem    []byte // the ring, mapped
	epoch  uint64
	head   int // where the next frame goes
	seq    uint64
	byID   map[string]*begun
	queue  []*begun // begin order, which is ring order; released entries are skipped
	buf    []byte
	closed bool

	fullAt time.Time // when a full ring was last logged

	n      atomic.Int64 // entries not yet released
	bytes  atomic.Int64 // sum of their sizes
	begins atomic.Int64 // appends since open
}

// openBeginLog locks the log of the database at path and reads what an
// earlier process left in it: the ring's live frames and any segment files
// of the log's earlier format. It returns nil, nil when another Store holds
// the lock, and the entries found, in begin order (an id found twice is
// recovered from its first: recoverPending skips the ids it holds). The
// ring is not written until start, which the caller runs once those
// entries are recovered; the returned segment files go then too.
func openBeginLog(path string, ringBytes int) (*beginLog, []row, []string, error) {
	lock, ok, err := lockFile(path + "-begun.lock")
	if err != nil || !ok {
		return nil, nil, nil, err
	}
	l := &beginLog{path: path + "-begun.ring", lock: lock, byID: map[string]*begun{}}
	fail := func(err error) (*beginLog, []row, []string, error) {
		return nil, nil, nil, errors.Join(err, l.close())
	}
	if l.f, err = os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return fail(fmt.Errorf("open begin log: %w", err))
	}
	st, err := l.f.Stat()
	if err != nil {
		return fail(fmt.Errorf("open begin log: %w", err))
	}
	var rows []row
	if st.Size() != int64(ringBytes) && st.Size() > 0 {
		// A ring of another size (a build with another begunRingBytes):
		// read it before it is made over.
		old, err := io.ReadAll(l.f)
		if err != nil {
			return fail(fmt.Errorf("read begin log: %w", err))
		}
		rows = readRing(old)
	}
	if err := sizeRing(l.f, st.Size(), ringBytes); err != nil {
		return fail(err)
	}
	if l.mem, err = mapRing(l.f, ringBytes); err != nil {
		return fail(fmt.Errorf("map begin log: %w", err))
	}
	if st.Size() == int64(ringBytes) {
		rows = readRing(l.mem)
	}
	files, err := legacySegments(path + "-begun-")
	if err != nil {
		return fail(err)
	}
	for _, f := range files {
		rs, err := readSegment(f)
		if err != nil {
			return fail(err)
		}
		rows = append(rows, rs...)
	}
	return l, rows, files, nil
}

// sizeRing makes f, of size bytes now, a ring of exactly size bytes, every
// block allocated (a write to a hole of a mapped file that finds the disk
// full would kill the process). A ring of another size is zeroed: Open has
// read it.
func sizeRing(f *os.File, now int64, size int) error {
	if now == int64(size) {
		return nil
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("begin log: %w", err)
	}
	zeros := make([]byte, 4<<10)
	for off := 0; off < size; off += len(zeros) {
		if _, err := f.WriteAt(zeros[:min(len(zeros), size-off)], int64(off)); err != nil {
			return fmt.Errorf("begin log: %w", err)
		}
	}
	return nil
}

// readRing returns the live entries of a ring, in begin order.
func readRing(mem []byte) []row {
	if len(mem) < ringStart || string(mem[:len(ringFileMagic)]) != ringFileMagic {
		return nil
	}
	epoch := binary.LittleEndian.Uint64(mem[8:])
	type entry struct {
		seq uint64
		row row
	}
	var found []entry
	for off := ringStart; off+ringHeader <= len(mem); {
		payload, ok := frameAt(mem, off, epoch)
		if !ok {
			off += ringAlign
			continue
		}
		h := mem[off:]
		if binary.LittleEndian.Uint32(h[4:]) == 1 {
			if r, err := parseFrame(payload); err == nil {
				found = append(found, entry{binary.LittleEndian.Uint64(h[16:]), r})
			}
		}
		off += alignFrame(len(payload))
	}
	slices.SortFunc(found, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
	rows := make([]row, len(found))
	for i, e := range found {
		rows[i] = e.row
	}
	return rows
}

// frameAt returns the payload of the frame of the given epoch at off, if
// one is there whole: magic, epoch, size and sum agree.
func frameAt(mem []byte, off int, epoch uint64) ([]byte, bool) {
	h := mem[off:]
	if len(h) < ringHeader || binary.LittleEndian.Uint32(h) != ringFrameMagic || binary.LittleEndian.Uint64(h[24:]) != epoch {
		return nil, false
	}
	size := int(binary.LittleEndian.Uint32(h[12:]))
	if size > len(h)-ringHeader || crc32.Checksum(h[12:ringHeader+size], castagnoli) != binary.LittleEndian.Uint32(h[8:]) {
		return nil, false
	}
	return h[ringHeader : ringHeader+size], true
}

// alignFrame is the ring space a frame of a size-byte payload takes.
func alignFrame(size int) int {
	return (ringHeader + size + ringAlign - 1) &^ (ringAlign - 1)
}

// start begins a new epoch, after Open has recovered what readRing found:
// from now on the ring's earlier frames are dead.
func (l *beginLog) start() error {
	var e [8]byte
	if _, err := rand.Read(e[:]); err != nil {
		return fmt.Errorf("begin log: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch = binary.LittleEndian.Uint64(e[:])
	copy(l.mem, ringFileMagic)
	binary.LittleEndian.PutUint64(l.mem[8:], l.epoch)
	l.head = ringStart
	return nil
}

// legacySegments lists the segment files of the log's earlier format, in
// order.
func legacySegments(prefix string) ([]string, error) {
	dir, base := filepath.Split(prefix)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list begin log: %w", err)
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
	paths := make([]string, 0, len(segs))
	for _, s := range segs {
		paths = append(paths, s.path)
	}
	return paths, nil
}

// A payload is: version and time (varints), id, kind and state
// (uvarint-length-prefixed; state's length is 0 for none, else length+1),
// then the data to the end. A segment file of the log's earlier format is
// a series of frames, each the payload's length and CRC-32C (little endian
// uint32 each) and then the payload.
const frameHeader = 8

// appendPayload encodes r as a frame's payload onto buf.
func appendPayload(buf []byte, r row) []byte {
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
	return append(buf, r.data...)
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
// It returns once the frame is in the ring, which is the operating
// system's page cache, or errRingFull. It keeps nothing of r's strings but
// its id.
func (l *beginLog) append(r row) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if _, ok := l.byID[r.id]; ok {
		return nil
	}
	l.buf = appendPayload(l.buf[:0], r)
	size := len(l.buf)
	off, ok := l.place(alignFrame(size))
	if !ok {
		return errRingFull
	}
	l.seq++
	h := l.mem[off : off+ringHeader+size]
	copy(h[ringHeader:], l.buf)
	binary.LittleEndian.PutUint32(h[12:], uint32(size))
	binary.LittleEndian.PutUint64(h[16:], l.seq)
	binary.LittleEndian.PutUint64(h[24:], l.epoch)
	binary.LittleEndian.PutUint32(h[8:], crc32.Checksum(h[12:], castagnoli))
	binary.LittleEndian.PutUint32(h[4:], 1)
	// The magic goes last: a frame cut short by a kill has none, or fails
	// its sum.
	binary.LittleEndian.PutUint32(h, ringFrameMagic)
	e := &begun{id: r.id, size: r.size(), off: off, end: off + alignFrame(size), at: time.Now(), live: true}
	l.head = e.end
	l.byID[r.id] = e
	l.queue = append(l.queue, e)
	l.n.Add(1)
	l.bytes.Add(r.size())
	l.begins.Add(1)
	return nil
}

// place returns where a frame of n bytes fits: after the newest frame, or
// at the ring's start, in either case short of the oldest live frame.
// l.mu is held.
func (l *beginLog) place(n int) (int, bool) {
	l.trim()
	tail := len(l.mem)
	if len(l.queue) > 0 {
		tail = l.queue[0].off
	}
	switch {
	case len(l.queue) > 0 && l.head <= tail: // wrapped: the room is up to the oldest
		return l.head, l.head+n <= tail
	case l.head+n <= len(l.mem):
		return l.head, true
	default:
		return ringStart, ringStart+n <= min(tail, len(l.mem))
	}
}

// trim drops released entries from the front of the queue. l.mu is held.
func (l *beginLog) trim() {
	for len(l.queue) > 0 && !l.queue[0].live {
		l.queue[0] = nil
		l.queue = l.queue[1:]
	}
	if len(l.queue) == 0 {
		l.queue = l.queue[:0:0] // let the backing array go
	}
}

// used is the part of the ring between its oldest live frame and its
// newest. l.mu is held.
func (l *beginLog) used() int {
	l.trim()
	if len(l.queue) == 0 {
		return 0
	}
	if tail := l.queue[0].off; tail < l.head {
		return l.head - tail
	}
	return len(l.mem) - l.queue[0].off + l.head - ringStart
}

// full logs, once a minute at most, that a Begin found the ring full.
func (l *beginLog) full(log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.fullAt) < begunFullLogEvery {
		return
	}
	l.fullAt = time.Now()
	log.Warn("the begin log is full: strict audit's Begins go through SQLite until calls end or are materialized",
		"bytes", len(l.mem), "entries", len(l.byID))
}

// entry returns the size of the live entry id, if there is one.
func (l *beginLog) entry(id string) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.byID[id]
	if !ok {
		return 0, false
	}
	return e.size, true
}

// due returns the live entries begun before cut (all of them for the zero
// time, or when the ring is over half full), oldest first, read from their
// frames. A frame that no longer reads back (only a hand on the file could
// do that: nothing writes over a live frame) is dropped from the log, with
// an error that names it.
func (l *beginLog) due(cut time.Time) ([]row, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used() > (len(l.mem)-ringStart)/2 {
		cut = time.Time{}
	}
	var out []row
	var errs []error
	for _, e := range l.queue {
		if !cut.IsZero() && !e.at.Before(cut) {
			break
		}
		if !e.live {
			continue
		}
		var r row
		payload, ok := frameAt(l.mem[:e.end], e.off, l.epoch)
		err := errBadFrame
		if ok {
			r, err = parseFrame(payload)
		}
		if err == nil && r.id != e.id {
			err = errBadFrame
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("begin log: the frame of call %s at %d no longer reads back: %w", e.id, e.off, err))
			l.drop(e)
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// release marks the frames of entries whose record is committed to the
// database as released, which frees their space.
func (l *beginLog) release(ids []string) {
	if len(ids) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if e, ok := l.byID[id]; ok {
			l.drop(e)
		}
	}
	l.trim()
}

// drop marks e's frame released and forgets it. l.mu is held.
func (l *beginLog) drop(e *begun) {
	delete(l.byID, e.id)
	l.n.Add(-1)
	l.bytes.Add(-e.size)
	binary.LittleEndian.PutUint32(l.mem[e.off+4:], 0)
	e.live = false
}

// close unmaps the ring and gives up the lock. Entries not released stay
// live in the ring for the next Open to recover.
func (l *beginLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	var errs []error
	if l.mem != nil {
		errs = append(errs, unmapRing(l.mem))
		l.mem = nil
	}
	if l.f != nil {
		errs = append(errs, l.f.Close())
		l.f = nil
	}
	if l.lock != nil {
		errs = append(errs, unlockFile(l.lock))
		l.lock = nil
	}
	return errors.Join(errs...)
}
