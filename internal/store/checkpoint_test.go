package store

import (
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// TestAppendWithCheckpoint proves the checkpoint of a scope is stored with
// the records in one call, that known ids are skipped and not counted, and
// that scopes keep their own checkpoints.
func TestAppendWithCheckpoint(t *testing.T) {
	s := openStore(t, Config{})
	ctx := t.Context()
	if _, ok, err := s.Checkpoint(ctx, "mg/a"); err != nil || ok {
		t.Fatalf("Checkpoint before any = ok %v, err %v; want none", ok, err)
	}
	until := t0.Add(time.Hour)
	recs := []record.Record{rec("al-1", t0, `{"n":1}`), rec("al-2", t0, `{"n":2}`)}
	if n, err := s.AppendWithCheckpoint(ctx, recs, "mg/a", until); err != nil || n != 2 {
		t.Fatalf("AppendWithCheckpoint = %d, %v; want 2, nil", n, err)
	}
	got, ok, err := s.Checkpoint(ctx, "mg/a")
	if err != nil || !ok || !got.Equal(until) {
		t.Fatalf("Checkpoint = %v, %v, %v; want %v", got, ok, err, until)
	}
	// A re-run: same records, later checkpoint, no new records.
	if n, err := s.AppendWithCheckpoint(ctx, recs, "mg/a", until.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("second AppendWithCheckpoint = %d, %v; want 0, nil", n, err)
	}
	if got, _, _ := s.Checkpoint(ctx, "mg/a"); !got.Equal(until.Add(time.Hour)) {
		t.Errorf("Checkpoint after second = %v", got)
	}
	// Empty recs still set the checkpoint; other scopes are untouched.
	if _, err := s.AppendWithCheckpoint(ctx, nil, "mg/b", until); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s.Checkpoint(ctx, "mg/b"); !ok || !got.Equal(until) {
		t.Errorf("Checkpoint mg/b = %v, %v", got, ok)
	}
}

// TestAppendWithCheckpointInvalidMovesNothing proves an invalid record
// leaves the checkpoint where it was: records and checkpoint are one write.
func TestAppendWithCheckpointInvalidMovesNothing(t *testing.T) {
	s := openStore(t, Config{})
	ctx := t.Context()
	if _, err := s.AppendWithCheckpoint(ctx, nil, "mg/a", t0); err != nil {
		t.Fatal(err)
	}
	bad := []record.Record{rec("al-1", t0, `{"n":1}`), rec("al-2", t0, `not json`)}
	if _, err := s.AppendWithCheckpoint(ctx, bad, "mg/a", t0.Add(time.Hour)); err == nil {
		t.Fatal("AppendWithCheckpoint of invalid record succeeded")
	}
	if got, _, _ := s.Checkpoint(ctx, "mg/a"); !got.Equal(t0) {
		t.Errorf("Checkpoint = %v, want %v (unmoved)", got, t0)
	}
	st, err := s.Stats(ctx)
	if err != nil || st.Records != 0 {
		t.Errorf("Stats = %+v, %v; want no records", st, err)
	}
}
