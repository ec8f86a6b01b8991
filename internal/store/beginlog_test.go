package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

// logConfig is a fresh store's config whose writer never materializes
// begun records on its own (showAfter), so that the segments on disk
// depend only on what the test does, however slow the machine.
func logConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.showAfter = time.Hour
	return cfg
}

// segmentFrame encodes r as a frame of the begin log's earlier format,
// the segment files Open still recovers.
func segmentFrame(buf []byte, r row) []byte {
	payload := appendPayload(nil, r)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(payload)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(payload, castagnoli))
	return append(buf, payload...)
}

// ringFile returns the begin log's ring file of the database at path.
func ringFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path + "-begun.ring")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// liveFrames returns the offsets of the live frames of the ring at path
// of its current epoch.
func liveFrames(t *testing.T, path string) []int {
	t.Helper()
	mem := ringFile(t, path)
	epoch := binary.LittleEndian.Uint64(mem[8:])
	var offs []int
	for off := ringStart; off+ringHeader <= len(mem); off += ringAlign {
		h := mem[off:]
		if binary.LittleEndian.Uint32(h) == ringFrameMagic && binary.LittleEndian.Uint32(h[4:]) == 1 &&
			binary.LittleEndian.Uint64(h[24:]) == epoch {
			offs = append(offs, off)
		}
	}
	return offs
}

func TestFrameRoundTrip(t *testing.T) {
	for _, r := range []row{
		{id: "a", kind: "gateway_request", version: 1, time: 1_700_000_000_123_456_789, state: "started", data: `{"state":"started"}`},
		{id: "zoë-🚀", kind: "activity_log", version: 7, time: -5, data: `{"x":"` + strings.Repeat("y", 70_000) + `"}`},
		{id: "empty-state", kind: "k", state: "", data: `{}`},
	} {
		var b []byte
		b = segmentFrame(b, r)
		b = segmentFrame(b, r) // two frames back to back
		path := filepath.Join(t.TempDir(), "seg")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]row{r, r}, got, cmp.AllowUnexported(row{}, rollupGroup{})); diff != "" {
			t.Errorf("%s: read back (-want +got):\n%s", r.id, diff)
		}
		// A payload cut anywhere is refused or read short, never a panic
		// (readSegment checks the sum first; this is the parser alone).
		payload := appendPayload(nil, r)
		for i := range min(len(payload), 512) {
			if got, err := parseFrame(payload[:i]); err == nil && got.id == r.id && got.data == r.data {
				t.Errorf("%s: a payload cut to %d of %d bytes read as whole", r.id, i, len(payload))
			}
		}
	}
}

// TestBeginLogTornTail reopens a store whose begin log ends in a frame cut
// short, as a kill in the middle of its copy leaves it, and one whose last
// frame is damaged: the entries before it are recovered, the last one
// (whose Begin never returned) is not there, and nothing fails.
func TestBeginLogTornTail(t *testing.T) {
	for name, damage := range map[string]func(frame []byte){
		"no magic yet": func(f []byte) { clear(f[:4]) },
		"cut short":    func(f []byte) { clear(f[ringHeader+10:]) },
		"bad sum":      func(f []byte) { f[len(f)-1] ^= 0x20 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := logConfig(t)
			s := openStore(t, cfg)
			for _, id := range []string{"a", "b", "c"} {
				if err := s.Begin(t.Context(), stateRec(id, record.StateStarted)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil { // the calls are still in flight
				t.Fatal(err)
			}
			offs := liveFrames(t, cfg.Path)
			if len(offs) != 3 {
				t.Fatalf("live frames after Close with calls in flight: %v, want three", offs)
			}
			mem := ringFile(t, cfg.Path)
			last := mem[offs[2]:]
			damage(last[:ringHeader+int(binary.LittleEndian.Uint32(last[12:]))])
			if err := os.WriteFile(cfg.Path+"-begun.ring", mem, 0o600); err != nil {
				t.Fatal(err)
			}

			s = openStore(t, cfg)
			if got := s.Recovered(); got != 2 {
				t.Errorf("Recovered() = %d, want 2", got)
			}
			want := []released{{1, "a", record.StateInterrupted}, {2, "b", record.StateInterrupted}}
			if diff := cmp.Diff(want, readReleased(t, s)); diff != "" {
				t.Errorf("released after reopen (-want +got):\n%s", diff)
			}
			if offs := liveFrames(t, cfg.Path); len(offs) != 0 {
				t.Errorf("live frames after recovery: %v", offs)
			}
		})
	}
}

// TestBeginLogRing runs calls through a ring of a few frames, many times
// round: a frame's space is reused once it is released, a long call in
// flight holds the ring back until the writer materializes it (the ring
// over half full), a Begin that finds the ring full goes through SQLite,
// and only what was never released is recovered after a crash.
func TestBeginLogRing(t *testing.T) {
	cfg := logConfig(t)
	frame, err := newRow(0, stateRec("flight-00", record.StateStarted))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ringBytes = ringStart + 8*alignFrame(len(appendPayload(nil, frame))) // eight frames
	s := openStore(t, cfg)
	ctx := t.Context()
	if err := s.Begin(ctx, stateRec("long", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		id := fmt.Sprintf("call-%03d", i)
		if err := s.Begin(ctx, stateRec(id, record.StateStarted)); err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, stateRec(id, record.StateCompleted)); err != nil {
			t.Fatal(err)
		}
	}
	if s.begins.n.Load() != 0 {
		t.Errorf("%d entries in the ring, want none: the long call is materialized once the ring is half full",
			s.begins.n.Load())
	}
	st := checkStats(t, s)
	if st.Pending != 1 || st.Records != 201 {
		t.Errorf("Stats records %d pending %d, want 201 and 1", st.Records, st.Pending)
	}
	if begun := s.begins.begins.Load(); begun < 150 {
		t.Errorf("%d of 201 Begins went to the ring, want most", begun)
	}

	// A full ring: more calls in flight than frames fit, all of them begun.
	for i := range 12 {
		if err := s.Begin(ctx, stateRec(fmt.Sprintf("flight-%02d", i), record.StateStarted)); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.begins.n.Load(); n == 0 || n >= 12 {
		t.Errorf("%d of 12 calls in flight in the ring, want some, not all", n)
	}
	for i := range 6 {
		if err := s.Finish(ctx, stateRec(fmt.Sprintf("flight-%02d", i), record.StateCompleted)); err != nil {
			t.Fatal(err)
		}
	}
	if live, n := len(liveFrames(t, cfg.Path)), int(s.begins.n.Load()); live != n {
		t.Errorf("%d live frames in the ring file, want the %d entries in flight in it", live, n)
	}
	if err := s.Close(); err != nil { // flight-06 to 11 and long are still in flight
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if st := checkStats(t, s); s.Recovered() != 7 || st.Records != 213 || st.Pending != 0 {
		t.Errorf("reopened: recovered %d, %+v; want 7 recovered, 213 records, none pending", s.Recovered(), st)
	}
	for _, r := range readReleased(t, s) {
		want := record.StateCompleted
		if r.ID == "long" || r.ID >= "flight-06" {
			want = record.StateInterrupted
		}
		if r.State != want {
			t.Errorf("%s is %s, want %s", r.ID, r.State, want)
		}
	}
}

// TestBeginLogEpoch: the frames a crash left are recovered once; the next
// Open does not read them again, though they are still in the file.
func TestBeginLogEpoch(t *testing.T) {
	cfg := logConfig(t)
	s := openStore(t, cfg)
	if err := s.Begin(t.Context(), stateRec("a", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if s.Recovered() != 1 {
		t.Fatalf("Recovered() = %d, want 1", s.Recovered())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mem := ringFile(t, cfg.Path)
	if !strings.Contains(string(mem), `"request_id":"a"`) {
		t.Fatal("the recovered frame is gone from the file; the test proves nothing")
	}
	if rows := readRing(mem); len(rows) != 0 {
		t.Errorf("the ring reads %d live frames after recovery, want none", len(rows))
	}
	s = openStore(t, cfg)
	if s.Recovered() != 0 {
		t.Errorf("Recovered() = %d on the second reopen, want 0", s.Recovered())
	}
	if st := checkStats(t, s); st.Records != 1 {
		t.Errorf("%d records, want 1", st.Records)
	}
}

// room is the most contiguous space place should find for a frame, worked
// out anew: the test's oracle.
func (l *beginLog) room() int {
	l.trim()
	if len(l.queue) == 0 {
		return len(l.mem) - ringStart
	}
	if tail := l.queue[0].off; l.head <= tail {
		return tail - l.head
	}
	return max(len(l.mem)-l.head, l.queue[0].off-ringStart)
}

// TestRingPlacement appends frames of random sizes to a small ring while
// releasing random live ones, so that it wraps round often and runs full:
// no frame is ever written over a live one, a frame finds room whenever
// it fits between the newest and the oldest live frame, and reading the
// file finds exactly the live frames.
func TestRingPlacement(t *testing.T) {
	l, rows, _, err := openBeginLog(filepath.Join(t.TempDir(), "db"), ringStart+4096)
	if err != nil || l == nil || len(rows) != 0 {
		t.Fatalf("openBeginLog: %v, %v, %v", l, rows, err)
	}
	defer l.close()
	if err := l.start(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var live []string
	appended, full := 0, 0
	for i := range 5000 {
		for len(live) > 0 && rng.IntN(2) == 0 {
			j := rng.IntN(len(live))
			l.release([]string{live[j]})
			live = slices.Delete(live, j, j+1)
		}
		r := row{id: fmt.Sprint("call-", i), kind: "k", version: 1, time: int64(i), state: "started",
			data: `{"pad":"` + strings.Repeat("y", rng.IntN(400)) + `"}`}
		switch err := l.append(r); {
		case errors.Is(err, errRingFull):
			full++
			if room := l.room(); room >= alignFrame(len(appendPayload(nil, r))) {
				t.Fatalf("call %d found the ring full with %d contiguous bytes free", i, room)
			}
			continue
		case err != nil:
			t.Fatal(err)
		}
		appended++
		live = append(live, r.id)
		for _, id := range live {
			e := l.byID[id]
			payload, ok := frameAt(l.mem[:e.end], e.off, l.epoch)
			if got, err := parseFrame(payload); !ok || err != nil || got.id != id {
				t.Fatalf("after call %d: the frame of %s at %d no longer reads back (%v)", i, id, e.off, err)
			}
		}
	}
	if full == 0 || appended < 4*full {
		t.Errorf("%d appended, %d found the ring full: want it full sometimes, not mostly", appended, full)
	}
	var got []string
	for _, r := range readRing(l.mem) {
		got = append(got, r.id)
	}
	slices.Sort(got)
	slices.Sort(live)
	if diff := cmp.Diff(live, got); diff != "" {
		t.Errorf("frames read from the ring (-live +read):\n%s", diff)
	}
}

// TestBeginLogResized: the calls in flight in a ring of another size (a
// build with another begunRingBytes) are recovered before it is made over.
func TestBeginLogResized(t *testing.T) {
	cfg := logConfig(t)
	cfg.ringBytes = 1 << 16
	s := openStore(t, cfg)
	if err := s.Begin(t.Context(), stateRec("a", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.ringBytes = 1 << 17
	s = openStore(t, cfg)
	if s.Recovered() != 1 {
		t.Errorf("Recovered() = %d, want 1", s.Recovered())
	}
	if got := len(ringFile(t, cfg.Path)); got != 1<<17 {
		t.Errorf("ring of %d bytes, want %d", got, 1<<17)
	}
}

// TestBeginLogDamagedFrame damages a live frame under a running store (no
// code of its own does): materializing drops that call from the log
// instead of failing the writer, the others still show, and the damaged
// call's Finish still stores it.
func TestBeginLogDamagedFrame(t *testing.T) {
	s := openStore(t, logConfig(t))
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if err := s.Begin(ctx, stateRec(id, record.StateStarted)); err != nil {
			t.Fatal(err)
		}
	}
	s.begins.mu.Lock()
	off := s.begins.byID["a"].off
	s.begins.mem[off+ringHeader+2] ^= 0x01 // a byte of its payload
	s.begins.mu.Unlock()
	if _, err := s.Record(ctx, "b"); err != nil { // materializes what is in flight
		t.Fatalf("call b in flight: %v", err)
	}
	if _, err := s.Record(ctx, "a"); err == nil {
		t.Error("call a found though its frame was damaged")
	}
	if n := s.begins.n.Load(); n != 0 {
		t.Errorf("%d entries left in the log, want none", n)
	}
	if err := s.Finish(ctx, stateRec("a", record.StateCompleted)); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Record(ctx, "a"); err != nil || payloadState(t, r.Data) != record.StateCompleted {
		t.Errorf("Record(a) after Finish = %v, %v; want it completed", r, err)
	}
}

// TestBeginLogLegacySegments opens a database beside segment files of the
// begin log's earlier format, as a crash of an older build leaves them:
// their calls are recovered, the files removed.
func TestBeginLogLegacySegments(t *testing.T) {
	cfg := logConfig(t)
	s := openStore(t, cfg)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var seg1, seg2 []byte
	for _, id := range []string{"a", "b"} {
		r, err := newRow(0, stateRec(id, record.StateStarted))
		if err != nil {
			t.Fatal(err)
		}
		seg1 = segmentFrame(seg1, r)
	}
	for _, id := range []string{"c", "b"} { // b twice: recovered once
		r, err := newRow(0, stateRec(id, record.StateStarted))
		if err != nil {
			t.Fatal(err)
		}
		seg2 = segmentFrame(seg2, r)
	}
	for name, b := range map[string][]byte{"-begun-7": seg1, "-begun-12": seg2} {
		if err := os.WriteFile(cfg.Path+name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, cfg)
	if s.Recovered() != 3 {
		t.Errorf("Recovered() = %d, want 3", s.Recovered())
	}
	want := []released{{1, "a", record.StateInterrupted}, {2, "b", record.StateInterrupted}, {3, "c", record.StateInterrupted}}
	if diff := cmp.Diff(want, readReleased(t, s)); diff != "" {
		t.Errorf("released after reopen (-want +got):\n%s", diff)
	}
	if m, _ := filepath.Glob(cfg.Path + "-begun-[0-9]*"); len(m) != 0 {
		t.Errorf("segment files left after recovery: %v", m)
	}
}

// TestBeginLogMaterialized runs concurrent calls while every batch copies
// the begun ones into the started table and queries read them: each ends
// completed, once, and the counts agree with the database.
func TestBeginLogMaterialized(t *testing.T) {
	cfg := testConfig(t)
	cfg.showAfter = 1 // every entry is due at every batch
	s := openStore(t, cfg)
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				id := fmt.Sprintf("g%d-%03d", g, i)
				if err := s.Begin(ctx, stateRec(id, record.StateStarted)); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 { // a query in between shows every call in flight
					if _, err := s.Record(ctx, id); err != nil {
						t.Errorf("call %s in flight: %v", id, err)
					}
				}
				if err := s.Finish(ctx, stateRec(id, record.StateCompleted)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	recs := allRecords(t, s, Filter{})
	if len(recs) != 800 {
		t.Errorf("%d records, want 800", len(recs))
	}
	for _, r := range recs {
		if st := payloadState(t, r.Data); st != record.StateCompleted {
			t.Errorf("%s is %s, want completed", r.ID, st)
		}
	}
	st := checkStats(t, s)
	var bytes int64
	for _, r := range recs {
		bytes += int64(len(r.Data))
	}
	if st.Records != 800 || st.Pending != 0 || st.LastSeq != 800 || st.Bytes != bytes {
		t.Errorf("Stats %+v, want 800 records, none pending, %d bytes", st, bytes)
	}
}

// TestBegunFoundByColumns: a call in flight, once shown from the begin log,
// is found by the columns the dashboard filters on, which Begin leaves for
// the started table's insert to fill.
func TestBegunFoundByColumns(t *testing.T) {
	s := openStore(t, testConfig(t))
	g := gwRec(t, "in-flight", t0, record.GatewayRequest{State: record.StateStarted, Deployment: "gpt-4o",
		Principal: record.Principal{Kind: record.PrincipalKey, KeyName: "bot"}})
	if err := s.Begin(t.Context(), g); err != nil {
		t.Fatal(err)
	}
	f := Filter{Kind: record.KindGatewayRequest, Principal: "key:bot", Deployment: "gpt-4o", State: record.StateStarted}
	recs, _, err := s.Page(t.Context(), f, Cursor{}, 10)
	if err != nil || len(recs) != 1 || recs[0].ID != "in-flight" {
		t.Errorf("Page(%+v) = %v, %v; want the call in flight", f, ids(recs), err)
	}
}

// TestBeginLogSecondWriter opens a second writer on a database whose begin
// log the first holds: it must neither recover the first's calls in flight
// nor start the ring over.
func TestBeginLogSecondWriter(t *testing.T) {
	cfg := logConfig(t)
	a := openStore(t, cfg)
	if err := a.Begin(t.Context(), stateRec("live", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	b := openStore(t, cfg)
	if b.Recovered() != 0 || b.begins != nil {
		t.Errorf("second writer recovered %d, has a begin log: %v", b.Recovered(), b.begins != nil)
	}
	if offs := liveFrames(t, cfg.Path); len(offs) != 1 {
		t.Errorf("live frames after a second Open: %v, want the first writer's", offs)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Finish(t.Context(), stateRec("live", record.StateCompleted)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]released{{1, "live", record.StateCompleted}}, readReleased(t, a)); diff != "" {
		t.Errorf("released (-want +got):\n%s", diff)
	}
}

// TestBegunShownToOtherProcesses leaves a call in flight on an idle
// writer: another process (a read-only store) sees it once the writer's
// idle wake-up finds it a second old, with no query of the writer's own.
func TestBegunShownToOtherProcesses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t)
		w := openStore(t, cfg)
		if err := w.Begin(t.Context(), stateRec("live", record.StateStarted)); err != nil {
			t.Fatal(err)
		}
		r, err := OpenReadOnly(t.Context(), cfg.Path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if got := allRecords(t, r, Filter{}); len(got) != 0 {
			t.Fatalf("another process sees %d records at once, want none yet", len(got))
		}
		time.Sleep(3 * materializeAfter) // the fake clock of the bubble
		synctest.Wait()
		got := allRecords(t, r, Filter{})
		if len(got) != 1 || payloadState(t, got[0].Data) != record.StateStarted {
			t.Fatalf("another process sees %d records after %s, want the call in flight", len(got), 3*materializeAfter)
		}
	})
}
