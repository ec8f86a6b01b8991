package splunk

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
)

// fakeClock drives the sink's ack polling without real sleeps: each sleep
// advances the clock and runs onSleep (if set) with the number of sleeps.
type fakeClock struct {
	t       time.Time
	sleeps  []time.Duration
	onSleep func(n int)
}

func (c *fakeClock) install(s *Sink) {
	s.now = func() time.Time { return c.t }
	s.sleep = func(ctx context.Context, d time.Duration) error {
		c.t = c.t.Add(d)
		c.sleeps = append(c.sleeps, d)
		if c.onSleep != nil {
			c.onSleep(len(c.sleeps))
		}
		return ctx.Err()
	}
}

// TestIndexerAckWaitsForIndexing: Write sends with a channel and returns
// only once Splunk reports every request indexed.
func TestIndexerAckWaitsForIndexing(t *testing.T) {
	h, url := newHEC(t, func(c *emulator.SplunkHECConfig) { c.ManualIndexing = true; c.MaxContentLength = 5000 })
	s := newSink(t, Config{URL: url, Token: testAckToken, Index: "azure", IndexerAck: true, MaxRequestBytes: 5000})
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	clk.install(s)
	var pendingAtFirstSleep, searchableAtFirstSleep int
	clk.onSleep = func(n int) {
		if n == 3 { // Splunk indexes after the third poll
			pendingAtFirstSleep, searchableAtFirstSleep = h.Pending(), len(h.Events(""))
			h.Index()
		}
	}
	recs := sinktest.Records(0, 4)
	for i := range 10 {
		recs = append(recs, sinktest.Padded(4+i, 1500))
	}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if len(clk.sleeps) != 3 || pendingAtFirstSleep != len(recs) || searchableAtFirstSleep != 0 {
		t.Errorf("Write returned after %d polls; %d pending, %d searchable while it waited; want 3 polls, %d pending, 0 searchable",
			len(clk.sleeps), pendingAtFirstSleep, searchableAtFirstSleep, len(recs))
	}
	if clk.sleeps[0] != ackPollFirst || clk.sleeps[1] != 2*ackPollFirst {
		t.Errorf("poll waits %v, want growing from %v", clk.sleeps, ackPollFirst)
	}
	if d := sinktest.Diff(delivered(t, h), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
	events := 0
	for _, rq := range h.Requests() {
		if rq.Channel != s.channel || rq.Status != 200 {
			t.Errorf("request %+v: want channel %s and 200", rq, s.channel)
		}
		if rq.Path == pathEvent {
			events++
		}
	}
	if events < 2 {
		t.Errorf("%d event requests: the batch was meant to be split, acks of several requests awaited", events)
	}
}

// TestIndexerAckTimeoutIsRetryable: acks that never come fail the batch as
// retryable after AckTimeout; the resend may duplicate under the same ids.
func TestIndexerAckTimeoutIsRetryable(t *testing.T) {
	h, url := newHEC(t, func(c *emulator.SplunkHECConfig) { c.ManualIndexing = true })
	s := newSink(t, Config{URL: url, Token: testAckToken, Index: "azure", IndexerAck: true, AckTimeout: 5 * time.Second})
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	clk.install(s)
	start := clk.t
	recs := sinktest.Records(0, 3)
	err := s.Write(context.Background(), recs)
	if _, ok := sink.Retryable(err); !ok || !strings.Contains(err.Error(), "acknowledgement") {
		t.Fatalf("Write: %v, want a retryable ack timeout", err)
	}
	if waited := clk.t.Sub(start); waited != 5*time.Second {
		t.Errorf("gave up after %s, want the 5s AckTimeout", waited)
	}
	// Indexing happens late; the shipper's resend duplicates, same ids.
	h.Index()
	clk.onSleep = func(int) { h.Index() }
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	got := delivered(t, h)
	if d := sinktest.Diff(got, append(sinktest.Clone(recs), recs...)); d != "" {
		t.Errorf("delivered differs (want two copies under the same ids):\n%s", d)
	}
}

// TestIndexerAckMismatch: the token's setting and indexer_ack disagree.
func TestIndexerAckMismatch(t *testing.T) {
	_, url := newHEC(t, nil)
	for name, cfg := range map[string]Config{
		"token has ack, sink does not": {URL: url, Token: testAckToken, Index: "azure"},
		"sink has ack, token does not": {URL: url, Token: testToken, Index: "azure", IndexerAck: true},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSink(t, cfg)
			for _, err := range []error{s.Write(context.Background(), sinktest.Records(0, 2)), s.Check(context.Background())} {
				if err == nil || !strings.Contains(err.Error(), "indexer") {
					t.Errorf("got %v, want an error about indexer acknowledgement", err)
				}
				var inv *sink.InvalidError
				if _, ok := sink.Retryable(err); ok || errors.As(err, &inv) {
					t.Errorf("%v: a configuration error must be plain", err)
				}
			}
		})
	}
}

// TestServerBusyIsRetryable: 503 code 9 is retryable with Retry-After; the
// next Write goes through.
func TestServerBusyIsRetryable(t *testing.T) {
	h, url := newHEC(t, nil)
	s := newSink(t, Config{URL: url, Token: testToken, Index: "azure"})
	h.Busy(1, 7*time.Second)
	recs := sinktest.Records(0, 3)
	err := s.Write(context.Background(), recs)
	if after, ok := sink.Retryable(err); !ok || after != 7*time.Second {
		t.Fatalf("Write during an outage: %v (after %s), want retryable after 7s", err, after)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("Check after the outage: %v", err)
	}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if d := sinktest.Diff(delivered(t, h), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
	h.Busy(-1, 0)
	if _, ok := sink.Retryable(s.Check(context.Background())); !ok {
		t.Errorf("Check during an outage is not retryable")
	}
}

// TestErrorsHoldNoToken: a wrong or disabled token gives a plain error, in
// Write and Check, and neither the errors nor the log hold a token.
func TestErrorsHoldNoToken(t *testing.T) {
	const wrong = "deadbeef-0000-4000-8000-feedfacecafe"
	_, url := newHEC(t, func(c *emulator.SplunkHECConfig) {
		c.Tokens = append(c.Tokens, emulator.SplunkHECToken{Name: "off", Value: "off-" + wrong, Disabled: true})
	})
	for _, token := range []string{wrong, "off-" + wrong} {
		var logs bytes.Buffer
		s, err := New(Config{URL: url, Token: token, Index: "azure", InsecureSkipVerify: true}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		if err != nil {
			t.Fatal(err)
		}
		werr := s.Write(context.Background(), sinktest.Records(0, 2))
		cerr := s.Check(context.Background())
		for _, err := range []error{werr, cerr} {
			var inv *sink.InvalidError
			_, retry := sink.Retryable(err)
			switch {
			case err == nil || retry || errors.As(err, &inv):
				t.Errorf("token %s: %v, want a plain error", token[:4], err)
			case !strings.Contains(err.Error(), "token"):
				t.Errorf("error %q does not say the token is the problem", err)
			}
			if err != nil && strings.Contains(err.Error(), wrong) {
				t.Errorf("error holds the token: %v", err)
			}
		}
		if strings.Contains(logs.String(), wrong) || logs.Len() == 0 {
			t.Errorf("log (%d bytes) holds the token or warned about nothing: %s", logs.Len(), logs.String())
		}
		s.Close()
	}
}

func TestRequestTooLargeIsPlain(t *testing.T) {
	_, url := newHEC(t, func(c *emulator.SplunkHECConfig) { c.MaxContentLength = 5000 })
	s := newSink(t, Config{URL: url, Token: testToken, Index: "azure", MaxRequestBytes: 20000})
	err := s.Write(context.Background(), []record.Record{sinktest.Padded(0, 8000)})
	var inv *sink.InvalidError
	if _, retry := sink.Retryable(err); err == nil || retry || errors.As(err, &inv) || !strings.Contains(err.Error(), "max_request_bytes") {
		t.Errorf("413: %v, want a plain error naming max_request_bytes", err)
	}
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	s := newSink(t, Config{URL: url, Token: testToken})
	for _, err := range []error{s.Write(context.Background(), sinktest.Records(0, 1)), s.Check(context.Background())} {
		if _, ok := sink.Retryable(err); !ok || strings.Contains(err.Error(), testToken) {
			t.Errorf("connection refused: %v, want retryable without the token", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Write(ctx, sinktest.Records(0, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a cancelled context: %v", err)
	}
}

// TestCheckWritesNothing: Check passes on a healthy HEC for both token
// kinds and indexes nothing; a URL that is not HEC fails.
func TestCheckWritesNothing(t *testing.T) {
	h, url := newHEC(t, nil)
	for _, cfg := range []Config{
		{URL: url, Token: testToken, Index: "azure"},
		{URL: url, Token: testAckToken, Index: "azure", IndexerAck: true},
	} {
		if err := newSink(t, cfg).Check(context.Background()); err != nil {
			t.Errorf("Check(ack %v): %v", cfg.IndexerAck, err)
		}
	}
	if n := len(h.Events("")) + h.Pending(); n != 0 {
		t.Errorf("Check indexed %d events", n)
	}
	notHEC := http.NewServeMux()
	notHEC.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>ok</html>")) })
	srv := httptest.NewServer(notHEC)
	t.Cleanup(srv.Close)
	if err := newSink(t, Config{URL: srv.URL, Token: testToken}).Check(context.Background()); err == nil {
		t.Errorf("Check against a server that is not HEC passed")
	}
}

// TestTLS: a self-signed certificate fails as a plain error unless
// InsecureSkipVerify is set.
func TestTLS(t *testing.T) {
	h, err := emulator.NewSplunkHEC(emulator.SplunkHECConfig{Tokens: []emulator.SplunkHECToken{{Name: "t", Value: testToken}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	strict := newSink(t, Config{URL: srv.URL, Token: testToken})
	err = strict.Write(context.Background(), sinktest.Records(0, 1))
	if _, retry := sink.Retryable(err); err == nil || retry || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("self-signed certificate: %v, want a plain certificate error", err)
	}
	insecure := newSink(t, Config{URL: srv.URL, Token: testToken, InsecureSkipVerify: true})
	recs := sinktest.Records(0, 2)
	if err := insecure.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := insecure.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
	if d := sinktest.Diff(delivered(t, h), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
}
