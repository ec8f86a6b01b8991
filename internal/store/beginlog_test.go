package store

import (
	"fmt"
	"os"
	"path/filepath"
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

// segmentFiles lists the begin log segments of the database at path.
func segmentFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + "-begun-[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFrameRoundTrip(t *testing.T) {
	for _, r := range []row{
		{id: "a", kind: "gateway_request", version: 1, time: 1_700_000_000_123_456_789, state: "started", data: `{"state":"started"}`},
		{id: "zoë-🚀", kind: "activity_log", version: 7, time: -5, data: `{"x":"` + strings.Repeat("y", 70_000) + `"}`},
		{id: "empty-state", kind: "k", state: "", data: `{}`},
	} {
		var b []byte
		b = appendFrame(b, r)
		b = appendFrame(b, r) // two frames back to back
		path := filepath.Join(t.TempDir(), "seg")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]row{r, r}, got, cmp.AllowUnexported(row{}, gatewayMembers{})); diff != "" {
			t.Errorf("%s: read back (-want +got):\n%s", r.id, diff)
		}
		// A payload cut anywhere is refused or read short, never a panic
		// (readSegment checks the sum first; this is the parser alone).
		payload := appendFrame(nil, r)[frameHeader:]
		for i := range min(len(payload), 512) {
			if got, err := parseFrame(payload[:i]); err == nil && got.id == r.id && got.data == r.data {
				t.Errorf("%s: a payload cut to %d of %d bytes read as whole", r.id, i, len(payload))
			}
		}
	}
}

// TestBeginLogTornTail reopens a store whose begin log ends in a frame cut
// short, as a kill in the middle of a write leaves it, and one whose last
// frame is damaged: the entries before it are recovered, the last one
// (whose Begin never returned) is not there, and nothing fails.
func TestBeginLogTornTail(t *testing.T) {
	for name, damage := range map[string]func([]byte) []byte{
		"cut short": func(b []byte) []byte { return b[:len(b)-3] },
		"bad sum":   func(b []byte) []byte { b[len(b)-1] ^= 0x20; return b },
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
			segs := segmentFiles(t, cfg.Path)
			if len(segs) != 1 {
				t.Fatalf("segments after Close with calls in flight: %v, want one", segs)
			}
			b, err := os.ReadFile(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(segs[0], damage(b), 0o600); err != nil {
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
			if segs := segmentFiles(t, cfg.Path); len(segs) != 0 {
				t.Errorf("segments left after recovery: %v", segs)
			}
		})
	}
}

// TestBeginLogSegments runs calls through many small segments: a segment
// goes once its calls are finished, a long call keeps only its own, and a
// clean Close with nothing in flight leaves none.
func TestBeginLogSegments(t *testing.T) {
	cfg := logConfig(t)
	cfg.segmentBytes = 1024 // about ten begun records
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
	if segs := segmentFiles(t, cfg.Path); len(segs) != 2 {
		t.Errorf("segments with one long call in flight: %v, want its own and the active one", segs)
	}
	st := checkStats(t, s)
	if st.Pending != 1 || st.Records != 201 {
		t.Errorf("Stats records %d pending %d, want 201 and 1", st.Records, st.Pending)
	}
	if err := s.Finish(ctx, stateRec("long", record.StateCompleted)); err != nil {
		t.Fatal(err)
	}
	if segs := segmentFiles(t, cfg.Path); len(segs) > 1 {
		t.Errorf("segments with nothing in flight: %v, want the active one at most", segs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs := segmentFiles(t, cfg.Path); len(segs) != 0 {
		t.Errorf("segments after a clean Close: %v", segs)
	}
	s = openStore(t, cfg)
	if st := checkStats(t, s); s.Recovered() != 0 || st.Records != 201 || st.LastSeq != 201 || st.Pending != 0 {
		t.Errorf("reopened: recovered %d, %+v; want 0 recovered, 201 records released", s.Recovered(), st)
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
// nor remove its segments.
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
	if segs := segmentFiles(t, cfg.Path); len(segs) != 1 {
		t.Errorf("segments after a second Open: %v, want the first writer's", segs)
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

// TestBeginLogSkipsForeignSegment puts a file where the next segment would
// go: Begin writes the next number instead and leaves the file alone.
func TestBeginLogSkipsForeignSegment(t *testing.T) {
	cfg := logConfig(t)
	s := openStore(t, cfg)
	foreign := s.begins.path(s.begins.seg)
	if err := os.WriteFile(foreign, []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Begin(t.Context(), stateRec("a", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(foreign); err != nil || string(b) != "not ours" {
		t.Errorf("foreign file now %q, %v", b, err)
	}
	if segs := segmentFiles(t, cfg.Path); len(segs) != 2 {
		t.Errorf("segments %v, want the foreign one and the one written", segs)
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
