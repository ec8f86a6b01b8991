package emulator

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	liTestDCR    = "dcr-00000000000000000000000000000000"
	liTestToken  = "logs-ingestion-test-token"
	liTestStream = "Custom-Test"
)

// liRecorded is the part of a recorded exchange the tests compare with.
type liRecorded struct {
	RequestBody     string
	StatusCode      int
	ResponseHeaders map[string]string
	ResponseBody    json.RawMessage
}

func liLoadRecorded(t *testing.T, name string) liRecorded {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var rec liRecorded
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rec
}

func newTestLogsIngestion(t *testing.T) (string, *LogsIngestion) {
	t.Helper()
	cols := []LogsIngestionColumn{{"Time", "datetime"}, {"Computer", "string"}, {"AdditionalContext", "dynamic"},
		{"Count", "int"}, {"Big", "long"}, {"Ratio", "real"}, {"Ok", "boolean"}}
	url, l, stop, err := ListenLogsIngestion(context.Background(), "", LogsIngestionConfig{
		DCRImmutableID: liTestDCR, Tokens: []string{liTestToken},
		Streams: map[string][]LogsIngestionColumn{liTestStream: cols, "test-stream": cols},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return url, l
}

func liGzip(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type liReq struct {
	dcr, stream, query string
	auth               string // "" sends the test token, "-" none
	ctype, encoding    string // "" means application/json and gzip; "-" none
	body               []byte // sent gzipped unless encoding is "-" or raw
	raw                bool   // send body as is, with Content-Encoding: gzip
}

func liDo(t *testing.T, base string, q liReq) (*http.Response, []byte) {
	t.Helper()
	dcr, stream, query := liOrS(q.dcr, liTestDCR), liOrS(q.stream, liTestStream), liOrS(q.query, "api-version=2023-01-01")
	body := q.body
	if q.encoding != "-" && !q.raw {
		body = liGzip(t, body)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/dataCollectionRules/"+dcr+"/streams/"+stream+"?"+strings.TrimPrefix(query, "-"), bytes.NewReader(body))
	if q.auth != "-" {
		req.Header.Set("Authorization", "Bearer "+liOrS(q.auth, liTestToken))
	}
	if q.ctype != "-" {
		req.Header.Set("Content-Type", liOrS(q.ctype, "application/json"))
	}
	if q.encoding != "-" {
		req.Header.Set("Content-Encoding", liOrS(q.encoding, "gzip"))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func liOrS(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// TestLogsIngestionRejections proves each answer of the stand-in: status,
// x-ms-error-code, the error envelope and, where recorded, the exact message.
func TestLogsIngestionRejections(t *testing.T) {
	base, l := newTestLogsIngestion(t)
	rec404 := liLoadRecorded(t, "logs-ingestion-error-404-dcr-not-found.recorded.json")
	var want404 struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(rec404.ResponseBody, &want404)
	ok := []byte(`[{"Computer":"c1","Count":3}]`)
	// A body whose gzip is over 1 MiB: random-looking hex does not compress.
	var big strings.Builder
	big.WriteString(`[{"Computer":"`)
	for i := 0; big.Len() < 2<<20; i++ {
		fmt.Fprintf(&big, "%x", uint64(i)*0x9E3779B97F4A7C15)
	}
	big.WriteString(`"}]`)
	bigGz := liGzip(t, []byte(big.String()))
	cases := []struct {
		name    string
		req     liReq
		status  int
		code    string
		message string // exact, when recorded
		prefix  string
	}{
		{"no bearer", liReq{auth: "-", body: ok}, 401, "InvalidAuthenticationToken", "", "An authentication token is required"},
		{"wrong token", liReq{auth: "other", body: ok}, 403, "OperationFailed", "",
			"The authentication token provided does not have access to ingest data for the data collection rule with immutable Id '" + liTestDCR + "' PipelineAccessResult: AccessGranted: False"},
		{"unknown dcr (recorded)", liReq{dcr: "bad-rule", stream: "test-stream", body: []byte(rec404.RequestBody)}, rec404.StatusCode, want404.Error.Code, want404.Error.Message, ""},
		{"unknown stream", liReq{stream: "Custom-Nope", body: ok}, 404, "NotFound", "", "Stream 'Custom-Nope' is not declared"},
		{"no api-version", liReq{query: "-x=1", body: ok}, 400, "InvalidApiVersion", "", ""},
		{"over 1048576 bytes on the wire", liReq{raw: true, body: bigGz}, 413, "ContentLengthLimitExceeded",
			fmt.Sprintf("Maximum allowed content length: 1048576 bytes (1 MB). Provided content length: %d bytes.", len(bigGz)), ""},
		{"wrong content type", liReq{ctype: "text/plain", body: ok}, 400, "UnsupportedContentType", "", ""},
		{"bad gzip", liReq{raw: true, body: []byte("not gzip")}, 400, "InvalidContentEncoding", "", ""},
		{"not an array", liReq{body: []byte(`{"Computer":"c"}`)}, 400, "InvalidPayload", "", "The body must be a JSON array"},
		{"malformed", liReq{body: []byte(`[{"Computer":`)}, 400, "InvalidPayload", "", ""},
		{"undeclared column", liReq{body: []byte(`[{"Computer":"c","Extra":1}]`)}, 400, "InvalidPayload", "Row 0: column 'Extra' is not declared in the stream.", ""},
		{"mistyped int", liReq{body: []byte(`[{"Count":"3"}]`)}, 400, "InvalidPayload", "Row 0: column 'Count' is not of type int.", ""},
		{"mistyped datetime", liReq{body: []byte(`[{"Time":"yesterday"}]`)}, 400, "InvalidPayload", "Row 0: column 'Time' is not of type datetime.", ""},
		{"int beyond 32 bits", liReq{body: []byte(`[{"Count":4294967296}]`)}, 400, "InvalidPayload", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := liDo(t, base, c.req)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, c.status, body)
			}
			var env struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(body, &env); err != nil {
				t.Fatalf("body %q is not the error envelope: %v", body, err)
			}
			if env.Error.Code != c.code || resp.Header.Get("x-ms-error-code") != c.code {
				t.Errorf("code %q, header %q, want %q", env.Error.Code, resp.Header.Get("x-ms-error-code"), c.code)
			}
			if c.message != "" && env.Error.Message != c.message {
				t.Errorf("message %q, want %q", env.Error.Message, c.message)
			}
			if !strings.HasPrefix(env.Error.Message, c.prefix) {
				t.Errorf("message %q, want prefix %q", env.Error.Message, c.prefix)
			}
		})
	}
	if n := len(l.Rows(liTestStream)) + len(l.Rows("test-stream")); n != 0 {
		t.Errorf("rejected requests stored %d rows", n)
	}
	if n := len(l.AcceptedSizes()); n != 0 {
		t.Errorf("rejected requests counted %d accepted sizes", n)
	}
}

// TestLogsIngestionAccepts replays the recorded 204 exchange: empty body,
// rows stored verbatim in order, the wire size kept.
func TestLogsIngestionAccepts(t *testing.T) {
	base, l := newTestLogsIngestion(t)
	rec := liLoadRecorded(t, "logs-ingestion-success-204.recorded.json")
	body := []byte(strings.ReplaceAll(rec.RequestBody, `": `, `":`))
	resp, got := liDo(t, base, liReq{stream: "test-stream", body: body})
	if resp.StatusCode != rec.StatusCode || resp.StatusCode != 204 || len(got) != 0 {
		t.Fatalf("status %d body %q, want 204 and no body", resp.StatusCode, got)
	}
	rows := l.Rows("test-stream")
	var want []json.RawMessage
	_ = json.Unmarshal(body, &want)
	if len(rows) != 2 || !bytes.Equal(rows[0], want[0]) || !bytes.Equal(rows[1], want[1]) {
		t.Errorf("rows %s, want %s", rows, want)
	}
	if sizes := l.AcceptedSizes(); len(sizes) != 1 || sizes[0] != len(liGzip(t, body)) {
		t.Errorf("accepted sizes %v, want the gzip length %d", sizes, len(liGzip(t, body)))
	}
	// Uncompressed bodies are accepted too, and [] writes nothing.
	if resp, _ := liDo(t, base, liReq{encoding: "-", body: []byte(`[{"Ok":true}]`)}); resp.StatusCode != 204 {
		t.Errorf("uncompressed: status %d", resp.StatusCode)
	}
	if resp, _ := liDo(t, base, liReq{body: []byte(`[]`)}); resp.StatusCode != 204 {
		t.Errorf("empty array: status %d", resp.StatusCode)
	}
	if n := len(l.Rows(liTestStream)); n != 1 {
		t.Errorf("stream holds %d rows, want 1", n)
	}
}

// TestLogsIngestionTruncates shows the service rule the sink must avoid:
// a string value over 64 KB is cut, silently, with a 204.
func TestLogsIngestionTruncates(t *testing.T) {
	base, l := newTestLogsIngestion(t)
	long := strings.Repeat("é", 40<<10) // 80 KiB of UTF-8
	b, _ := json.Marshal([]map[string]string{{"Computer": long}})
	if resp, _ := liDo(t, base, liReq{body: b}); resp.StatusCode != 204 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var row struct{ Computer string }
	if err := json.Unmarshal(l.Rows(liTestStream)[0], &row); err != nil {
		t.Fatal(err)
	}
	if len(row.Computer) != LogsIngestionMaxField || !strings.HasPrefix(long, row.Computer) || l.Truncated() != 1 {
		t.Errorf("stored %d bytes (truncated %d), want the first %d", len(row.Computer), l.Truncated(), LogsIngestionMaxField)
	}
}

// TestLogsIngestionFaults proves injected 429 (with Retry-After) and 503,
// counted and until cleared, and a lowered size limit.
func TestLogsIngestionFaults(t *testing.T) {
	base, l := newTestLogsIngestion(t)
	ok := []byte(`[{"Computer":"c"}]`)
	l.Inject(LogsIngestionFault{Status: 429, RetryAfter: 1500 * time.Millisecond, Count: 2})
	for range 2 {
		resp, body := liDo(t, base, liReq{body: ok})
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" || resp.Header.Get("x-ms-error-code") != "TooManyRequests" {
			t.Fatalf("status %d Retry-After %q body %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if resp, _ := liDo(t, base, liReq{body: ok}); resp.StatusCode != 204 {
		t.Fatalf("after the fault: status %d", resp.StatusCode)
	}
	l.Inject(LogsIngestionFault{Status: 503, Count: -1})
	for range 3 {
		if resp, _ := liDo(t, base, liReq{body: ok}); resp.StatusCode != 503 {
			t.Fatalf("status %d, want 503 until cleared", resp.StatusCode)
		}
	}
	l.ClearFaults()
	if resp, _ := liDo(t, base, liReq{body: ok}); resp.StatusCode != 204 {
		t.Fatalf("after ClearFaults: status %d", resp.StatusCode)
	}
	l.SetMaxBodyBytes(10)
	resp, body := liDo(t, base, liReq{body: ok})
	if resp.StatusCode != 413 || !strings.Contains(string(body), "Maximum allowed content length: 10 bytes") {
		t.Errorf("lowered limit: status %d body %s", resp.StatusCode, body)
	}
	if n := len(l.Rows(liTestStream)); n != 2 {
		t.Errorf("stored %d rows, want 2", n)
	}
}
