package splunk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
)

const (
	testToken    = "5e3c1f0a-9b7d-4c2e-8f61-0d4a7b9c2e13"
	testAckToken = "c0ffee00-1234-4abc-9def-00112233aabb"
)

// newHEC serves a Splunk HEC stand-in with two tokens: testToken (indexes
// azure and main, no ack) and testAckToken (indexer ack on); edit adjusts
// the config first.
func newHEC(t *testing.T, edit func(*emulator.SplunkHECConfig)) (*emulator.SplunkHEC, string) {
	t.Helper()
	cfg := emulator.SplunkHECConfig{Tokens: []emulator.SplunkHECToken{
		{Name: "tapline", Value: testToken, Indexes: []string{"azure", "main", "audit"}},
		{Name: "tapline-ack", Value: testAckToken, IndexerAck: true, Indexes: []string{"azure"}},
	}}
	if edit != nil {
		edit(&cfg)
	}
	h, err := emulator.NewSplunkHEC(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL
}

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// delivered decodes the envelope of every indexed event, in arrival order.
func delivered(t *testing.T, h *emulator.SplunkHEC) []record.Record {
	t.Helper()
	var recs []record.Record
	for _, ev := range h.Events("") {
		var r record.Record
		if err := json.Unmarshal(ev.Event, &r); err != nil {
			t.Fatalf("event %.100q is not a record envelope: %v", ev.Event, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinktest.Target {
			h, url := newHEC(t, nil) // the stand-in's max_content_length is 1,000,000 too
			s := newSink(t, Config{URL: url, Token: testToken, Index: "azure"})
			return sinktest.Target{Sink: s, Delivered: func(t *testing.T) []record.Record { return delivered(t, h) }}
		},
		// One record is one event, and one event must fit in a request.
		MaxRecordBytes: DefaultMaxRequestBytes,
	})
}

func TestConformanceIndexerAck(t *testing.T) {
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinktest.Target {
			h, url := newHEC(t, nil)
			s := newSink(t, Config{URL: url + "/services/collector/event", Token: testAckToken, Index: "azure", IndexerAck: true})
			return sinktest.Target{Sink: s, Delivered: func(t *testing.T) []record.Record { return delivered(t, h) }}
		},
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"empty url":              {Token: testToken},
		"relative url":           {URL: "splunk:8088", Token: testToken},
		"ftp url":                {URL: "ftp://splunk:8088", Token: testToken},
		"http to a remote host":  {URL: "http://splunk.example.com:8088", Token: testToken},
		"url with a query":       {URL: "https://splunk:8088/?token=" + testToken, Token: testToken},
		"url with user info":     {URL: "https://x:" + testToken + "@splunk:8088", Token: testToken},
		"bad url with a query":   {URL: "https://splunk:80%88/?token=" + testToken, Token: testToken},
		"empty token":            {URL: "https://splunk:8088"},
		"token with a newline":   {URL: "https://splunk:8088", Token: "abc\r\nX-Evil: 1"},
		"tiny max request bytes": {URL: "https://splunk:8088", Token: testToken, MaxRequestBytes: 100},
		"negative ack timeout":   {URL: "https://splunk:8088", Token: testToken, AckTimeout: -time.Second},
		"empty per-kind index":   {URL: "https://splunk:8088", Token: testToken, Indexes: map[record.Kind]string{record.KindActivityLog: " "}},
		"empty sourcetype":       {URL: "https://splunk:8088", Token: testToken, Sourcetypes: map[record.Kind]string{record.KindActivityLog: ""}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(cfg, nil)
			if err == nil {
				t.Fatalf("New(%+v) succeeded", cfg)
			}
			if cfg.Token != "" && strings.Contains(err.Error(), cfg.Token) {
				t.Errorf("error holds the token: %v", err)
			}
		})
	}
	for raw, want := range map[string]string{
		"https://splunk:8088":                            "https://splunk:8088",
		"https://splunk:8088/":                           "https://splunk:8088",
		"https://splunk:8088/services/collector/event":   "https://splunk:8088",
		"https://splunk:8088/services/collector":         "https://splunk:8088",
		"https://lb/splunk/services/collector/event/1.0": "https://lb/splunk",
		"http://127.0.0.1:8088":                          "http://127.0.0.1:8088",
		"http://localhost:8088":                          "http://localhost:8088",
	} {
		if got, err := parseURL(raw); err != nil || got != want {
			t.Errorf("parseURL(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
}

// TestEventShape: time in epoch seconds with nanoseconds, index and
// sourcetype per kind, host and source, the envelope as "event" and the
// indexed fields id and kind.
func TestEventShape(t *testing.T) {
	h, url := newHEC(t, nil)
	s := newSink(t, Config{
		URL: url, Token: testToken, Index: "azure", Host: "gw-1", Source: "tapline",
		Indexes:     map[record.Kind]string{record.KindActivityLog: "audit"},
		Sourcetypes: map[record.Kind]string{record.KindGatewayRequest: "custom:gw"},
	})
	recs := sinktest.Records(0, 2)
	recs = append(recs, record.Record{ID: "old", Kind: "other", Version: 1, Data: json.RawMessage(`{}`)}) // zero time
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	evs := h.Events("")
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	want := []struct{ index, sourcetype, time string }{
		{"azure", "custom:gw", fmt.Sprintf("%d.123456789", recs[0].Time.Unix())},
		{"audit", SourcetypeActivityLog, fmt.Sprintf("%d.124456789", recs[1].Time.Unix())},
		{"azure", "tapline:other", ""},
	}
	for i, ev := range evs {
		w := want[i]
		if ev.Index != w.index || ev.Sourcetype != w.sourcetype || ev.Time != w.time || ev.Host != "gw-1" || ev.Source != "tapline" {
			t.Errorf("event %d: index %q sourcetype %q time %q host %q source %q; want %+v", i, ev.Index, ev.Sourcetype, ev.Time, ev.Host, ev.Source, w)
		}
		wantFields := fmt.Sprintf(`{"id":%q,"kind":%q}`, recs[i].ID, recs[i].Kind)
		if string(ev.Fields) != wantFields {
			t.Errorf("event %d: fields %s, want %s", i, ev.Fields, wantFields)
		}
		if env := record.AppendJSON(nil, recs[i]); string(ev.Event) != string(env) {
			t.Errorf("event %d: %s, want the envelope %s", i, ev.Event, env)
		}
	}
	if got := h.Events("audit"); len(got) != 1 {
		t.Errorf("%d events in audit, want the one activity_log record", len(got))
	}
}

// TestSplitsRequests: a batch over MaxRequestBytes goes as several requests,
// each within the limit, in order, nothing lost.
func TestSplitsRequests(t *testing.T) {
	h, url := newHEC(t, func(c *emulator.SplunkHECConfig) { c.MaxContentLength = 5000 })
	s := newSink(t, Config{URL: url, Token: testToken, Index: "azure", MaxRequestBytes: 5000})
	var recs []record.Record
	for i := range 30 {
		recs = append(recs, sinktest.Padded(i, 100+i*37))
	}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if d := sinktest.Diff(delivered(t, h), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
	reqs := h.Requests()
	if len(reqs) < 3 {
		t.Errorf("%d requests, want the batch split", len(reqs))
	}
	for i, rq := range reqs {
		if rq.Bytes > 5000 || rq.Status != 200 {
			t.Errorf("request %d: %d bytes, status %d", i, rq.Bytes, rq.Status)
		}
	}
}

// TestIncorrectIndexNamesRecord: a per-kind index the token may not write
// is refused with code 7 and invalid-event-number counting events of one
// request; the sink maps it back to the record's position in the batch.
func TestIncorrectIndexNamesRecord(t *testing.T) {
	for _, pos := range []int{0, 5, 11} {
		t.Run(fmt.Sprint("position ", pos), func(t *testing.T) {
			h, url := newHEC(t, func(c *emulator.SplunkHECConfig) { c.MaxContentLength = 5000 })
			s := newSink(t, Config{
				URL: url, Token: testToken, Index: "azure", MaxRequestBytes: 5000,
				Indexes: map[record.Kind]string{record.KindActivityLog: "forbidden"},
			})
			// Gateway records of ~1.2 KB, three or four to a request, and
			// one activity_log record at pos.
			var recs []record.Record
			for i := range 14 {
				r := sinktest.Padded(2*i, 1200)
				if i == pos {
					r = sinktest.Records(2*i+1, 1)[0]
				}
				recs = append(recs, r)
			}
			err := s.Write(context.Background(), recs)
			var inv *sink.InvalidError
			if !errors.As(err, &inv) || !slices.Equal(inv.Indexes, []int{pos}) {
				t.Fatalf("Write: %v, want InvalidRecords naming %d", err, pos)
			}
			if _, ok := sink.Retryable(err); ok || !strings.Contains(err.Error(), "index") {
				t.Errorf("error %q: retryable or not about the index", err)
			}
			if rqs := h.Requests(); pos > 4 && len(rqs) < 2 {
				t.Errorf("the refused record was in the first of %d requests: the test proves no mapping", len(rqs))
			}
			// The records before it were indexed (as Splunk does); none after.
			if d := sinktest.Diff(delivered(t, h), recs[:pos]); d != "" {
				t.Errorf("delivered differs from the records before the refused one:\n%s", d)
			}
		})
	}
}

func TestDataNotJSONRefusedBeforeSending(t *testing.T) {
	h, url := newHEC(t, nil)
	s := newSink(t, Config{URL: url, Token: testToken})
	recs := sinktest.Records(0, 3)
	recs[2].Data = json.RawMessage(`{"broken":`)
	err := s.Write(context.Background(), recs)
	var inv *sink.InvalidError
	if !errors.As(err, &inv) || !slices.Equal(inv.Indexes, []int{2}) {
		t.Fatalf("Write: %v, want InvalidRecords naming 2", err)
	}
	if n := len(h.Requests()); n != 0 {
		t.Errorf("%d requests sent for a refused batch", n)
	}
}
