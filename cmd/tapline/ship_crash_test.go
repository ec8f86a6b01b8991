package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/store"
)

// crashSink is one sink of the shipping crash test: its YAML entry and a
// way to read back what its destination holds.
type crashSink struct {
	name string
	yaml string // the entry under sinks:, without the name
	// loops are the names of the sink's delivery loops, whose cursors the
	// store keeps: the sink's name, or one per stream for Log Analytics.
	loops     []string
	delivered func(t *testing.T) []record.Record
}

var shippingRE = regexp.MustCompile(`msg=shipping (sinks=.*)`)

// Shipping across kill -9: `tapline serve` ships a full store to every
// kind of sink and is killed once each delivery loop has confirmed at
// least one batch and none has confirmed them all, so that every sink has
// batches in flight or still to send. After a restart every record
// reaches every sink; a record delivered twice is the same record.
func TestShippingSurvivesKill(t *testing.T) {
	const n = 60000
	dir := t.TempDir()
	db := filepath.Join(dir, "tapline.db")
	st, err := store.Open(t.Context(), store.Config{Path: db}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	want := sinktest.Records(0, n)
	if _, err := st.Append(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	st.Close()

	sinks := []crashSink{fileCrashSink(t, "files-small", 100), fileCrashSink(t, "files-large", 1500),
		blobCrashSink(t), splunkCrashSink(t), kafkaCrashSink(t), logAnalyticsCrashSink(t), eventHubsCrashSink(t)}
	var cfg strings.Builder
	// The token credential is the Logs Ingestion emulator's bearer.
	fmt.Fprintf(&cfg, "store: {path: %s}\nazure: {credential: token, access_token: %s}\nsinks:\n", db, crashLogsToken)
	var loops []string
	for _, s := range sinks {
		fmt.Fprintf(&cfg, "  - name: %s\n    %s\n", s.name, s.yaml)
		if s.loops == nil {
			s.loops = []string{s.name}
		}
		loops = append(loops, s.loops...)
	}
	cfgPath := filepath.Join(dir, "tapline.yaml")
	os.WriteFile(cfgPath, []byte(cfg.String()), 0o600)

	cursors := func() []int64 {
		ro, err := store.OpenReadOnly(t.Context(), db, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		var out []int64
		for _, l := range loops {
			c, err := ro.Cursor(t.Context(), l)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
		return out
	}
	// started reports whether every loop has confirmed a batch; partWay
	// counts the loops that have confirmed some records but not all.
	started := func(cs []int64) bool {
		for _, c := range cs {
			if c == 0 {
				return false
			}
		}
		return true
	}
	partWay := func(cs []int64) int {
		k := 0
		for _, c := range cs {
			if c > 0 && c < n {
				k++
			}
		}
		return k
	}

	var logs bytes.Buffer
	child, _ := startServe(t, cfgPath, &logs, shippingRE)
	var at []int64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		at = cursors()
		if started(at) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursors %v of %v: not every sink confirmed a batch of %d records\n%s", at, loops, n, logs.String())
		}
	}
	// The kill must find batches in flight: the file sinks, the fastest,
	// may have finished by the time the slowest confirmed its first batch
	// (with 60,000 records they are usually under half way), every other
	// loop must be part way.
	if k := partWay(at); k < len(loops)-2 {
		t.Fatalf("cursors %v of %v: only %d loops part way through %d records at the kill, want %d", at, loops, k, n, len(loops)-2)
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	t.Logf("killed at cursors %v of %d (%v)", at, n, loops)

	child, _ = startServe(t, cfgPath, &logs, shippingRE)
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		done := true
		for _, c := range cursors() {
			done = done && c == n
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart the cursors reached only %v of %d\n%s", cursors(), n, logs.String())
		}
	}
	child.Process.Signal(syscall.SIGTERM)
	if err := child.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}

	byID := make(map[string]record.Record, n)
	for _, r := range want {
		byID[r.ID] = r
	}
	for _, s := range sinks {
		got := s.delivered(t)
		seen := make(map[string]bool, n)
		var first []record.Record
		for _, r := range got {
			w, ok := byID[r.ID]
			if !ok {
				t.Fatalf("sink %s holds an unknown record %q", s.name, r.ID)
			}
			if d := sinktest.Diff([]record.Record{r}, []record.Record{w}); d != "" {
				t.Fatalf("sink %s: a duplicate differs from the record: %s", s.name, d)
			}
			if !seen[r.ID] {
				seen[r.ID] = true
				first = append(first, r)
			}
		}
		if d := sinktest.Diff(first, want); d != "" {
			t.Errorf("sink %s: first deliveries differ from the store's order:\n%s", s.name, d)
		}
		t.Logf("sink %s: %d records delivered for %d (%d duplicates)", s.name, len(got), n, len(got)-n)
	}
}
