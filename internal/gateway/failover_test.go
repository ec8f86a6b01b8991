package gateway

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
)

// fakeClock is a settable clock for the gateway.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// secondBackend starts another Azure OpenAI emulator and adds it as the
// backend "west" at priority 2, behind the harness's "emu" at priority 1.
func secondBackend(t *testing.T) (*emulator.AOAI, setup) {
	west := emulator.NewAOAI(emulator.AOAIConfig{
		Deployments: map[string]string{"gpt-4o": "gpt-4o-2024-08-06"},
		APIKeys:     []string{"west-key-0123456789"},
	}, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(west)
	t.Cleanup(srv.Close)
	return west, func(c *config.Config, _ *emulator.AOAIConfig) {
		c.Gateway.Backends[0].Priority = 1
		c.Gateway.Backends = append(c.Gateway.Backends, config.Backend{Name: "west", URL: srv.URL,
			Auth: config.AuthAPIKey, APIKey: "west-key-0123456789", Priority: 2})
	}
}

const chatBody = `{"messages":[{"role":"user","content":"hello"}]}`

func TestFailoverOn429ThenCoolDown(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	west, second := secondBackend(t)
	h := newHarnessWith(t, func(o *Options) { o.Now = clock.now }, second)
	h.aoai.Inject(emulator.AOAIFault{Status: 429, RetryAfter: 20 * time.Second})

	resp, body := h.post(chatPath, chatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("first call: %d %s", resp.StatusCode, body)
	}
	rec := h.waitRecords(1)[0]
	if rec.Backend != "west" || rec.Attempts != 2 || len(rec.Tried) != 1 ||
		rec.Tried[0] != (record.Attempt{Backend: "emu", Status: 429, RetryAfterMS: 20000}) {
		t.Errorf("record: backend %q, attempts %d, tried %+v", rec.Backend, rec.Attempts, rec.Tried)
	}
	if rec.Status != 200 || rec.UpstreamStatus != 200 || rec.Usage == nil {
		t.Errorf("record of the answered call: status %d upstream %d usage %v", rec.Status, rec.UpstreamStatus, rec.Usage)
	}

	// During emu's cool-down it is not even asked.
	before := len(h.aoai.Requests())
	clock.advance(19 * time.Second)
	if resp, body := h.post(chatPath, chatBody); resp.StatusCode != 200 {
		t.Fatalf("second call: %d %s", resp.StatusCode, body)
	}
	if n := len(h.aoai.Requests()); n != before {
		t.Errorf("the cooling backend got %d calls", n-before)
	}
	if rec := h.waitRecords(2)[1]; rec.Backend != "west" || rec.Attempts != 1 {
		t.Errorf("second record: backend %q attempts %d", rec.Backend, rec.Attempts)
	}

	// After it, emu (priority 1) answers again.
	clock.advance(time.Second)
	if resp, body := h.post(chatPath, chatBody); resp.StatusCode != 200 {
		t.Fatalf("third call: %d %s", resp.StatusCode, body)
	}
	if rec := h.waitRecords(3)[2]; rec.Backend != "emu" || rec.Attempts != 1 {
		t.Errorf("third record: backend %q attempts %d", rec.Backend, rec.Attempts)
	}
	if n := len(west.Requests()); n != 2 {
		t.Errorf("west got %d calls, want 2", n)
	}
}

func TestEveryBackendCoolingAnswers429WithoutForwarding(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	west, second := secondBackend(t)
	h := newHarnessWith(t, func(o *Options) { o.Now = clock.now }, second)
	h.aoai.Inject(emulator.AOAIFault{Status: 429, RetryAfter: 30 * time.Second})
	west.Inject(emulator.AOAIFault{Status: 429, RetryAfter: 10 * time.Second})

	resp, _ := h.post(chatPath, chatBody)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "10" {
		t.Fatalf("both throttled: %d Retry-After %q (the last backend's answer passes through)",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	calls := len(h.aoai.Requests()) + len(west.Requests())
	clock.advance(4 * time.Second)
	resp, body := h.post(chatPath, chatBody)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "6" || !strings.Contains(string(body), "cooling down") {
		t.Errorf("while both cool down: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if n := len(h.aoai.Requests()) + len(west.Requests()); n != calls {
		t.Errorf("%d calls forwarded while every backend cools down", n-calls)
	}
	recs := h.waitRecords(2)
	if recs[1].Status != 429 || recs[1].State != record.StateDenied {
		t.Errorf("the gateway's own 429 is recorded as %+v", recs[1])
	}
}

func TestStreamIsNeverRetriedAfterItsFirstByte(t *testing.T) {
	west, second := secondBackend(t)
	h := newHarness(t, second)
	h.aoai.Inject(emulator.AOAIFault{ResetAfterEvents: 3})
	resp, body := h.post(chatPath, `{"stream":true,"messages":[{"role":"user","content":"hello"}]}`)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "data: ") {
		t.Fatalf("stream: %d %q", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "[DONE]") {
		t.Errorf("the broken stream was completed from another backend:\n%s", body)
	}
	if n := len(west.Requests()); n != 0 {
		t.Errorf("a stream that had started was retried on west (%d calls)", n)
	}
	if rec := h.waitRecords(1)[0]; rec.Backend != "emu" || rec.Attempts != 1 {
		t.Errorf("record: backend %q attempts %d", rec.Backend, rec.Attempts)
	}
}

func TestBreakerOpensOnAnUnreachableBackend(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there any more
	west, second := secondBackend(t)
	h := newHarnessWith(t, func(o *Options) { o.Now = clock.now }, second, func(c *config.Config, _ *emulator.AOAIConfig) {
		c.Gateway.Backends[0].URL = dead
	})
	for i := range breakerFailures + 2 {
		if resp, body := h.post(chatPath, chatBody); resp.StatusCode != 200 {
			t.Fatalf("call %d: %d %s", i, resp.StatusCode, body)
		}
	}
	recs := h.waitRecords(breakerFailures + 2)
	for i, r := range recs {
		want := 2
		if i >= breakerFailures {
			want = 1 // the breaker is open: emu is skipped
		}
		if r.Backend != "west" || r.Attempts != want {
			t.Errorf("call %d: backend %q attempts %d, want %d", i, r.Backend, r.Attempts, want)
		}
		if want == 2 && (len(r.Tried) != 1 || r.Tried[0].Backend != "emu" || r.Tried[0].Error == "") {
			t.Errorf("call %d: tried %+v", i, r.Tried)
		}
	}
	// Half-open after the breaker's time: one call probes emu again.
	clock.advance(breakerOpen)
	if resp, _ := h.post(chatPath, chatBody); resp.StatusCode != 200 {
		t.Fatal("half-open call failed")
	}
	if r := h.waitRecords(breakerFailures + 3)[breakerFailures+2]; r.Attempts != 2 {
		t.Errorf("the half-open call did not probe emu: attempts %d", r.Attempts)
	}
	if n := len(west.Requests()); n != breakerFailures+3 {
		t.Errorf("west answered %d calls", n)
	}
}

func TestNoFailoverOn400(t *testing.T) {
	west, second := secondBackend(t)
	h := newHarness(t, second)
	resp, body := h.post("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", `{"messages":"not a list"}`)
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	if n := len(west.Requests()); n != 0 {
		t.Errorf("a 400 was retried on west (%d calls)", n)
	}
}
