package loganalytics

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
)

func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinktest.Target {
			url, li := newEmulator(t)
			s := newTestSink(t, testConfig(url, testToken), nil)
			return sinktest.Target{Sink: s, Delivered: func(t *testing.T) []record.Record {
				if n := li.Truncated(); n != 0 {
					t.Errorf("the service truncated %d field values", n)
				}
				return delivered(t, li)
			}}
		},
		// 0: records of any size are cut into parts (TestBigRecordsArriveWhole).
		MaxRecordBytes: 0,
	})
}

// TestBigRecordsArriveWhole sends a 3 MB record, which takes several
// requests, and one whose single field is 70 KB, over the service's 64 KB
// field limit: both arrive byte for byte, nothing is truncated, and every
// request is under the limit.
func TestBigRecordsArriveWhole(t *testing.T) {
	url, li := newEmulator(t)
	s := newTestSink(t, testConfig(url, testToken), nil)
	recs := sinktest.Records(0, 4)
	rng := rand.New(rand.NewPCG(1, 2))
	blob := make([]byte, 3<<20*3/4)
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	recs[1].Data = json.RawMessage(`{"event":{"blob":"` + base64.StdEncoding.EncodeToString(blob) + `","n":12345678901234567890123}}`)
	recs[2].Data = json.RawMessage(`{"request_id":"r","prompt":{"text":"` + strings.Repeat(`é\"x`, 70<<10/4) + `"}}`)
	if len(recs[1].Data) < 3<<20 || len(recs[2].Data) < 70<<10 {
		t.Fatalf("records of %d and %d bytes", len(recs[1].Data), len(recs[2].Data))
	}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if d := sinktest.Diff(delivered(t, li), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
	if n := li.Truncated(); n != 0 {
		t.Errorf("the service truncated %d field values", n)
	}
	sizes := li.AcceptedSizes()
	if len(sizes) < 4 {
		t.Errorf("%d requests, want at least 3 for the 3 MB record and 1 for the rest", len(sizes))
	}
	for i, n := range sizes {
		if n > DefaultMaxRequestBytes {
			t.Errorf("request %d has %d bytes, over the limit", i, n)
		}
	}
	if n := len(li.Rows(testActivity)); n < 3<<20/DataPartBytes {
		t.Errorf("activity stream holds %d rows, want the 3 MB record in parts", n)
	}
}

// typicalRecords returns gateway records of about 1.5 KB that compress
// like real ones: shared field names, varied ids, prompts and usage.
func typicalRecords(n int) []record.Record {
	rng := rand.New(rand.NewPCG(7, 11))
	words := strings.Fields("the of to and a in is it you that he was for on are with as I his they be at one have this from or had by hot word but what some we can out other were all there when up use your how said an each she which do their time if will way about many then them write would like so these her long make thing see him two has look more day could go come did number sound no most people my over know water than call first who may down side been now find")
	base := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	recs := make([]record.Record, n)
	for i := range recs {
		var prompt strings.Builder
		for range 120 + rng.IntN(120) {
			prompt.WriteString(words[rng.IntN(len(words))])
			prompt.WriteByte(' ')
		}
		recs[i] = record.Record{
			ID:   fmt.Sprintf("019a%04x-%04x-7%03x-8%03x-%012x", rng.Uint32()&0xffff, rng.Uint32()&0xffff, i&0xfff, rng.IntN(0xfff), rng.Uint64()&0xffffffffffff),
			Kind: record.KindGatewayRequest, Version: 1, Time: base.Add(time.Duration(i) * 37 * time.Millisecond),
			Data: json.RawMessage(fmt.Sprintf(`{"state":"completed","request_id":"%016x","duration_ms":%d.%03d,"principal":{"kind":"entra_user","oid":"%08x-1111-2222-3333-%012x","upn":"user%d@contoso.com"},"client_ip":"10.%d.%d.%d","method":"POST","path":"/openai/deployments/gpt-4o/chat/completions","operation":"chat.completions","deployment":"gpt-4o","status":200,"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"source":"reported"},"prompt":{"text":%q,"bytes":%d}}`,
				rng.Uint64(), rng.IntN(5000), rng.IntN(1000), rng.Uint32(), rng.Uint64()&0xffffffffffff, rng.IntN(500),
				rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(4000), rng.IntN(800), rng.IntN(4800), prompt.String(), prompt.Len())),
		}
	}
	return recs
}

// TestBatchesFillRequests checks the packing the bench reports: every
// request is at most 1,048,576 bytes as sent, and every request but the last
// of a batch is over 90% full.
func TestBatchesFillRequests(t *testing.T) {
	url, li := newEmulator(t)
	s := newTestSink(t, testConfig(url, testToken), nil)
	recs := typicalRecords(9000)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	sizes := li.AcceptedSizes()
	if len(sizes) < 3 {
		t.Fatalf("%d requests, want a batch that takes several", len(sizes))
	}
	for i, n := range sizes {
		fill := float64(n) / DefaultMaxRequestBytes
		t.Logf("request %d: %d bytes, %.1f%% full", i, n, 100*fill)
		if n > DefaultMaxRequestBytes {
			t.Errorf("request %d has %d bytes, over the limit", i, n)
		}
		if i < len(sizes)-1 && fill <= 0.9 {
			t.Errorf("request %d is %.1f%% full, want over 90%%", i, 100*fill)
		}
	}
	if d := sinktest.Diff(delivered(t, li), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
}

// Test413SplitsRequests lowers the service's limit under the sink's: each
// 413 splits the request until the halves fit, and every record arrives
// once, in order.
func Test413SplitsRequests(t *testing.T) {
	url, li := newEmulator(t)
	li.SetMaxBodyBytes(48 << 10)
	s := newTestSink(t, testConfig(url, testToken), nil)
	recs := typicalRecords(600)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	n413 := 0
	for _, st := range li.Statuses() {
		if st == http.StatusRequestEntityTooLarge {
			n413++
		}
	}
	if n413 == 0 {
		t.Errorf("the service never answered 413: statuses %v", li.Statuses())
	}
	for i, n := range li.AcceptedSizes() {
		if n > 48<<10 {
			t.Errorf("accepted request %d has %d bytes", i, n)
		}
	}
	if d := sinktest.Diff(delivered(t, li), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
}

// TestInvalidRecords refuses, before sending anything, a record of a kind
// with no stream, data that is not UTF-8, and a row that cannot fit in a
// request alone, naming each by index with a reason.
func TestInvalidRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	noise := make([]byte, 8<<10)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	cases := []struct {
		name   string
		mutate func(c *Config, recs []record.Record)
		want   string
	}{
		{"kind without stream", func(c *Config, recs []record.Record) { recs[1].Kind = "other_kind" }, `no log analytics stream is configured for kind "other_kind"`},
		{"stream not configured", func(c *Config, recs []record.Record) { delete(c.Streams, record.KindActivityLog) }, `kind "activity_log"`},
		{"not utf-8", func(c *Config, recs []record.Record) { recs[1].Data = json.RawMessage("\"\xff\xfe\"") }, "not valid UTF-8"},
		{"row over the request limit", func(c *Config, recs []record.Record) {
			c.MaxRequestBytes = 4096
			recs[1].Data = json.RawMessage(`{"x":"` + base64.StdEncoding.EncodeToString(noise) + `"}`)
		}, "over the destination's 4096-byte request limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url, li := newEmulator(t)
			cfg := testConfig(url, testToken)
			recs := sinktest.Records(0, 3)
			c.mutate(&cfg, recs)
			s := newTestSink(t, cfg, nil)
			err := s.Write(context.Background(), recs)
			var inv *sink.InvalidError
			if !errors.As(err, &inv) || len(inv.Indexes) != 1 || inv.Indexes[0] != 1 {
				t.Fatalf("error %v, want *sink.InvalidError naming record 1", err)
			}
			if !strings.Contains(inv.Reason, c.want) {
				t.Errorf("reason %q, want it to contain %q", inv.Reason, c.want)
			}
			if n := len(li.Statuses()); n != 0 {
				t.Errorf("the sink sent %d requests of a refused batch", n)
			}
		})
	}
}

// TestErrorClassification proves each answer becomes the error kind the
// shipper acts on, and that the token is in none of them nor in the log.
func TestErrorClassification(t *testing.T) {
	const wrongToken = "wrong-token-also-s3cr3t-9876"
	cases := []struct {
		name      string
		token     string
		setup     func(li *emulator.LogsIngestion, c *Config)
		retryable bool
		after     time.Duration
		invalid   bool
		contains  string
	}{
		{"429 with Retry-After", testToken, func(li *emulator.LogsIngestion, c *Config) {
			li.Inject(emulator.LogsIngestionFault{Status: 429, RetryAfter: 7 * time.Second})
		}, true, 7 * time.Second, false, "status 429"},
		{"503", testToken, func(li *emulator.LogsIngestion, c *Config) {
			li.Inject(emulator.LogsIngestionFault{Status: 503})
		}, true, 0, false, "status 503"},
		{"missing bearer is 401", "", nil, false, 0, false, "status 401"},
		{"wrong token is 403", wrongToken, nil, false, 0, false, "does not have access to ingest data"},
		{"unknown rule is 404", testToken, func(li *emulator.LogsIngestion, c *Config) { c.DCRImmutableID = "dcr-nope" },
			false, 0, false, "Data collection rule with immutable Id 'dcr-nope' not found."},
		{"unknown stream is 404", testToken, func(li *emulator.LogsIngestion, c *Config) { c.Streams[record.KindGatewayRequest] = "Custom-Nope" },
			false, 0, false, "Stream 'Custom-Nope' is not declared"},
		{"service refuses the rows", testToken, func(li *emulator.LogsIngestion, c *Config) {
			c.Streams[record.KindGatewayRequest] = testActivity // columns the stream does not declare
		}, false, 0, true, "is not declared in the stream"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url, li := newEmulator(t)
			cfg := testConfig(url, c.token)
			if c.setup != nil {
				c.setup(li, &cfg)
			}
			var logs logBuffer
			s := newTestSink(t, cfg, &logs)
			err := s.Write(context.Background(), sinktest.Records(0, 4))
			if err == nil {
				t.Fatal("Write succeeded")
			}
			after, retryable := sink.Retryable(err)
			var inv *sink.InvalidError
			if retryable != c.retryable || after != c.after || errors.As(err, &inv) != c.invalid {
				t.Errorf("error %v: retryable %v after %v invalid %v, want %v %v %v", err, retryable, after, inv != nil, c.retryable, c.after, c.invalid)
			}
			if !strings.Contains(err.Error(), c.contains) {
				t.Errorf("error %q does not contain %q", err, c.contains)
			}
			for _, secret := range []string{testToken, wrongToken} {
				if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
					t.Errorf("the token %q leaked: error %q log %q", secret, err, logs.String())
				}
			}
		})
	}
}

// TestCheck probes every stream without writing, and fails on a wrong
// token, rule or stream.
func TestCheck(t *testing.T) {
	url, li := newEmulator(t)
	cred := &staticCred{token: testToken}
	cfg := testConfig(url, testToken)
	cfg.Credential = cred
	if err := newTestSink(t, cfg, nil).Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if n := len(li.Rows(testGateway)) + len(li.Rows(testActivity)); n != 0 || len(li.Statuses()) != 2 {
		t.Errorf("Check wrote %d rows in %d requests, want 0 rows in 2", n, len(li.Statuses()))
	}
	if len(cred.scopes) == 0 || cred.scopes[0] != "https://monitor.azure.com//.default" {
		t.Errorf("token scopes %v, want the default with its double slash", cred.scopes)
	}
	for name, mutate := range map[string]func(c *Config){
		"wrong token":    func(c *Config) { c.Credential = &staticCred{token: "nope"} },
		"unknown rule":   func(c *Config) { c.DCRImmutableID = "dcr-nope" },
		"unknown stream": func(c *Config) { c.Streams[record.KindActivityLog] = "Custom-Nope" },
	} {
		cfg := testConfig(url, testToken)
		mutate(&cfg)
		if err := newTestSink(t, cfg, nil).Check(context.Background()); err == nil {
			t.Errorf("%s: Check succeeded", name)
		}
	}
}
