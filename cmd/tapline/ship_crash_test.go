package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/store"
	"github.com/tapline/tapline/internal/testenv"
)

// crashSink is one sink of the shipping crash test: its YAML entry and a
// way to read back what its destination holds.
type crashSink struct {
	name      string
	yaml      string // the entry under sinks:, without the name
	delivered func(t *testing.T) []record.Record
}

var shippingRE = regexp.MustCompile(`msg=shipping (sinks=.*)`)

// Shipping across kill -9: `tapline serve` ships a full store to several
// sinks and is killed while batches are in flight. After a restart every
// record reaches every sink; a record delivered twice is the same record.
func TestShippingSurvivesKill(t *testing.T) {
	const n = 40000
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
		blobCrashSink(t), splunkCrashSink(t), kafkaCrashSink(t)}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "store: {path: %s}\nsinks:\n", db)
	for _, s := range sinks {
		fmt.Fprintf(&cfg, "  - name: %s\n    %s\n", s.name, s.yaml)
	}
	cfgPath := filepath.Join(dir, "tapline.yaml")
	os.WriteFile(cfgPath, []byte(cfg.String()), 0o600)

	var logs bytes.Buffer
	child, _ := startServe(t, cfgPath, &logs, shippingRE)
	// Kill once most sinks are part way: batches are in flight then.
	cursors := func() []int64 {
		ro, err := store.OpenReadOnly(t.Context(), db, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		var out []int64
		for _, s := range sinks {
			c, err := ro.Cursor(t.Context(), s.name)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
		return out
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
	var at []int64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		at = cursors()
		if partWay(at) >= 3 || time.Now().After(deadline) {
			break
		}
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	if partWay(at) < 2 {
		t.Fatalf("killed at cursors %v: fewer than two sinks part way through %d records", at, n)
	}
	t.Logf("killed at cursors %v of %d", at, n)

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

// fileCrashSink is a file sink with small batches, so that a kill finds
// some in flight.
func fileCrashSink(t *testing.T, name string, batch int) crashSink {
	dir := filepath.Join(t.TempDir(), name)
	return crashSink{
		name: name,
		yaml: fmt.Sprintf("batch: {max_records: %d}\n    file: {dir: %s}", batch, dir),
		delivered: func(t *testing.T) []record.Record {
			files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			var out []record.Record
			for _, f := range files { // names sort in write order
				fh, err := os.Open(f)
				if err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(fh)
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					var r record.Record
					if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
						t.Fatalf("%s: torn or invalid line %q: %v", f, sc.Text(), err)
					}
					out = append(out, r)
				}
				fh.Close()
			}
			return out
		},
	}
}

// blobCrashSink is an Azure Blob sink on Azurite. A container has no order
// across blobs, so its records are read back in record time order, which
// for these records is the store's order.
func blobCrashSink(t *testing.T) crashSink {
	conn := testenv.StartAzurite(t)
	client, err := azblob.NewClientFromConnectionString(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateContainer(t.Context(), "audit", nil); err != nil {
		t.Fatal(err)
	}
	return crashSink{
		name: "archive",
		yaml: fmt.Sprintf("batch: {max_records: 700}\n    azure_blob: {connection_string: %q, container: audit}", conn),
		delivered: func(t *testing.T) []record.Record {
			var out []record.Record
			pager := client.NewListBlobsFlatPager("audit", nil)
			for pager.More() {
				page, err := pager.NextPage(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				for _, it := range page.Segment.BlobItems {
					resp, err := client.DownloadStream(t.Context(), "audit", *it.Name, nil)
					if err != nil {
						t.Fatal(err)
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						t.Fatal(err)
					}
					for line := range bytes.Lines(body) {
						var r record.Record
						if err := json.Unmarshal(line, &r); err != nil {
							t.Fatalf("blob %s: bad line %.80q: %v", *it.Name, line, err)
						}
						out = append(out, r)
					}
				}
			}
			slices.SortStableFunc(out, func(a, b record.Record) int { return a.Time.Compare(b.Time) })
			return out
		},
	}
}

// splunkCrashSink is a Splunk HEC sink with indexer acknowledgement on the
// emulator, which runs in this process and keeps events in arrival order.
func splunkCrashSink(t *testing.T) crashSink {
	url, hec, stop, err := emulator.ListenSplunkHEC(t.Context(), "127.0.0.1:0", emulator.SplunkHECConfig{
		Tokens: []emulator.SplunkHECToken{{Name: "tapline", Value: "hec-crash-token", IndexerAck: true}},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return crashSink{
		name: "splunk",
		yaml: fmt.Sprintf("batch: {max_records: 300}\n    splunk_hec: {url: %s, token: hec-crash-token, index: main, indexer_ack: true}", url),
		delivered: func(t *testing.T) []record.Record {
			var out []record.Record
			for _, ev := range hec.Events("") {
				var r record.Record
				if err := json.Unmarshal(ev.Event, &r); err != nil {
					t.Fatalf("event %.80q is not a record envelope: %v", ev.Event, err)
				}
				out = append(out, r)
			}
			return out
		},
	}
}

// kafkaCrashSink is a Kafka sink on an in-process kfake cluster with a
// one-partition topic, so the topic's offsets are the write order.
func kafkaCrashSink(t *testing.T) crashSink {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	return crashSink{
		name: "lake",
		yaml: fmt.Sprintf("batch: {max_records: 400}\n    kafka: {brokers: [%q], topic: audit}", brokers[0]),
		delivered: func(t *testing.T) []record.Record {
			cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("audit"),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ends, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), "audit")
			if err != nil {
				t.Fatal(err)
			}
			end := ends["audit"][0].Offset
			var out []record.Record
			for int64(len(out)) < end {
				fs := cl.PollFetches(t.Context())
				fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
				fs.EachRecord(func(kr *kgo.Record) {
					var r record.Record
					if err := json.Unmarshal(kr.Value, &r); err != nil {
						t.Fatalf("offset %d is not an envelope: %v", kr.Offset, err)
					}
					out = append(out, r)
				})
			}
			return out
		},
	}
}
