package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
)

func TestFinishAsync(t *testing.T) {
	s := openStore(t, Config{})
	if err := s.Begin(t.Context(), stateRec("a", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	if err := s.FinishAsync(t.Context(), stateRec("a", record.StateCompleted), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("outcome: %v", err)
	}
	// Once done has fired the record is committed and released, in place.
	got := readReleased(t, s)
	if len(got) != 1 || got[0].ID != "a" || got[0].State != record.StateCompleted {
		t.Fatalf("released %+v", got)
	}
	if err := s.FinishAsync(t.Context(), record.Record{ID: "bad"}, nil); err == nil {
		t.Error("an invalid record was queued")
	}
}

func TestFinishAsyncReportsFull(t *testing.T) {
	s := openStore(t, Config{MaxBytes: 10})
	done := make(chan error, 1)
	if err := s.FinishAsync(t.Context(), stateRec("big", record.StateCompleted), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, record.ErrFull) {
		t.Fatalf("want ErrFull through the callback, got %v", err)
	}
}

// A clean Close commits every queued completion, so a gateway that stops
// loses none of them.
func TestCloseCommitsQueuedFinishes(t *testing.T) {
	cfg := testConfig(t)
	s, err := Open(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		id := string(rune('a'+i%26)) + string(rune('0'+i/26%10)) + string(rune('A'+i/260))
		if err := s.Begin(t.Context(), stateRec(id, record.StateStarted)); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishAsync(t.Context(), stateRec(id, record.StateCompleted), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if s.Recovered() != 0 {
		t.Errorf("%d queued completions were lost at Close", s.Recovered())
	}
	if got := readReleased(t, s); len(got) != n {
		t.Errorf("%d released records, want %d", len(got), n)
	}
}

// Completions nobody waits for share the commit of the next write instead
// of paying one each.
func TestFinishAsyncSharesCommits(t *testing.T) {
	s := openStore(t, Config{})
	before, err := s.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	done := make(chan error, n)
	for i := range n {
		id := string(rune('a' + i))
		if err := s.FinishAsync(t.Context(), stateRec(id, record.StateCompleted), func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Begin(t.Context(), stateRec("next-call", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	after, _ := s.Stats(t.Context())
	if c := after.Commits - before.Commits; c >= n+1 {
		t.Errorf("%d commits for %d completions and a begin: nothing was shared", c, n)
	}
	if got := len(readReleased(t, s)); got != n {
		t.Errorf("%d released, want %d", got, n)
	}
}

// A FinishAsync whose context has no deadline waits a bounded time for room
// in a full queue (a writer stuck on a hung disk), then fails; the ones
// queued before it are all committed once the writer moves again.
func TestFinishAsyncBoundsItsWaitForRoom(t *testing.T) {
	cfg := testConfig(t)
	cfg.queueWait = 50 * time.Millisecond
	s := openStore(t, cfg)
	entered, release := make(chan struct{}), make(chan struct{})
	unstick := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unstick) // before the store's Close, which waits for the writer
	stuck := make(chan error, 1)
	go func() {
		_, err := s.do(context.Background(), &request{op: opExec, fn: func(context.Context, *sql.Tx, int64) error {
			close(entered)
			<-release
			return nil
		}})
		stuck <- err
	}()
	<-entered
	done := make(chan error, queueSize)
	for i := range queueSize {
		id := fmt.Sprintf("queued-%d", i)
		if err := s.FinishAsync(context.Background(), stateRec(id, record.StateCompleted), func(err error) { done <- err }); err != nil {
			t.Fatalf("completion %d of a queue with room: %v", i, err)
		}
	}
	failed := make(chan error, 1)
	go func() {
		failed <- s.FinishAsync(context.Background(), stateRec("one-too-many", record.StateCompleted), nil)
	}()
	select {
	case err := <-failed:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("want a deadline error for a full queue, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FinishAsync still waits for room after 5 s")
	}
	unstick()
	if err := <-stuck; err != nil {
		t.Fatal(err)
	}
	for range queueSize {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := len(readReleased(t, s)); got != queueSize {
		t.Errorf("%d released, want %d", got, queueSize)
	}
}

// FinishAsync stores rec.Data without a copy: once done has been called the
// caller may reuse the buffer, and neither the stored record nor the usage
// sums the writer keeps running may change with it.
func TestFinishAsyncReleasesDataAtDone(t *testing.T) {
	s := openStore(t, Config{})
	if _, err := s.RollUp(t.Context()); err != nil { // caught up: running sums from now on
		t.Fatal(err)
	}
	rec := gwRec(t, "reused", t0, record.GatewayRequest{State: record.StateCompleted, Status: 200,
		Deployment: "gpt-4o", Operation: record.OpChatCompletions, Backend: "east", ModelReturned: "gpt-4o-2024-08-06",
		Principal: record.Principal{Kind: record.PrincipalKey, KeyName: "alice"},
		Usage:     &record.Usage{PromptTokens: 7, CompletionTokens: 5, TotalTokens: 12}})
	want := string(rec.Data)
	done := make(chan error, 1)
	if err := s.FinishAsync(t.Context(), rec, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range rec.Data { // the caller's next call reuses the buffer
		rec.Data[i] = 'x'
	}
	got, err := s.ReadAfter(t.Context(), 0, 10)
	if err != nil || len(got) != 1 || string(got[0].Record.Data) != want {
		t.Fatalf("stored %v, %v; want the record as it was queued", got, err)
	}
	if n, err := s.RollUp(t.Context()); err != nil || n != 1 || s.w.roll.fast == 0 {
		t.Fatalf("RollUp: %d, %v; want the record rolled up from the running sums", n, err)
	}
	got2, err := s.UsageFast(t.Context(), UsageQuery{By: []string{"principal", "deployment", "model", "operation", "backend"}})
	wantRow := UsageRow{Keys: []string{"key:alice", "gpt-4o", "gpt-4o-2024-08-06", record.OpChatCompletions, "east"},
		Requests: 1, PromptTokens: 7, CompletionTokens: 5, TotalTokens: 12}
	if err != nil || len(got2) != 1 || !reflect.DeepEqual(got2[0], wantRow) {
		t.Errorf("usage_hourly holds %+v, %v; want %+v", got2, err, wantRow)
	}
}
