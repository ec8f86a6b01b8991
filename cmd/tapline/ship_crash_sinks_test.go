package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink/loganalytics"
	"github.com/tapline/tapline/internal/testenv"
)

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

// crashLogsToken is the bearer token the Logs Ingestion emulator accepts;
// the test's azure section hands it to the sink.
const crashLogsToken = "crash-logs-token"

// logAnalyticsCrashSink is a Log Analytics sink on the Logs Ingestion
// emulator, which runs in this process. serve runs one loop per stream.
// Its rows are read back per stream (each stream must hold its records in
// store order) and merged by record time, which for these records is the
// store's order.
func logAnalyticsCrashSink(t *testing.T) crashSink {
	const dcr = "dcr-00112233445566778899aabbccddeeff"
	streams := map[record.Kind]string{
		record.KindGatewayRequest: "Custom-TaplineAIRequests",
		record.KindActivityLog:    "Custom-TaplineActivity",
	}
	decl := map[string][]emulator.LogsIngestionColumn{}
	for k, s := range streams {
		for _, c := range loganalytics.Columns(k) {
			decl[s] = append(decl[s], emulator.LogsIngestionColumn{Name: c.Name, Type: c.Type})
		}
	}
	url, li, stop, err := emulator.ListenLogsIngestion(t.Context(), "", emulator.LogsIngestionConfig{
		DCRImmutableID: dcr, Tokens: []string{crashLogsToken}, Streams: decl}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	const name = "workspace"
	return crashSink{
		name: name,
		yaml: fmt.Sprintf("batch: {max_records: 500}\n    log_analytics: {endpoint: %s, dcr_immutable_id: %s, streams: {gateway_request: %s, activity_log: %s}}",
			url, dcr, streams[record.KindGatewayRequest], streams[record.KindActivityLog]),
		loops: []string{name + ".activity_log", name + ".gateway_request"},
		delivered: func(t *testing.T) []record.Record {
			var out []record.Record
			for kind, stream := range streams {
				var last time.Time // of the latest first delivery
				seen := map[string]bool{}
				for _, raw := range li.Rows(stream) {
					r := logsRowRecord(t, raw)
					if r.Kind != kind {
						t.Fatalf("stream %s holds a %s record", stream, r.Kind)
					}
					if !seen[r.ID] {
						if r.Time.Before(last) {
							t.Fatalf("stream %s: record %s first delivered after a later one", stream, r.ID)
						}
						seen[r.ID], last = true, r.Time
					}
					out = append(out, r)
				}
			}
			slices.SortStableFunc(out, func(a, b record.Record) int { return a.Time.Compare(b.Time) })
			return out
		},
	}
}

// logsRowRecord turns a Logs Ingestion row back into its record. The
// crash test's records are small: each travels in one row.
func logsRowRecord(t *testing.T, raw json.RawMessage) record.Record {
	var row struct {
		RecordID   string `json:"RecordId"`
		RecordTime string
		Kind       string
		Version    int
		DataParts  int
		Data       string
	}
	if err := json.Unmarshal(raw, &row); err != nil {
		t.Fatalf("row %.80q: %v", raw, err)
	}
	if row.DataParts != 1 {
		t.Fatalf("record %s in %d rows, want 1", row.RecordID, row.DataParts)
	}
	tm, err := time.Parse(time.RFC3339Nano, row.RecordTime)
	if err != nil {
		t.Fatalf("record %s: RecordTime: %v", row.RecordID, err)
	}
	return record.Record{ID: row.RecordID, Kind: record.Kind(row.Kind), Version: row.Version, Time: tm, Data: json.RawMessage(row.Data)}
}

// eventHubsCrashSink is an Event Hubs sink (the real azeventhubs SDK) on
// the AMQP stand-in with one partition, whose sequence numbers are then
// the write order. The stand-in runs in its own process.
func eventHubsCrashSink(t *testing.T) crashSink {
	cs := testenv.StartEventHubsStub(t, testenv.EventHubsPartitions(1))
	return crashSink{
		name: "hub",
		yaml: fmt.Sprintf("batch: {max_records: 500}\n    event_hubs: {connection_string: %q}", cs),
		delivered: func(t *testing.T) []record.Record {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cc, err := azeventhubs.NewConsumerClientFromConnectionString(cs, "", azeventhubs.DefaultConsumerGroup, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close(ctx)
			pp, err := cc.GetPartitionProperties(ctx, "0", nil)
			if err != nil {
				t.Fatal(err)
			}
			if pp.IsEmpty {
				return nil
			}
			n := int(pp.LastEnqueuedSequenceNumber - pp.BeginningSequenceNumber + 1)
			earliest := true
			pc, err := cc.NewPartitionClient("0", &azeventhubs.PartitionClientOptions{
				StartPosition: azeventhubs.StartPosition{Earliest: &earliest}})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close(ctx)
			var out []record.Record
			for len(out) < n {
				evs, err := pc.ReceiveEvents(ctx, min(n-len(out), 2000), nil)
				for _, e := range evs {
					var r record.Record
					if err := json.Unmarshal(e.Body, &r); err != nil {
						t.Fatalf("event %d is not a record envelope: %v", e.SequenceNumber, err)
					}
					out = append(out, r)
				}
				if err != nil && len(out) < n {
					t.Fatalf("received %d of %d events: %v", len(out), n, err)
				}
			}
			return out
		},
	}
}
