package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

func TestConfirmDeadLettersAndCursor(t *testing.T) {
	cfg := testConfig(t)
	s := openStore(t, cfg)
	ctx := t.Context()
	for i := 1; i <= 5; i++ {
		mustAppend(t, s, rec(fmt.Sprint("r", i), t0.Add(time.Duration(i)*time.Second), fmt.Sprintf(`{"n":%d}`, i)))
	}
	if err := s.SinkFailed(ctx, "lake", "write kafka sink: broker unreachable", 1); err != nil {
		t.Fatal(err)
	}
	st, err := s.SinkStates(ctx, []string{"lake", "never"})
	if err != nil {
		t.Fatal(err)
	}
	if st[0].LastError != "write kafka sink: broker unreachable" || st[0].LastErrorAt.IsZero() || st[0].Retries != 1 || st[0].Lag != 5 ||
		!st[0].Oldest.Equal(t0.Add(time.Second)) || !st[0].Confirmed.IsZero() {
		t.Errorf("state before confirm = %+v", st[0])
	}
	if st[1] != (SinkState{Sink: "never", Lag: 5, Oldest: t0.Add(time.Second)}) {
		t.Errorf("state of an unseen sink = %+v", st[1])
	}

	poison := rec("r2", t0.Add(2*time.Second), `{"n":2}`)
	dead := []DeadLetter{{Seq: 2, Record: poison, Reason: "record of 2 MB is over the 1 MB limit"}}
	if err := s.Confirm(ctx, "lake", 3, dead); err != nil {
		t.Fatal(err)
	}
	// A replay of the same batch after a crash replaces, never doubles.
	if err := s.Confirm(ctx, "lake", 3, dead); err != nil {
		t.Fatal(err)
	}
	st, err = s.SinkStates(ctx, []string{"lake"})
	if err != nil {
		t.Fatal(err)
	}
	got := st[0]
	if got.Cursor != 3 || got.Lag != 2 || got.LastError != "" || !got.LastErrorAt.IsZero() || got.DeadLetters != 1 || got.Retries != 1 ||
		got.Confirmed.IsZero() || !got.Oldest.Equal(t0.Add(4*time.Second)) {
		t.Errorf("state after confirm = %+v", got)
	}
	if c, _ := s.Cursor(ctx, "lake"); c != 3 {
		t.Errorf("Cursor = %d, want 3", c)
	}
	var letters []DeadLetter
	if err := s.DeadLetters(ctx, "", func(d DeadLetter) error { letters = append(letters, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 {
		t.Fatalf("dead letters = %+v", letters)
	}
	d := letters[0]
	d.At = time.Time{}
	want := DeadLetter{Sink: "lake", Seq: 2, Record: poison, Reason: dead[0].Reason}
	want.Record.Time = want.Record.Time.UTC()
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("dead letter (-want +got):\n%s", diff)
	}
	if err := s.DeadLetters(ctx, "other", func(DeadLetter) error { t.Error("dead letter of another sink"); return nil }); err != nil {
		t.Fatal(err)
	}

	// Failures add up across the confirm between them, which clears only
	// the last error.
	if err := s.SinkFailed(ctx, "lake", "write kafka sink: timeout", 2); err != nil {
		t.Fatal(err)
	}

	if err := s.SinkFailed(ctx, "splunk", "down", 0); err != nil {
		t.Fatal(err)
	}
	if names, err := s.KnownSinks(ctx); err != nil || !slices.Equal(names, []string{"lake", "splunk"}) {
		t.Errorf("KnownSinks = %v, %v", names, err)
	}

	// The dead letter outlives its record and the state survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(ctx, cfg.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	st, err = ro.SinkStates(ctx, []string{"lake"})
	if err != nil || st[0].Cursor != 3 || st[0].DeadLetters != 1 || st[0].Retries != 3 ||
		st[0].LastError != "write kafka sink: timeout" {
		t.Errorf("read-only state = %+v, %v", st, err)
	}
}

func TestSinkErrorIsClipped(t *testing.T) {
	s := openStore(t, Config{})
	long := strings.Repeat("é", 2000)
	if err := s.SinkFailed(t.Context(), "x", long, 1); err != nil {
		t.Fatal(err)
	}
	st, err := s.SinkStates(t.Context(), []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st[0].LastError); n > maxReasonBytes+len("…") || !strings.HasSuffix(st[0].LastError, "é…") {
		t.Errorf("last error of %d bytes not clipped on a rune boundary: ...%q", n, st[0].LastError[n-8:])
	}
}

func TestReleasedSignalsNewRecords(t *testing.T) {
	s := openStore(t, Config{})
	last, changed := s.Released()
	if last != 0 {
		t.Fatalf("last seq of an empty store = %d", last)
	}
	select {
	case <-changed:
		t.Fatal("changed closed before any record")
	default:
	}
	// A pending record is not released: no signal.
	if err := s.Begin(t.Context(), stateRec("p", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Fatal("changed closed by a pending record")
	default:
	}
	mustAppend(t, s, rec("a", t0, `{}`))
	<-changed // closed by the commit that released seq 1; a hang fails the test
	if last, _ := s.Released(); last != 1 {
		t.Errorf("last seq = %d, want 1", last)
	}
}
