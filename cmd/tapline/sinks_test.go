package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/store"
)

func TestQuerySinks(t *testing.T) {
	db := filepath.Join(t.TempDir(), "t.db")
	st, err := store.Open(t.Context(), store.Config{Path: db}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	recs := sinktest.Records(0, 10)
	if _, err := st.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	dead := []store.DeadLetter{{Seq: 4, Record: recs[3], Reason: "record of 2 MB is over the 1 MB limit"}}
	if err := st.Confirm(t.Context(), "lake", 6, dead); err != nil {
		t.Fatal(err)
	}
	if err := st.SetSinkError(t.Context(), "lake", "write kafka sink: broker 127.0.0.1:9 unreachable"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("store: {path: "+db+"}\nsinks:\n  - {name: files, file: {dir: /tmp/never}}\n  - {name: lake, kafka: {brokers: [\"b:9093\"], topic: t}}\n"), 0o600)

	code, out, errs := tapline(t, "query", "sinks", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SINK") ||
		!strings.HasPrefix(lines[1], "files ") || !strings.Contains(lines[1], " 10 ") ||
		!strings.HasPrefix(lines[2], "lake ") || !strings.Contains(lines[2], "broker 127.0.0.1:9 unreachable") {
		t.Errorf("table:\n%s", out)
	}

	code, out, _ = tapline(t, "query", "sinks", "--store", db, "--format", "json")
	var row sinkRow
	if code != 0 || json.Unmarshal([]byte(out), &row) != nil || row.Sink != "lake" || row.ConfirmedSeq != 6 ||
		row.LagRecords != 4 || row.DeadLetters != 1 || row.LastErrorAt == nil {
		t.Errorf("json (%d): %s", code, out)
	}

	code, out, _ = tapline(t, "query", "sinks", "--store", db, "--dead-letters", "--format", "json")
	var dl deadLetterRow
	if code != 0 || json.Unmarshal([]byte(out), &dl) != nil || dl.Record.ID != recs[3].ID ||
		string(dl.Record.Data) != string(recs[3].Data) || dl.Reason != dead[0].Reason || dl.Sink != "lake" {
		t.Errorf("dead letters (%d): %s", code, out)
	}
	code, out, _ = tapline(t, "query", "sinks", "--store", db, "--dead-letters", "--format", "csv")
	if code != 0 || !strings.HasPrefix(out, "dead_lettered_at,sink,record_id,") || !strings.Contains(out, ",lake,"+recs[3].ID+",") {
		t.Errorf("dead letters csv (%d): %s", code, out)
	}
	if code, _, errs := tapline(t, "query", "sinks", "--store", db, "--since", "1h"); code != 2 {
		t.Errorf("--since: exit %d, %s", code, errs)
	}
}

func TestCheckProbesSinks(t *testing.T) {
	dir := t.TempDir()
	blocked := filepath.Join(dir, "blocked")
	os.WriteFile(blocked, []byte("a file where a directory should be"), 0o600)
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("sinks:\n  - {name: good, file: {dir: "+filepath.Join(dir, "out")+"}}\n  - {name: bad, file: {dir: "+filepath.Join(blocked, "sub")+"}}\n"), 0o600)
	code, out, errs := tapline(t, "check", "--config", cfg)
	if code != 1 || !strings.Contains(out, "good  file") || !strings.Contains(out, "bad   file         FAILED") ||
		!strings.Contains(errs, "1 of 2 sinks failed their probe") {
		t.Errorf("check exit %d:\n%s\n%s", code, out, errs)
	}
}
