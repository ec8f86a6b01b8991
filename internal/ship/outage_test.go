package ship

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/file"
	"github.com/tapline/tapline/internal/sink/loganalytics"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/sink/splunk"
	"github.com/tapline/tapline/internal/store"
)

type tokenCred string

func (c tokenCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(c), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// Outage under load: while records keep arriving, Logs Ingestion answers
// 429 with Retry-After and Splunk answers 503 (server busy) for a while.
// The file sink is not delayed: it confirms every record while the other
// two are still failing. When the destinations recover, every record
// arrives at each of them, in order; the oversized record that Splunk
// cannot take is dead-lettered with its reason and blocks nothing.
func TestOutageDelaysOnlyTheFailingSinks(t *testing.T) {
	st := openStore(t, "")
	ctx := t.Context()

	const dcr, token = "dcr-0123456789abcdef0123456789abcdef", "outage-test-token"
	streams := map[record.Kind]string{record.KindGatewayRequest: "Custom-TaplineAIRequests", record.KindActivityLog: "Custom-TaplineActivity"}
	decl := map[string][]emulator.LogsIngestionColumn{}
	for k, s := range streams {
		for _, c := range loganalytics.Columns(k) {
			decl[s] = append(decl[s], emulator.LogsIngestionColumn{Name: c.Name, Type: c.Type})
		}
	}
	laURL, li, stopLA, err := emulator.ListenLogsIngestion(ctx, "", emulator.LogsIngestionConfig{
		DCRImmutableID: dcr, Tokens: []string{token}, Streams: decl}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stopLA()
	la, err := loganalytics.New(loganalytics.Config{Endpoint: laURL, DCRImmutableID: dcr, Streams: streams,
		Credential: tokenCred(token), InsecureAllowHTTP: true}, nil)
	if err != nil {
		t.Fatal(err)
	}

	const maxHEC = 64 << 10
	hecURL, hec, stopHEC, err := emulator.ListenSplunkHEC(ctx, "127.0.0.1:0", emulator.SplunkHECConfig{
		Tokens: []emulator.SplunkHECToken{{Name: "tapline", Value: "hec-outage-token"}}, MaxContentLength: maxHEC}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stopHEC()
	sp, err := splunk.New(splunk.Config{URL: hecURL, Token: "hec-outage-token", Index: "main", MaxRequestBytes: maxHEC}, nil)
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "files")
	fs, err := file.New(file.Config{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Both destinations fail from the start, until cleared.
	li.Inject(emulator.LogsIngestionFault{Status: 429, RetryAfter: time.Second, Count: -1})
	hec.Busy(-1, time.Second)

	retry := Retry{Min: time.Millisecond, Max: 20 * time.Millisecond, MaxRetryAfter: 5 * time.Millisecond}
	batch := Batch{MaxRecords: 200, MaxWait: 5 * time.Millisecond}
	h := start(t, st,
		Target{Name: "files", Sink: fs, Batch: batch, Retry: retry},
		Target{Name: "workspace", Sink: la, Batch: batch, Retry: retry},
		Target{Name: "splunk", Sink: sp, Batch: batch, Retry: retry})
	for _, l := range h.sh.loops {
		l.sleep = sink.Sleep // real (short) waits: the destinations must see the retries
	}

	// Load: 4 producers append while the outage lasts, one record over
	// Splunk's request limit among them.
	var want []record.Record
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for b := range 10 {
				recs := sinktest.Records(p*100_000+b*100, 100)
				if p == 2 && b == 5 {
					recs[50] = sinktest.Padded(p*100_000+b*100+50, maxHEC+1)
				}
				mu.Lock()
				if _, err := st.Append(ctx, recs); err != nil {
					t.Error(err)
				}
				want = append(want, recs...) // appends are serialised: store order
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	n := int64(len(want))
	poison := want[slices.IndexFunc(want, func(r record.Record) bool { return len(r.Data) > maxHEC })]

	waitFor(t, "the healthy file sink", func() bool { return cursor(t, st, "files") == n })
	if c := cursor(t, st, "workspace"); c != 0 {
		t.Fatalf("workspace confirmed %d records while Logs Ingestion answered 429", c)
	}
	if c := cursor(t, st, "splunk"); c != 0 {
		t.Fatalf("splunk confirmed %d records while HEC answered 503", c)
	}
	waitFor(t, "retries against both destinations", func() bool {
		return len(li.Statuses()) >= 3 && len(hec.Requests()) >= 3
	})
	states, err := st.SinkStates(ctx, []string{"workspace", "splunk"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.LastError == "" || s.Lag != n {
			t.Errorf("during the outage, sink %s: last error %q, lag %d (want %d)", s.Sink, s.LastError, s.Lag, n)
		}
	}

	li.ClearFaults()
	hec.ClearBusy()
	waitFor(t, "recovery", func() bool { return cursor(t, st, "workspace") == n && cursor(t, st, "splunk") == n })

	// Files and Splunk: every record in order (Splunk without the poison).
	fileGot := readFiles(t, dir)
	if d := sinktest.Diff(firsts(fileGot), want); d != "" {
		t.Errorf("file sink:\n%s", d)
	}
	var hecGot []record.Record
	for _, ev := range hec.Events("") {
		var r record.Record
		if err := json.Unmarshal(ev.Event, &r); err != nil {
			t.Fatal(err)
		}
		hecGot = append(hecGot, r)
	}
	wantHEC := slices.DeleteFunc(sinktest.Clone(want), func(r record.Record) bool { return r.ID == poison.ID })
	if d := sinktest.Diff(firsts(hecGot), wantHEC); d != "" {
		t.Errorf("splunk:\n%s", d)
	}
	var dead []store.DeadLetter
	st.DeadLetters(ctx, "", func(d store.DeadLetter) error { dead = append(dead, d); return nil })
	if len(dead) != 1 || dead[0].Sink != "splunk" || dead[0].Record.ID != poison.ID || !strings.Contains(dead[0].Reason, "limit") {
		t.Errorf("dead letters = %+v, want the oversized record for splunk with a reason naming the limit", dead)
	}

	// Logs Ingestion: per stream (a table has no order across tables),
	// each record's first row in store order.
	for kind, stream := range streams {
		var got []string
		seen := map[string]bool{}
		for _, row := range li.Rows(stream) {
			var r struct {
				RecordID string `json:"RecordId"`
				DataPart int    `json:"DataPart"`
			}
			if err := json.Unmarshal(row, &r); err != nil {
				t.Fatal(err)
			}
			if r.DataPart == 1 && !seen[r.RecordID] {
				seen[r.RecordID] = true
				got = append(got, r.RecordID)
			}
		}
		var ids []string
		for _, r := range want {
			if r.Kind == kind {
				ids = append(ids, r.ID)
			}
		}
		if !slices.Equal(got, ids) {
			t.Errorf("stream %s: %d records, want %d in store order", stream, len(got), len(ids))
		}
	}
	statuses := li.Statuses()
	if statuses[0] != 429 || statuses[len(statuses)-1] != 204 {
		t.Errorf("logs ingestion statuses run %v ... %v", statuses[:1], statuses[len(statuses)-1:])
	}
}

// firsts keeps the first occurrence of each id, in order.
func firsts(recs []record.Record) []record.Record {
	seen := map[string]bool{}
	var out []record.Record
	for _, r := range recs {
		if !seen[r.ID] {
			seen[r.ID] = true
			out = append(out, r)
		}
	}
	return out
}

func readFiles(t *testing.T, dir string) []record.Record {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []record.Record
	for _, f := range files {
		data := mustRead(t, f)
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var r record.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
	}
	return out
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
