package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

func TestReadAfter(t *testing.T) {
	s := openStore(t, Config{})
	ctx := t.Context()
	var want []Stored
	add := func(recs ...record.Record) {
		mustAppend(t, s, recs...)
		for _, r := range recs {
			want = append(want, Stored{Seq: int64(len(want) + 1), Record: r})
		}
	}
	// Times run backwards: seq order is commit order, not time order.
	at := func(i int) time.Time { return t0.Add(-time.Duration(i) * time.Minute) }
	add(rec("r1", at(1), `{"n":1}`), rec("r2", at(2), `{"n":2}`))
	if err := s.Begin(ctx, stateRec("pending", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	for i := 3; i <= 10; i++ {
		add(rec(fmt.Sprint("r", i), at(i), fmt.Sprintf(`{"n":%d}`, i)))
	}
	tests := []struct {
		name  string
		after int64
		limit int
		want  []Stored
	}{
		{"from the start, limited", 0, 4, want[:4]},
		{"the rest", 4, 100, want[4:]},
		{"exact limit", 7, 3, want[7:]},
		{"past the end", 10, 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ReadAfter(ctx, tt.after, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ReadAfter(%d, %d) (-want +got):\n%s", tt.after, tt.limit, diff)
			}
		})
	}
	if _, err := s.ReadAfter(ctx, 0, 0); err == nil {
		t.Error("ReadAfter with limit 0: no error")
	}
}

func TestCursor(t *testing.T) {
	cfg := testConfig(t)
	s := openStore(t, cfg)
	ctx := t.Context()
	steps := []struct {
		sink string
		seq  int64
	}{{"archive", 5}, {"siem", 2}, {"archive", 9}, {"siem", 1}}
	want := map[string]int64{"archive": 0, "siem": 0, "never": 0}
	check := func(s *Store, when string) {
		t.Helper()
		got := map[string]int64{}
		for sink := range want {
			seq, err := s.Cursor(ctx, sink)
			if err != nil {
				t.Fatal(err)
			}
			got[sink] = seq
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: cursors (-want +got):\n%s", when, diff)
		}
	}
	check(s, "before any SetCursor")
	for _, st := range steps {
		if err := s.SetCursor(ctx, st.sink, st.seq); err != nil {
			t.Fatal(err)
		}
		want[st.sink] = st.seq
		check(s, fmt.Sprintf("after SetCursor(%s, %d)", st.sink, st.seq))
	}
	if err := s.SetCursor(ctx, "", 1); err == nil {
		t.Error("SetCursor with an empty sink: no error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openStore(t, cfg), "after reopen")
}

func TestPrune(t *testing.T) {
	now := t0.Add(48 * time.Hour)
	old, recent := now.Add(-25*time.Hour), now.Add(-23*time.Hour)
	tests := []struct {
		name      string
		retention time.Duration
		cursors   map[string]int64
		sinks     []string
		want      []string // ids left
	}{
		{name: "retention 0 keeps everything", retention: 0,
			want: []string{"o1", "o2", "o3", "o4", "p", "n5", "n6"}},
		{name: "no sinks: every old released record goes", retention: 24 * time.Hour,
			want: []string{"p", "n5", "n6"}},
		{name: "the least cursor bounds it", retention: 24 * time.Hour,
			cursors: map[string]int64{"a": 6, "b": 2, "other": 0}, sinks: []string{"a", "b"},
			want: []string{"o3", "o4", "p", "n5", "n6"}},
		{name: "a sink without a cursor has nothing", retention: 24 * time.Hour,
			cursors: map[string]int64{"a": 6}, sinks: []string{"a", "new"},
			want: []string{"o1", "o2", "o3", "o4", "p", "n5", "n6"}},
		{name: "cursors past everything", retention: 24 * time.Hour,
			cursors: map[string]int64{"a": 100}, sinks: []string{"a"},
			want: []string{"p", "n5", "n6"}},
		{name: "longer retention", retention: 30 * time.Hour,
			want: []string{"o1", "o2", "o3", "o4", "p", "n5", "n6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Config{Retention: tt.retention})
			ctx := t.Context()
			// Seqs: o1..o4 are 1..4, n5 and n6 are 5 and 6; p stays pending.
			for i := 1; i <= 4; i++ {
				mustAppend(t, s, rec(fmt.Sprint("o", i), old.Add(time.Duration(i)*time.Second), `{}`))
			}
			p := stateRec("p", record.StateStarted)
			p.Time = old.Add(10 * time.Second)
			if err := s.Begin(ctx, p); err != nil {
				t.Fatal(err)
			}
			mustAppend(t, s, rec("n5", recent, `{}`), rec("n6", recent.Add(time.Second), `{}`))
			for sink, seq := range tt.cursors {
				if err := s.SetCursor(ctx, sink, seq); err != nil {
					t.Fatal(err)
				}
			}
			n, err := s.Prune(ctx, now, tt.sinks)
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, r := range allRecords(t, s, Filter{}) {
				left = append(left, r.ID)
			}
			if diff := cmp.Diff(tt.want, left); diff != "" {
				t.Errorf("left after Prune (-want +got):\n%s", diff)
			}
			if n != 7-len(tt.want) {
				t.Errorf("Prune returned %d, want %d", n, 7-len(tt.want))
			}
			checkStats(t, s)
		})
	}
}

// TestPruneBatches prunes more rows than one transaction takes.
func TestPruneBatches(t *testing.T) {
	s := openStore(t, Config{Retention: time.Hour})
	const total = pruneBatch*2 + 17
	recs := make([]record.Record, 0, total)
	for i := range total {
		recs = append(recs, rec(fmt.Sprint("r", i), t0, `{}`))
	}
	for chunk := range slicesChunk(recs, maxBatchRecords) {
		mustAppend(t, s, chunk...)
	}
	n, err := s.Prune(t.Context(), t0.Add(2*time.Hour), nil)
	if err != nil || n != total {
		t.Errorf("Prune = %d, %v; want %d", n, err, total)
	}
	if st := checkStats(t, s); st.Records != 0 || st.Bytes != 0 {
		t.Errorf("Stats after pruning all: %+v", st)
	}
}

// slicesChunk yields consecutive pieces of s of at most n elements.
func slicesChunk[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}
