package store

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

// decodeExact decodes a payload keeping numbers as written.
func decodeExact(t *testing.T, data []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return m
}

func TestReopenRecoversPending(t *testing.T) {
	cfg := testConfig(t)
	s := openStore(t, cfg)
	ctx := t.Context()
	ttft := 12.5
	started := gwRec(t, "a", t0, record.GatewayRequest{
		RequestID: "req-a", Start: t0, TTFTMS: &ttft, ClientIP: "203.0.113.7",
		Principal:  record.Principal{Kind: record.PrincipalEntraUser, UPN: "zoë@contoso.com", Roles: []string{"r1", "r2"}},
		Deployment: "gpt-4o", Operation: record.OpChatCompletions, Stream: true,
		Prompt: &record.Content{Text: "quote \" and \\ and \u2028 and emoji 🚀", Bytes: 42, Truncated: true},
		State:  record.StateStarted,
	})
	// A number beyond 2^53 and a nested object must survive json_set as is.
	started.Data = append(bytes.TrimSuffix(started.Data, []byte("}")), `,"extra":{"big":9007199254740993,"list":[1,2.50,{"x":null}]}}`...)
	if err := s.Begin(ctx, started); err != nil {
		t.Fatal(err)
	}
	if err := s.Begin(ctx, stateRec("b", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, stateRec("c", record.StateCompleted))
	if err := s.Finish(ctx, stateRec("b", record.StateCompleted)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, cfg)
	if got := s.Recovered(); got != 1 {
		t.Errorf("Recovered() = %d, want 1", got)
	}
	want := []released{{1, "c", "completed"}, {2, "b", "completed"}, {3, "a", "interrupted"}}
	if diff := cmp.Diff(want, readReleased(t, s)); diff != "" {
		t.Errorf("released after reopen (-want +got):\n%s", diff)
	}
	got := allRecords(t, s, Filter{State: record.StateInterrupted})
	if len(got) != 1 {
		t.Fatalf("%d interrupted records, want 1", len(got))
	}
	wantPayload := decodeExact(t, started.Data)
	wantPayload["state"] = record.StateInterrupted
	if diff := cmp.Diff(wantPayload, decodeExact(t, got[0].Data)); diff != "" {
		t.Errorf("recovered payload (-want +got):\n%s", diff)
	}
	wantEnv := started
	wantEnv.Data = got[0].Data
	if diff := cmp.Diff(wantEnv, got[0]); diff != "" {
		t.Errorf("recovered envelope (-want +got):\n%s", diff)
	}
	if st := checkStats(t, s); st.Pending != 0 || st.LastSeq != 3 {
		t.Errorf("Stats pending=%d lastSeq=%d, want 0 and 3", st.Pending, st.LastSeq)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s = openStore(t, cfg); s.Recovered() != 0 {
		t.Errorf("second reopen recovered %d, want 0", s.Recovered())
	}
}

func TestMigrations(t *testing.T) {
	cfg := testConfig(t)
	s := openStore(t, cfg)
	var version int
	if err := s.rdb.QueryRowContext(t.Context(), `PRAGMA user_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != len(migrations) {
		t.Errorf("user_version = %d, want %d", version, len(migrations))
	}
	var mode string
	if err := s.rdb.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	mustAppend(t, s, rec("x", t0, `{}`))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening applies nothing twice and keeps the data.
	s = openStore(t, cfg)
	if got := allRecords(t, s, Filter{}); len(got) != 1 {
		t.Errorf("%d records after reopen, want 1", len(got))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A database from a newer build is refused.
	db, err := sql.Open("sqlite", dsn(cfg.Path, writeParams))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(t.Context(), cfg, nil); err == nil {
		s.Close()
		t.Error("Open of a schema version 99 database: no error")
	}
}

func TestOpenConfig(t *testing.T) {
	path := testConfig(t).Path
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no path", Config{}},
		{"negative max_bytes", Config{Path: path, MaxBytes: -1}},
		{"unknown when_full", Config{Path: path, WhenFull: "block"}},
		{"negative retention", Config{Path: path, Retention: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := Open(t.Context(), tt.cfg, nil); err == nil {
				s.Close()
				t.Errorf("Open(%+v): no error", tt.cfg)
			}
		})
	}
}

func TestOpenReadOnly(t *testing.T) {
	cfg := testConfig(t)
	w := openStore(t, cfg)
	ctx := t.Context()
	mustAppend(t, w, stateRec("done", record.StateCompleted))
	if err := w.Begin(ctx, stateRec("live", record.StateStarted)); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReadOnly(ctx, cfg.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if r.Recovered() != 0 {
		t.Errorf("read-only open recovered %d records of the live writer", r.Recovered())
	}
	states := func() map[string]string {
		got := map[string]string{}
		for _, rec := range allRecords(t, r, Filter{}) {
			got[rec.ID] = payloadState(t, rec.Data)
		}
		return got
	}
	// Begin commits to the begin log; the writer copies the entry where other
	// processes see it (TestBegunShownToOtherProcesses: once it is a second
	// old; here at once, as for a query of its own process).
	if err := w.showBegun(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"done": "completed", "live": "started"}, states()); diff != "" {
		t.Errorf("read-only view (-want +got):\n%s", diff)
	}
	// The writer goes on; the reader sees its commits.
	if err := w.Finish(ctx, stateRec("live", record.StateCompleted)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"done": "completed", "live": "completed"}, states()); diff != "" {
		t.Errorf("read-only view after Finish (-want +got):\n%s", diff)
	}
	st, err := r.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Stats{Records: 2, Pending: 0, Bytes: checkStats(t, w).Bytes, LastSeq: 2}); st != want {
		t.Errorf("read-only Stats = %+v, want %+v", st, want)
	}
	if _, err := r.Append(ctx, []record.Record{rec("x", t0, `{}`)}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Append on a read-only store: %v, want ErrReadOnly", err)
	}
	if err := r.SetCursor(ctx, "s", 1); !errors.Is(err, ErrReadOnly) {
		t.Errorf("SetCursor on a read-only store: %v, want ErrReadOnly", err)
	}
	missing := filepath.Join(t.TempDir(), "missing.db")
	if s, err := OpenReadOnly(ctx, missing, nil); err == nil {
		s.Close()
		t.Error("OpenReadOnly of a missing file: no error")
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenReadOnly created %s", missing)
	}
}

// TestSecondWriter shows a second writer process on the same database (a
// mistake) fails loudly instead of losing records to seq conflicts.
func TestSecondWriter(t *testing.T) {
	cfg := testConfig(t)
	a := openStore(t, cfg)
	b := openStore(t, cfg)
	mustAppend(t, a, rec("from-a", t0, `{}`))
	n, err := b.Append(t.Context(), []record.Record{rec("from-b", t0, `{}`)})
	if err == nil {
		t.Fatalf("second writer's Append with a taken seq: added %d, no error", n)
	}
	t.Logf("second writer: %v", err)
}
