package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

// sized is an activity_log record whose data is exactly 100 bytes.
func sized(id string) record.Record {
	pad := 100 - len(`{"p":""}`)
	return rec(id, t0, fmt.Sprintf(`{"p":%q}`, strings.Repeat("x", pad)))
}

func TestFull(t *testing.T) {
	type step struct {
		op      string // append, begin, finish
		ids     []string
		wantErr bool // want record.ErrFull
	}
	tests := []struct {
		name        string
		whenFull    string
		steps       []step
		want        []string // ids stored, by Records order (time then id)
		wantDropped int64
	}{
		{
			name: "reject refuses the request that does not fit", whenFull: WhenFullReject,
			steps: []step{
				{op: "append", ids: []string{"a", "b"}},
				{op: "append", ids: []string{"c", "d"}, wantErr: true}, // all or nothing
				{op: "append", ids: []string{"c"}},
				{op: "append", ids: []string{"d"}, wantErr: true},
				{op: "begin", ids: []string{"d"}, wantErr: true},
				{op: "append", ids: []string{"a"}}, // a duplicate adds no bytes
			},
			want: []string{"a", "b", "c"},
		},
		{
			name: "reject is the default", whenFull: "",
			steps: []step{{op: "append", ids: []string{"a", "b", "c", "d"}, wantErr: true}},
		},
		{
			name: "drop_oldest deletes the oldest released records", whenFull: WhenFullDropOldest,
			steps: []step{
				{op: "append", ids: []string{"a", "b", "c"}},
				{op: "append", ids: []string{"d"}},
				{op: "append", ids: []string{"e", "f"}},
			},
			want: []string{"d", "e", "f"}, wantDropped: 3,
		},
		{
			name: "drop_oldest never drops pending records", whenFull: WhenFullDropOldest,
			steps: []step{
				{op: "begin", ids: []string{"p1"}},
				{op: "append", ids: []string{"a"}},
				{op: "begin", ids: []string{"p2"}},
				{op: "append", ids: []string{"b"}}, // drops a
				{op: "begin", ids: []string{"p3"}}, // drops b
				{op: "append", ids: []string{"c"}, wantErr: true},
				{op: "finish", ids: []string{"p1"}}, // same size: fits
			},
			want: []string{"p1", "p2", "p3"}, wantDropped: 2,
		},
		{
			name: "drop_oldest cannot fit a request larger than the bound", whenFull: WhenFullDropOldest,
			steps: []step{
				{op: "append", ids: []string{"a"}},
				{op: "append", ids: []string{"b", "c", "d", "e"}, wantErr: true},
			},
			want: []string{"a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Config{MaxBytes: 300, WhenFull: tt.whenFull})
			ctx := t.Context()
			for _, st := range tt.steps {
				var recs []record.Record
				for _, id := range st.ids {
					recs = append(recs, sized(id))
				}
				var err error
				switch st.op {
				case "append":
					_, err = s.Append(ctx, recs)
				case "begin":
					err = s.Begin(ctx, recs[0])
				case "finish":
					err = s.Finish(ctx, recs[0])
				}
				if got := errors.Is(err, record.ErrFull); got != st.wantErr || (err != nil && !got) {
					t.Fatalf("%s %v: error %v, want ErrFull %v", st.op, st.ids, err, st.wantErr)
				}
			}
			var ids []string
			for _, r := range allRecords(t, s, Filter{}) {
				ids = append(ids, r.ID)
			}
			if diff := cmp.Diff(tt.want, ids); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
			st := checkStats(t, s)
			if st.Bytes > 300 {
				t.Errorf("Stats.Bytes = %d, over the bound 300", st.Bytes)
			}
			if st.Dropped != tt.wantDropped {
				t.Errorf("Stats.Dropped = %d, want %d", st.Dropped, tt.wantDropped)
			}
		})
	}
}

// TestFullBatchIsolation commits one batch in which the middle request does
// not fit: the others commit.
func TestFullBatchIsolation(t *testing.T) {
	s := openStore(t, Config{MaxBytes: 300})
	mustAppend(t, s, sized("a"))
	req := func(ids ...string) *request {
		r := &request{op: opAppend}
		for i, id := range ids {
			row, err := newRow(i, sized(id))
			if err != nil {
				t.Fatal(err)
			}
			r.rows = append(r.rows, row)
			r.bytes += row.size()
		}
		return r
	}
	// The writer is idle, waiting on the queue: calling commit here stands
	// for one batch of three queued requests. a and b leave room for 100
	// bytes: c+d does not fit, e does.
	results := s.w.commit(t.Context(), []*request{req("b"), req("c", "d"), req("e")})
	s.publish(s.w.stats())
	if results[0].err != nil || results[0].n != 1 {
		t.Errorf("first request: %+v, want 1 added", results[0])
	}
	if !errors.Is(results[1].err, record.ErrFull) || results[1].n != 0 {
		t.Errorf("second request: %+v, want ErrFull", results[1])
	}
	if results[2].err != nil || results[2].n != 1 {
		t.Errorf("third request: %+v, want 1 added", results[2])
	}
	var ids []string
	for _, r := range allRecords(t, s, Filter{}) {
		ids = append(ids, r.ID)
	}
	if diff := cmp.Diff([]string{"a", "b", "e"}, ids); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	if st := checkStats(t, s); st.Rejected != 1 || st.Commits != 2 || st.Appended != 3 {
		t.Errorf("Stats rejected=%d commits=%d appended=%d, want 1, 2 and 3", st.Rejected, st.Commits, st.Appended)
	}
}

// TestDropLog shows drops are logged first at once, then at most once a
// minute with the count since the last line.
func TestDropLog(t *testing.T) {
	var buf syncBuffer
	cfg := testConfig(t)
	cfg.MaxBytes, cfg.WhenFull = 100, WhenFullDropOldest
	s, err := Open(t.Context(), cfg, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := t0
	s.w.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	// Each record fills the store, so every append after the first drops one.
	for i := range 5 { // the first drop is logged, three more are not
		mustAppend(t, s, sized(fmt.Sprint("a", i)))
	}
	advance(59 * time.Second)
	mustAppend(t, s, sized("b0")) // still within the minute
	advance(time.Second)
	mustAppend(t, s, sized("b1")) // a minute since the first line: logs 5
	mustAppend(t, s, sized("b2")) // logged at Close
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if strings.Contains(line, "dropped oldest") {
			i := strings.Index(line, "dropped=")
			got = append(got, strings.Fields(line[i:])[0]+" "+strings.Fields(line[i:])[1])
		}
	}
	want := []string{"dropped=1 dropped_total=1", "dropped=5 dropped_total=6", "dropped=1 dropped_total=7"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("drop log lines (-want +got):\n%s\nlog:\n%s", diff, buf.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
