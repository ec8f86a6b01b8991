package loganalytics

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink/sinktest"
)

// TestLiftedColumns checks the typed columns copied out of each kind's data
// as the emulator stores them (which also proves their declared types).
func TestLiftedColumns(t *testing.T) {
	url, li := newEmulator(t)
	s := newTestSink(t, testConfig(url, testToken), nil)
	at := time.Date(2026, 11, 22, 21, 0, 0, 123456789, time.FixedZone("CET", 3600))
	recs := []record.Record{
		{ID: "g1", Kind: record.KindGatewayRequest, Version: 1, Time: at, Data: json.RawMessage(
			`{"state":"completed","principal":{"kind":"entra_user","oid":"o","upn":"ann@contoso.com"},"client_ip":"10.1.2.3","deployment":"gpt-4o","operation":"chat.completions","status":200,"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":4.2e1}}`)},
		{ID: "g2", Kind: record.KindGatewayRequest, Version: 1, Time: at, Data: json.RawMessage(
			`{"state":"denied","principal":{"kind":"key","key_name":"build-bot"},"status":"x","usage":{"prompt_tokens":1.5,"total_tokens":99999999999}}`)},
		{ID: "a1", Kind: record.KindActivityLog, Version: 1, Time: at, Data: json.RawMessage(
			`{"scope":{"kind":"management_group","id":"mg-corp"},"operation_name":"Microsoft.Authorization/roleAssignments/write","caller":"bob@contoso.com","status":"Succeeded","category":"Administrative","resource_id":"/providers/x","correlation_id":"c-1","event":{}}`)},
		{ID: "a2", Kind: record.KindActivityLog, Version: 1, Time: at, Data: json.RawMessage(
			`{"scope":{"kind":"tenant","id":""},"caller":"` + strings.Repeat("c", liftedMaxBytes+1) + `"}`)},
	}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	rowOf := func(raw json.RawMessage) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "Data")
		return m
	}
	env := func(id, kind string) map[string]any {
		return map[string]any{"TimeGenerated": "2026-11-22T20:00:00.123456789Z", "RecordTime": "2026-11-22T21:00:00.123456789+01:00",
			"RecordId": id, "Kind": kind, "Version": 1.0, "DataPart": 1.0, "DataParts": 1.0}
	}
	with := func(m map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	want := map[string][]map[string]any{
		testGateway: {
			with(env("g1", "gateway_request"), "State", "completed", "Principal", "ann@contoso.com", "PrincipalKind", "entra_user",
				"ClientIp", "10.1.2.3", "Deployment", "gpt-4o", "Operation", "chat.completions", "Status", 200.0,
				"PromptTokens", 12.0, "CompletionTokens", 30.0, "TotalTokens", 42.0),
			// Values of another type, or not integral, are left out; a long fits.
			with(env("g2", "gateway_request"), "State", "denied", "Principal", "build-bot", "PrincipalKind", "key", "TotalTokens", 99999999999.0),
		},
		testActivity: {
			with(env("a1", "activity_log"), "Scope", "management_group/mg-corp", "OperationName", "Microsoft.Authorization/roleAssignments/write",
				"Caller", "bob@contoso.com", "ActivityStatus", "Succeeded", "Category", "Administrative", "ResourceId", "/providers/x", "CorrelationId", "c-1"),
			// A lifted value over 4 KB is left out, never cut.
			with(env("a2", "activity_log"), "Scope", "tenant"),
		},
	}
	for stream, rows := range want {
		var got []map[string]any
		for _, raw := range li.Rows(stream) {
			got = append(got, rowOf(raw))
		}
		if d := cmp.Diff(rows, got); d != "" {
			t.Errorf("%s rows (-want +got):\n%s", stream, d)
		}
	}
	if d := sinktest.Diff(delivered(t, li), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
}

// TestDataParts cuts data on UTF-8 boundaries, each part under the limit.
func TestDataParts(t *testing.T) {
	data := []byte(`"` + strings.Repeat("aé€😀", DataPartBytes/3) + `"`)
	rows := appendRows(nil, record.Record{ID: "x", Kind: record.KindActivityLog, Data: data}, 0)
	if len(rows) != dataParts(data) || len(rows) < 4 {
		t.Fatalf("%d rows, want %d (at least 4)", len(rows), dataParts(data))
	}
	var joined string
	for i, r := range rows {
		var v struct {
			Data      string
			DataPart  int
			DataParts int
		}
		if err := json.Unmarshal(r.b, &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Data) > DataPartBytes || v.DataPart != i+1 || v.DataParts != len(rows) || strings.ContainsRune(v.Data, '\uFFFD') {
			t.Errorf("part %d: %d bytes, DataPart %d of %d", i, len(v.Data), v.DataPart, v.DataParts)
		}
		joined += v.Data
	}
	if joined != string(data) {
		t.Error("the parts do not join to the data")
	}
	if n := dataParts(nil); n != 1 {
		t.Errorf("empty data has %d parts, want 1", n)
	}
}

// proxy413 is a transport standing for a proxy whose own limit is lower
// than the service's: it answers 413 with an HTML page.
type proxy413 struct {
	limit int64
	seen  int
}

func (p *proxy413) Do(req *http.Request) (*http.Response, error) {
	if req.ContentLength > p.limit {
		p.seen++
		return &http.Response{StatusCode: 413, Header: http.Header{"Content-Type": {"text/html"}},
			Body: io.NopCloser(strings.NewReader("<html>413 Request Entity Too Large</html>")), Request: req}, nil
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestProxy413Splits: a 413 without the service's envelope splits too.
func TestProxy413Splits(t *testing.T) {
	url, li := newEmulator(t)
	cfg := testConfig(url, testToken)
	p := &proxy413{limit: 32 << 10}
	cfg.Transport = p
	s := newTestSink(t, cfg, nil)
	recs := typicalRecords(400)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if p.seen == 0 {
		t.Error("the proxy never answered 413")
	}
	if d := sinktest.Diff(delivered(t, li), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
}

func TestNewValidates(t *testing.T) {
	cases := map[string]func(c *Config){
		"empty endpoint":         func(c *Config) { c.Endpoint = "" },
		"relative endpoint":      func(c *Config) { c.Endpoint = "/x" },
		"ftp endpoint":           func(c *Config) { c.Endpoint = "ftp://x" },
		"http without the flag":  func(c *Config) { c.InsecureAllowHTTP = false },
		"http off loopback":      func(c *Config) { c.Endpoint = "http://example.com" },
		"no dcr":                 func(c *Config) { c.DCRImmutableID = "" },
		"no streams":             func(c *Config) { c.Streams = nil },
		"empty stream":           func(c *Config) { c.Streams[record.KindActivityLog] = "" },
		"stream with a slash":    func(c *Config) { c.Streams[record.KindActivityLog] = "a/b" },
		"no credential":          func(c *Config) { c.Credential = nil },
		"tiny max request bytes": func(c *Config) { c.MaxRequestBytes = 100 },
	}
	for name, mutate := range cases {
		cfg := testConfig("http://127.0.0.1:1", testToken)
		mutate(&cfg)
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	cfg := testConfig("https://x.eastus-1.ingest.monitor.azure.com/", testToken)
	cfg.InsecureAllowHTTP = false
	if _, err := New(cfg, nil); err != nil {
		t.Errorf("valid config: %v", err)
	}
}
