package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/config"
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
	if err := st.SinkFailed(t.Context(), "lake", "write kafka sink: broker 127.0.0.1:9 unreachable", 7); err != nil {
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
	// Each format shows the retries under their own name.
	if cells := strings.Fields(lines[0]); len(cells) < 7 || cells[6] != "RETRIES" ||
		strings.Fields(lines[1])[6] != "0" || strings.Fields(lines[2])[6] != "7" {
		t.Errorf("table has no RETRIES column of 0 and 7:\n%s", out)
	}
	code, out, _ = tapline(t, "query", "sinks", "--config", cfg, "--format", "csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || code != 0 || len(rows) != 3 || !slices.Equal(rows[0], sinkColumns) || rows[0][6] != "retries" ||
		rows[1][6] != "0" || rows[2][6] != "7" {
		t.Errorf("csv (%d, %v):\n%s", code, err, out)
	}

	code, out, _ = tapline(t, "query", "sinks", "--store", db, "--format", "json")
	var row sinkRow
	if code != 0 || json.Unmarshal([]byte(out), &row) != nil || row.Sink != "lake" || row.ConfirmedSeq != 6 ||
		row.LagRecords != 4 || row.DeadLetters != 1 || row.Retries != 7 || row.LastErrorAt == nil {
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

var metricsRE = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)

// serve ships a store to a file sink and serves the sink metrics on
// metrics.listen.
func TestServeShipsAndServesMetrics(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "t.db")
	st, err := store.Open(t.Context(), store.Config{Path: db}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(t.Context(), sinktest.Records(0, 25)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("store: {path: "+db+"}\nsinks:\n  - {name: local, file: {dir: "+filepath.Join(dir, "out")+"}}\nmetrics: {listen: 127.0.0.1:0}\n"), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, io.Discard, logs) }()
	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := metricsRE.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("no metrics listener in:\n%s", logs.String())
	}
	wants := []string{
		`tapline_sink_records_sent_total{sink="local"} 25`,
		`tapline_sink_write_failures_total{sink="local"} 0`,
		`tapline_sink_write_retries_total{sink="local"} 0`,
		`tapline_sink_dead_letters_total{sink="local"} 0`,
		`tapline_sink_lag_records{sink="local"} 0`,
		`tapline_sink_lag_seconds{sink="local"} 0`,
		`go_goroutines `,
	}
	missing := func(body string) []string {
		var out []string
		for _, w := range wants {
			if !strings.Contains(body, w) {
				out = append(out, w)
			}
		}
		return out
	}
	// The lag gauges follow the cursor, a moment after the sent counter:
	// poll until every line is there.
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if body = string(b); len(missing(body)) == 0 {
			break
		}
	}
	if m := missing(body); len(m) > 0 {
		t.Errorf("metrics lack %q:\n%.2000s", m, body)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("serve exited %d:\n%s", code, logs.String())
	}
}

func TestLogAnalyticsRunsOneLoopPerStream(t *testing.T) {
	cfg, err := config.Parse([]byte(`
sinks:
  - name: workspace
    log_analytics:
      endpoint: https://x.eastus-1.ingest.monitor.azure.com
      dcr_immutable_id: dcr-0
      streams: {gateway_request: Custom-A, activity_log: Custom-B}
  - name: one
    log_analytics: {endpoint: "https://x.eastus-1.ingest.monitor.azure.com", dcr_immutable_id: dcr-0, streams: {activity_log: Custom-B}}
  - {name: files, file: {dir: /tmp/x}}
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range cfg.Sinks {
		for _, l := range loops(s) {
			got = append(got, fmt.Sprint(l.name, l.kinds))
		}
	}
	want := []string{"workspace.activity_log[activity_log]", "workspace.gateway_request[gateway_request]", "one[]", "files[]"}
	if !slices.Equal(got, want) {
		t.Errorf("loops = %q, want %q", got, want)
	}
}
