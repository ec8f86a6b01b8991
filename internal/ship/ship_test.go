package ship

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/store"
)

// fakeSink is a destination whose answers a test scripts: fail decides,
// per Write, what the destination says (nil accepts the batch).
type fakeSink struct {
	mu      sync.Mutex
	got     []record.Record
	batches []int
	calls   int
	fail    func(call int, recs []record.Record) error
	closed  bool
}

func (f *fakeSink) Write(ctx context.Context, recs []record.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		if err := f.fail(f.calls, recs); err != nil {
			return err
		}
	}
	f.got = append(f.got, sinktest.Clone(recs)...)
	f.batches = append(f.batches, len(recs))
	return nil
}

func (f *fakeSink) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeSink) records() []record.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func (f *fakeSink) setFail(fn func(call int, recs []record.Record) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "tapline.db")
	}
	st, err := store.Open(t.Context(), store.Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func appendN(t *testing.T, st *store.Store, first, n int) []record.Record {
	t.Helper()
	recs := sinktest.Records(first, n)
	if _, err := st.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

// waitFor polls cond until it holds; the test's own deadline bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-tick.C:
		}
	}
}

// harness runs a shipper over st until the test ends, with waits recorded
// instead of slept.
type harness struct {
	sh     *Shipper
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	waits  map[string][]time.Duration
}

func start(t *testing.T, st Store, targets ...Target) *harness {
	t.Helper()
	return startWith(t, st, nil, targets...)
}

// startWith is start with setup run on every loop before the shipper
// runs, to replace a seam (the clock) that the loops read concurrently.
func startWith(t *testing.T, st Store, setup func(*loop), targets ...Target) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), done: make(chan error, 1), waits: map[string][]time.Duration{}}
	for i := range targets {
		if targets[i].Batch.MaxWait == 0 {
			targets[i].Batch.MaxWait = 5 * time.Millisecond // partial batches leave soon
		}
	}
	sh, err := New(st, targets, h.reg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range sh.loops {
		l.jitter = func(n int64) int64 { return n - 1 } // the top of the jitter range
		l.sleep = func(ctx context.Context, d time.Duration) error {
			h.mu.Lock()
			h.waits[l.name] = append(h.waits[l.name], d)
			h.mu.Unlock()
			return sink.Sleep(ctx, time.Millisecond) // yield, but no real backoff
		}
		if setup != nil {
			setup(l)
		}
	}
	h.sh = sh
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- sh.Run(ctx) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) stop(t *testing.T) {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func (h *harness) waitsOf(name string) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.waits[name])
}

func cursor(t *testing.T, st *store.Store, name string) int64 {
	t.Helper()
	c, err := st.Cursor(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeliversEverythingInOrderInBatches(t *testing.T) {
	st := openStore(t, "")
	want := appendN(t, st, 0, 1200)
	a, b := &fakeSink{}, &fakeSink{}
	start(t, st,
		Target{Name: "a", Sink: a, Batch: Batch{MaxRecords: 500}},
		Target{Name: "b", Sink: b, Batch: Batch{MaxRecords: 5000, MaxBytes: 30_000}})
	want = append(want, appendN(t, st, 1200, 300)...) // arrives while shipping
	waitFor(t, "both sinks to confirm everything", func() bool {
		return cursor(t, st, "a") == 1500 && cursor(t, st, "b") == 1500
	})
	for name, f := range map[string]*fakeSink{"a": a, "b": b} {
		if d := sinktest.Diff(f.records(), want); d != "" {
			t.Errorf("sink %s got:\n%s", name, d)
		}
	}
	if slices.Max(a.batches) > 500 {
		t.Errorf("sink a got a batch of %d records, over MaxRecords 500", slices.Max(a.batches))
	}
	// About 120 bytes of data a record: 30,000 bytes hold some 250.
	if n := slices.Max(b.batches); n > 300 || len(b.batches) < 5 {
		t.Errorf("sink b batches %v do not respect MaxBytes 30000", b.batches)
	}
}

func TestPartialBatchLeavesAfterMaxWait(t *testing.T) {
	st := openStore(t, "")
	f := &fakeSink{}
	start(t, st, Target{Name: "f", Sink: f, Batch: Batch{MaxRecords: 1000, MaxWait: 5 * time.Millisecond}})
	want := appendN(t, st, 0, 3)
	waitFor(t, "3 records", func() bool { return len(f.records()) == 3 })
	if d := sinktest.Diff(f.records(), want); d != "" {
		t.Error(d)
	}
}

func TestRetryHonoursRetryAfterThenBacksOff(t *testing.T) {
	st := openStore(t, "")
	want := appendN(t, st, 0, 10)
	f := &fakeSink{fail: func(call int, _ []record.Record) error {
		switch {
		case call <= 3:
			return &sink.RetryableError{Err: io.ErrUnexpectedEOF}
		case call <= 5:
			return fmt.Errorf("write: %w", &sink.RetryableError{Err: errors.New("429 too many requests"), After: 7 * time.Second})
		case call == 6:
			return &sink.RetryableError{Err: errors.New("429"), After: time.Hour} // capped
		}
		return nil
	}}
	h := start(t, st, Target{Name: "f", Sink: f, Retry: Retry{Min: time.Second, Max: 3 * time.Second, MaxRetryAfter: time.Minute}})
	waitFor(t, "delivery", func() bool { return cursor(t, st, "f") == 10 })
	// 1s, 2s, 4s->3s backoff at the top of the jitter range (half fixed,
	// half random), then Retry-After as given, then capped.
	wantWaits := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 7 * time.Second, 7 * time.Second, time.Minute}
	if got := h.waitsOf("f"); !slices.Equal(got, wantWaits) {
		t.Errorf("waits = %v, want %v", got, wantWaits)
	}
	if d := sinktest.Diff(f.records(), want); d != "" {
		t.Error(d)
	}
	if got := testutil.ToFloat64(h.sh.loops[0].m.failed); got != 6 {
		t.Errorf("failed = %v, want 6", got)
	}
	if got := testutil.ToFloat64(h.sh.loops[0].m.retried); got != 6 {
		t.Errorf("retried = %v, want 6", got)
	}
	if got := testutil.ToFloat64(h.sh.loops[0].m.sent); got != 10 {
		t.Errorf("sent = %v, want 10", got)
	}
	// The store counts every failed write, repeats of one message too,
	// for the dashboard and `tapline query sinks` in another process.
	if states, err := st.SinkStates(t.Context(), []string{"f"}); err != nil || states[0].Retries != 6 {
		t.Errorf("retries in the store = %+v, %v; want 6", states, err)
	}
}

// flakyStore fails its first SinkFailed calls.
type flakyStore struct {
	*store.Store
	mu    sync.Mutex
	fails int
}

func (f *flakyStore) SinkFailed(ctx context.Context, sink, msg string, retries int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return errors.New("database is locked")
	}
	return f.Store.SinkFailed(ctx, sink, msg, retries)
}

func TestRetriesTheStoreMissedAreStoredLater(t *testing.T) {
	st := openStore(t, "")
	appendN(t, st, 0, 10)
	f := &fakeSink{fail: func(call int, _ []record.Record) error {
		if call <= 5 {
			return &sink.RetryableError{Err: errors.New("503 service unavailable")}
		}
		return nil
	}}
	start(t, &flakyStore{Store: st, fails: 2}, Target{Name: "f", Sink: f})
	waitFor(t, "delivery", func() bool { return cursor(t, st, "f") == 10 })
	if states, err := st.SinkStates(t.Context(), []string{"f"}); err != nil || states[0].Retries != 5 {
		t.Errorf("retries in the store = %+v, %v; want 5", states, err)
	}
}

func TestWait(t *testing.T) {
	l := &loop{retry: Retry{Min: 100 * time.Millisecond, Max: 10 * time.Second}.withDefaults()}
	tests := []struct {
		name      string
		attempt   int
		hint      time.Duration
		retryable bool
		jitter    int64 // fraction of the range, in 1/4
		lo, hi    time.Duration
	}{
		{"first retry", 1, 0, true, 0, 50 * time.Millisecond, 100 * time.Millisecond},
		{"grows", 4, 0, true, 0, 400 * time.Millisecond, 800 * time.Millisecond},
		{"capped", 20, 0, true, 0, 5 * time.Second, 10 * time.Second},
		{"no overflow", 200, 0, true, 0, 5 * time.Second, 10 * time.Second},
		{"not retryable waits the longest", 1, 0, false, 0, 5 * time.Second, 10 * time.Second},
		{"hint wins", 9, 3 * time.Second, true, 0, 3 * time.Second, 3 * time.Second},
		{"hint capped", 1, time.Hour, true, 0, 5 * time.Minute, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, j := range []func(int64) int64{
				func(int64) int64 { return 0 },
				func(n int64) int64 { return n - 1 },
			} {
				l.jitter = j
				if got := l.wait(tt.attempt, tt.hint, tt.retryable); got < tt.lo || got > tt.hi {
					t.Errorf("wait = %v, want in [%v, %v]", got, tt.lo, tt.hi)
				}
			}
		})
	}
}

func TestDownSinkDelaysOnlyItself(t *testing.T) {
	st := openStore(t, "")
	want := appendN(t, st, 0, 400)
	var down sync.Mutex // held while the destination is down
	down.Lock()
	slow := &fakeSink{fail: func(int, []record.Record) error {
		if down.TryLock() {
			down.Unlock()
			return nil
		}
		return &sink.RetryableError{Err: errors.New("503 service unavailable")}
	}}
	fast := &fakeSink{}
	start(t, st, Target{Name: "slow", Sink: slow, Batch: Batch{MaxRecords: 50}}, Target{Name: "fast", Sink: fast, Batch: Batch{MaxRecords: 50}})
	waitFor(t, "the healthy sink", func() bool { return cursor(t, st, "fast") == 400 })
	if n := len(slow.records()); n != 0 || cursor(t, st, "slow") != 0 {
		t.Fatalf("down sink got %d records", n)
	}
	var states []store.SinkState
	waitFor(t, "the down sink's last error and retries", func() bool {
		var err error
		states, err = st.SinkStates(t.Context(), []string{"slow"})
		// The count grows while the outage lasts, one message or not.
		return err == nil && states[0].LastError != "" && states[0].Retries >= 3
	})
	if !strings.Contains(states[0].LastError, "503 service unavailable") || states[0].Lag != 400 {
		t.Errorf("state of the down sink = %+v", states[0])
	}
	down.Unlock()
	waitFor(t, "the recovered sink", func() bool { return cursor(t, st, "slow") == 400 })
	if d := sinktest.Diff(slow.records(), want); d != "" {
		t.Error(d)
	}
	states, _ = st.SinkStates(t.Context(), []string{"slow"})
	if states[0].LastError != "" {
		t.Errorf("last error not cleared after recovery: %q", states[0].LastError)
	}
}

func TestPoisonRecordIsDeadLetteredAlone(t *testing.T) {
	for _, named := range []bool{false, true} {
		t.Run(fmt.Sprintf("indexes named %v", named), func(t *testing.T) {
			st := openStore(t, "")
			recs := appendN(t, st, 0, 100)
			poison := map[string]bool{recs[37].ID: true, recs[38].ID: true, recs[90].ID: true}
			f := &fakeSink{fail: func(_ int, batch []record.Record) error {
				var bad []int
				for i, r := range batch {
					if poison[r.ID] {
						bad = append(bad, i)
					}
				}
				switch {
				case len(bad) == 0:
					return nil
				case named:
					return sink.InvalidRecords(nil, "record too large", bad...)
				default:
					return fmt.Errorf("write: %w", sink.Invalid(errors.New("400 bad request"), ""))
				}
			}}
			h := start(t, st, Target{Name: "f", Sink: f, Batch: Batch{MaxRecords: 100}})
			waitFor(t, "delivery", func() bool { return cursor(t, st, "f") == 100 })
			var want []record.Record
			for _, r := range recs {
				if !poison[r.ID] {
					want = append(want, r)
				}
			}
			if d := sinktest.Diff(f.records(), want); d != "" {
				t.Errorf("delivered:\n%s", d)
			}
			var dead []string
			err := st.DeadLetters(t.Context(), "f", func(d store.DeadLetter) error {
				dead = append(dead, d.Record.ID)
				if named && d.Reason != "record too large" || !named && !strings.Contains(d.Reason, "400 bad request") {
					t.Errorf("dead letter %s reason %q", d.Record.ID, d.Reason)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(dead)
			if want := []string{recs[37].ID, recs[38].ID, recs[90].ID}; !slices.Equal(dead, want) {
				t.Errorf("dead letters %v, want %v", dead, want)
			}
			if got := testutil.ToFloat64(h.sh.loops[0].m.dead); got != 3 {
				t.Errorf("dead-letter metric = %v", got)
			}
			if w := h.waitsOf("f"); len(w) != 0 {
				t.Errorf("an invalid batch is split, not retried with backoff: waits %v", w)
			}
		})
	}
}

func TestCursorMovesOnlyAfterConfirmation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tapline.db")
	st := openStore(t, path)
	want := appendN(t, st, 0, 30)
	entered := make(chan struct{})
	// A sink that blocks on its second batch until the shipper is stopped.
	blocking := &blockingSink{fakeSink: &fakeSink{}, block: 2, entered: entered}
	h := start(t, st, Target{Name: "s", Sink: blocking, Batch: Batch{MaxRecords: 10}})
	<-entered
	if c := cursor(t, st, "s"); c != 10 {
		t.Fatalf("cursor = %d while the second batch is in flight, want 10", c)
	}
	h.stop(t) // ends the write in flight: its outcome is unknown
	if c := cursor(t, st, "s"); c != 10 {
		t.Fatalf("cursor = %d after an abandoned batch, want 10", c)
	}
	// A new shipper starts again after the last confirmed batch.
	again := &fakeSink{}
	start(t, st, Target{Name: "s", Sink: again, Batch: Batch{MaxRecords: 10}})
	waitFor(t, "redelivery", func() bool { return cursor(t, st, "s") == 30 })
	if d := sinktest.Diff(again.records(), want[10:]); d != "" {
		t.Error(d)
	}
	if !blocking.closed {
		t.Error("Run did not close the sink")
	}
}

// blockingSink blocks its block-th Write until ctx ends.
type blockingSink struct {
	*fakeSink
	block   int
	entered chan struct{}
}

func (b *blockingSink) Write(ctx context.Context, recs []record.Record) error {
	b.mu.Lock()
	b.calls++
	call := b.calls
	b.mu.Unlock()
	if call == b.block {
		close(b.entered)
		<-ctx.Done()
		return ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, sinktest.Clone(recs)...)
	return nil
}

func TestNewRejectsBadTargets(t *testing.T) {
	st := openStore(t, "")
	tests := []struct {
		name    string
		targets []Target
		want    string
	}{
		{"no name", []Target{{Sink: &fakeSink{}}}, "has no name"},
		{"twice", []Target{{Name: "a", Sink: &fakeSink{}}, {Name: "a", Sink: &fakeSink{}}}, `"a" is used twice`},
		{"no sink", []Target{{Name: "a"}}, "has no destination"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(st, tt.targets, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestKindsSplitOneDestinationIntoTwoLoops(t *testing.T) {
	st := openStore(t, "")
	recs := appendN(t, st, 0, 900) // alternating kinds
	gw, al := &fakeSink{}, &fakeSink{}
	start(t, st,
		Target{Name: "w.gateway_request", Sink: gw, Kinds: []record.Kind{record.KindGatewayRequest}, Batch: Batch{MaxRecords: 100}},
		Target{Name: "w.activity_log", Sink: al, Kinds: []record.Kind{record.KindActivityLog}, Batch: Batch{MaxRecords: 100}})
	// Every cursor passes every record, delivered or passed over.
	waitFor(t, "both loops", func() bool {
		return cursor(t, st, "w.gateway_request") == 900 && cursor(t, st, "w.activity_log") == 900
	})
	var wantGW, wantAL []record.Record
	for _, r := range recs {
		if r.Kind == record.KindGatewayRequest {
			wantGW = append(wantGW, r)
		} else {
			wantAL = append(wantAL, r)
		}
	}
	if d := sinktest.Diff(gw.records(), wantGW); d != "" {
		t.Errorf("gateway loop:\n%s", d)
	}
	if d := sinktest.Diff(al.records(), wantAL); d != "" {
		t.Errorf("activity loop:\n%s", d)
	}
	if n := slices.Max(gw.batches); n > 100 {
		t.Errorf("a gateway batch of %d records, over MaxRecords 100", n)
	}
}

func TestKindsWithNothingToTakeStillMoveTheCursor(t *testing.T) {
	st := openStore(t, "")
	var recs []record.Record
	for _, r := range sinktest.Records(0, 300) {
		if r.Kind == record.KindGatewayRequest {
			recs = append(recs, r)
		}
	}
	if _, err := st.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	al := &fakeSink{}
	start(t, st, Target{Name: "a", Sink: al, Kinds: []record.Kind{record.KindActivityLog}, Batch: Batch{MaxRecords: 40}})
	waitFor(t, "the cursor past records of another kind", func() bool { return cursor(t, st, "a") == int64(len(recs)) })
	if al.calls != 0 {
		t.Errorf("the sink was called %d times with nothing to take", al.calls)
	}
}
