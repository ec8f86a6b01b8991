package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

func TestAppend(t *testing.T) {
	a1 := rec("a", t0, `{"v":1}`)
	a2 := rec("a", t0, `{"v":2}`)
	b := rec("b", t0, `{"v":3}`)
	c := rec("c", t0, `{"v":4}`)
	tests := []struct {
		name      string
		before    []record.Record
		batch     []record.Record
		wantAdded int
		want      []released // everything stored, by seq
		wantData  string     // the stored payload of "a", if any
	}{
		{name: "new records", batch: []record.Record{a1, b, c}, wantAdded: 3,
			want: []released{{1, "a", ""}, {2, "b", ""}, {3, "c", ""}}, wantData: `{"v":1}`},
		{name: "duplicate within the batch", batch: []record.Record{a1, b, a2}, wantAdded: 2,
			want: []released{{1, "a", ""}, {2, "b", ""}}, wantData: `{"v":1}`},
		{name: "duplicate of a stored record", before: []record.Record{a1}, batch: []record.Record{a2, b}, wantAdded: 1,
			want: []released{{1, "a", ""}, {2, "b", ""}}, wantData: `{"v":1}`},
		{name: "all duplicates", before: []record.Record{a1, b}, batch: []record.Record{b, a2}, wantAdded: 0,
			want: []released{{1, "a", ""}, {2, "b", ""}}, wantData: `{"v":1}`},
		{name: "empty batch", batch: nil, wantAdded: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Config{})
			if len(tt.before) > 0 {
				mustAppend(t, s, tt.before...)
			}
			if got := mustAppend(t, s, tt.batch...); got != tt.wantAdded {
				t.Errorf("Append added %d, want %d", got, tt.wantAdded)
			}
			if diff := cmp.Diff(tt.want, readReleased(t, s)); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
			if tt.wantData != "" {
				got := allRecords(t, s, Filter{Kind: record.KindActivityLog})
				if string(got[0].Data) != tt.wantData {
					t.Errorf("data of a = %s, want the first one stored, %s", got[0].Data, tt.wantData)
				}
			}
			st := checkStats(t, s)
			if st.Records != int64(len(tt.want)) || st.Pending != 0 {
				t.Errorf("Stats records=%d pending=%d, want %d and 0", st.Records, st.Pending, len(tt.want))
			}
		})
	}
}

func TestAppendRoundTrip(t *testing.T) {
	s := openStore(t, Config{})
	in := rec("x", t0.Add(1234*1e3), `{"event": {"big": 12345678901234567890, "s": "é"}}`)
	mustAppend(t, s, in)
	got := allRecords(t, s, Filter{})
	if diff := cmp.Diff([]record.Record{in}, got); diff != "" {
		t.Errorf("Records (-want +got):\n%s", diff)
	}
}

// TestJournal drives Begin, Finish and Append in sequences and checks what
// is released (with seqs) and what is still pending.
func TestJournal(t *testing.T) {
	type step struct{ op, id, state string }
	tests := []struct {
		name        string
		steps       []step
		want        []released
		wantPending []string
	}{
		{
			name:        "begin holds the record back",
			steps:       []step{{"begin", "a", "started"}},
			wantPending: []string{"a"},
		},
		{
			name: "begin then finish completes in place and takes the next seq",
			steps: []step{
				{"begin", "a", "started"}, {"append", "b", "completed"}, {"finish", "a", "completed"},
			},
			want: []released{{1, "b", "completed"}, {2, "a", "completed"}},
		},
		{
			name:  "finish without begin stores a new released record",
			steps: []step{{"append", "b", "completed"}, {"finish", "x", "denied"}},
			want:  []released{{1, "b", "completed"}, {2, "x", "denied"}},
		},
		{
			name: "finish twice is a no-op the second time",
			steps: []step{
				{"begin", "a", "started"}, {"finish", "a", "completed"}, {"finish", "a", "interrupted"},
			},
			want: []released{{1, "a", "completed"}},
		},
		{
			name:        "begin twice keeps one pending row",
			steps:       []step{{"begin", "a", "started"}, {"begin", "a", "started"}},
			wantPending: []string{"a"},
		},
		{
			name:  "begin after finish changes nothing",
			steps: []step{{"finish", "a", "completed"}, {"begin", "a", "started"}},
			want:  []released{{1, "a", "completed"}},
		},
		{
			name: "interleaved requests release in finish order",
			steps: []step{
				{"begin", "a", "started"}, {"begin", "b", "started"}, {"begin", "c", "started"},
				{"finish", "c", "completed"}, {"finish", "a", "interrupted"},
			},
			want:        []released{{1, "c", "completed"}, {2, "a", "interrupted"}},
			wantPending: []string{"b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Config{})
			ctx := t.Context()
			for _, st := range tt.steps {
				r := stateRec(st.id, st.state)
				var err error
				switch st.op {
				case "begin":
					err = s.Begin(ctx, r)
				case "finish":
					err = s.Finish(ctx, r)
				case "append":
					_, err = s.Append(ctx, []record.Record{r})
				}
				if err != nil {
					t.Fatalf("%s %s: %v", st.op, st.id, err)
				}
			}
			if diff := cmp.Diff(tt.want, readReleased(t, s)); diff != "" {
				t.Errorf("released (-want +got):\n%s", diff)
			}
			var pending []string
			for _, r := range allRecords(t, s, Filter{State: record.StateStarted}) {
				pending = append(pending, r.ID)
			}
			if diff := cmp.Diff(tt.wantPending, pending); diff != "" {
				t.Errorf("pending (-want +got):\n%s", diff)
			}
			st := checkStats(t, s)
			if st.Pending != int64(len(tt.wantPending)) || st.Records != int64(len(tt.want)+len(tt.wantPending)) {
				t.Errorf("Stats records=%d pending=%d, want %d rows, %d pending",
					st.Records, st.Pending, len(tt.want)+len(tt.wantPending), len(tt.wantPending))
			}
		})
	}
}

func TestInvalidInput(t *testing.T) {
	good := rec("good", t0, `{"ok":true}`)
	tests := []struct {
		name    string
		bad     record.Record
		wantMsg string // a substring of the error
	}{
		{"empty id", record.Record{Kind: record.KindActivityLog, Time: t0, Data: json.RawMessage(`{}`)}, "invalid record #"},
		{"empty kind", record.Record{ID: "k1", Time: t0, Data: json.RawMessage(`{}`)}, `"k1": empty kind`},
		{"zero time", rec("z1", time.Time{}, `{}`), `"z1": time 0001-01-01T00:00:00Z out of range`},
		{"data not JSON", rec("j1", t0, `{"a":`), `"j1": data is not valid JSON`},
		{"data empty", rec("j2", t0, ``), `"j2": data is not valid JSON`},
		{"data not an object", rec("j3", t0, `[1,2]`), `"j3": data is not a JSON object`},
		// Encoded spares the syntax check alone.
		{"encoded, not an object", record.Record{ID: "e1", Kind: record.KindGatewayRequest, Time: t0,
			Data: json.RawMessage(`[1,2]`), Encoded: true}, `"e1": data is not a JSON object`},
		{"encoded, empty id", record.Record{Kind: record.KindGatewayRequest, Time: t0,
			Data: json.RawMessage(`{}`), Encoded: true}, "invalid record #"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, Config{})
			ctx := t.Context()
			check := func(op string, err error) {
				t.Helper()
				var inv *InvalidError
				if !errors.As(err, &inv) {
					t.Fatalf("%s: error %v, want an *InvalidError", op, err)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("%s: error %q does not contain %q", op, err, tt.wantMsg)
				}
			}
			n, err := s.Append(ctx, []record.Record{good, tt.bad, rec("after", t0, `{}`)})
			check("Append", err)
			if n != 0 {
				t.Errorf("Append added %d, want 0", n)
			}
			check("Begin", s.Begin(ctx, tt.bad))
			check("Finish", s.Finish(ctx, tt.bad))
			if got := allRecords(t, s, Filter{}); len(got) != 0 {
				t.Errorf("stored %d records after invalid input, want none", len(got))
			}
			if st := checkStats(t, s); st.Records != 0 || st.Appended != 0 || st.Commits != 0 {
				t.Errorf("Stats = %+v, want nothing written", st)
			}
		})
	}
}

// TestGroupCommit shows concurrent writers share transactions.
func TestGroupCommit(t *testing.T) {
	const writers, each = 64, 50
	s := openStore(t, Config{})
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := rec(fmt.Sprintf("w%02d-%02d", w, i), t0, `{"n":1}`)
				if n, err := s.Append(ctx, []record.Record{r}); err != nil || n != 1 {
					errs <- fmt.Errorf("append %s: added %d, %v", r.ID, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := checkStats(t, s)
	if st.Records != writers*each || st.Appended != writers*each {
		t.Errorf("Stats records=%d appended=%d, want %d", st.Records, st.Appended, writers*each)
	}
	if st.Commits >= st.Appended {
		t.Errorf("Stats commits=%d, want fewer than the %d requests", st.Commits, st.Appended)
	}
	if st.LastSeq != writers*each {
		t.Errorf("LastSeq = %d, want %d", st.LastSeq, writers*each)
	}
	t.Logf("%d requests in %d transactions", st.Appended, st.Commits)
}

func TestClosedAndCanceled(t *testing.T) {
	cfg := testConfig(t)
	s, err := Open(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Append(ctx, []record.Record{rec("c", t0, `{}`)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a canceled ctx: %v, want context.Canceled", err)
	}
	mustAppend(t, s, rec("kept", t0, `{}`))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Append(t.Context(), []record.Record{rec("late", t0, `{}`)}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	s = openStore(t, cfg)
	var ids []string
	for _, r := range allRecords(t, s, Filter{}) {
		ids = append(ids, r.ID)
	}
	if diff := cmp.Diff([]string{"kept"}, ids); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
}
