package loganalytics

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
)

const (
	testDCR      = "dcr-7f3e2a1b0c9d8e7f6a5b4c3d2e1f0a9b"
	testToken    = "la-test-token-s3cr3t-0123456789"
	testGateway  = "Custom-TaplineAIRequests"
	testActivity = "Custom-TaplineActivity"
)

// staticCred is a TokenCredential that hands out one token and remembers
// the scopes it was asked for.
type staticCred struct {
	token  string
	mu     sync.Mutex
	scopes []string
}

func (c *staticCred) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes = append(c.scopes, opts.Scopes...)
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// emuColumns converts the sink's columns of kind to a stream declaration.
func emuColumns(k record.Kind) []emulator.LogsIngestionColumn {
	var cols []emulator.LogsIngestionColumn
	for _, c := range Columns(k) {
		cols = append(cols, emulator.LogsIngestionColumn{Name: c.Name, Type: c.Type})
	}
	return cols
}

// newEmulator starts a Logs Ingestion stand-in with the two Tapline streams.
func newEmulator(t *testing.T) (string, *emulator.LogsIngestion) {
	t.Helper()
	url, li, stop, err := emulator.ListenLogsIngestion(context.Background(), "", emulator.LogsIngestionConfig{
		DCRImmutableID: testDCR,
		Tokens:         []string{testToken},
		Streams: map[string][]emulator.LogsIngestionColumn{
			testGateway:  emuColumns(record.KindGatewayRequest),
			testActivity: emuColumns(record.KindActivityLog),
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return url, li
}

// testConfig is a config for the emulator at url.
func testConfig(url string, token string) Config {
	return Config{
		Endpoint:          url,
		DCRImmutableID:    testDCR,
		Streams:           map[record.Kind]string{record.KindGatewayRequest: testGateway, record.KindActivityLog: testActivity},
		Credential:        &staticCred{token: token},
		InsecureAllowHTTP: true,
	}
}

// logBuffer collects the sink's log lines at every level.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestSink(t *testing.T, cfg Config, logs *logBuffer) *Sink {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if logs != nil {
		log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storedRow is the envelope part of a row as the emulator holds it.
type storedRow struct {
	RecordId   string
	RecordTime string
	Kind       record.Kind
	Version    int
	DataPart   int
	DataParts  int
	Data       string
}

// assemble rebuilds the records of one stream from its rows in arrival
// order, as the KQL in the package doc does. A record is complete when its
// last part arrived after all the others.
func assemble(t *testing.T, rows []json.RawMessage) []record.Record {
	t.Helper()
	var out []record.Record
	pending := map[string][]storedRow{}
	for i, raw := range rows {
		var r storedRow
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		if r.DataPart == 1 {
			pending[r.RecordId] = nil
		}
		parts := pending[r.RecordId]
		if len(parts)+1 != r.DataPart {
			t.Fatalf("row %d: part %d of %s after %d parts", i, r.DataPart, r.RecordId, len(parts))
		}
		parts = append(parts, r)
		pending[r.RecordId] = parts
		if r.DataPart < r.DataParts {
			continue
		}
		delete(pending, r.RecordId)
		var data []byte
		for _, p := range parts {
			data = append(data, p.Data...)
		}
		ts, err := time.Parse(time.RFC3339Nano, r.RecordTime)
		if err != nil {
			t.Fatalf("row %d: RecordTime: %v", i, err)
		}
		out = append(out, record.Record{ID: r.RecordId, Kind: r.Kind, Version: r.Version, Time: ts, Data: data})
	}
	if len(pending) > 0 {
		t.Errorf("%d records are incomplete", len(pending))
	}
	return out
}

// delivered returns the records both streams hold. Log Analytics has no
// order across tables: a union ordered by time is how one reads them, so
// the two streams (each in arrival order) are merged by record time.
func delivered(t *testing.T, li *emulator.LogsIngestion) []record.Record {
	t.Helper()
	a, b := assemble(t, li.Rows(testGateway)), assemble(t, li.Rows(testActivity))
	out := make([]record.Record, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && !b[0].Time.Before(a[0].Time)) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}
