package store

import (
	"errors"
	"log/slog"
	"testing"

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
