package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
)

const longStream = `{"stream":true,"max_tokens":400,"messages":[{"role":"user","content":"Tell me everything about lighthouses"}]}`

// openStream starts a streamed call and returns its response, unread.
func (h *harness) openStream(ctx context.Context, path, body string) *http.Response {
	h.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL+path, strings.NewReader(body))
	req.Header.Set("api-key", h.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		h.t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return resp
}

// readEvents reads n SSE events.
func readEvents(t *testing.T, r *bufio.Reader, n int) []string {
	t.Helper()
	var evs []string
	var cur strings.Builder
	for len(evs) < n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d events: %v", len(evs), err)
		}
		if line == "\n" {
			evs = append(evs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return evs
}

func TestClientDisconnectMidStream(t *testing.T) {
	h := newHarness(t, func(_ *config.Config, e *emulator.AOAIConfig) { e.TokensPerSecond, e.CompletionTokens = 200, 400 })
	ctx, cancel := context.WithCancel(context.Background())
	resp := h.openStream(ctx, chatPath, longStream)
	readEvents(t, bufio.NewReader(resp.Body), 6) // prompt filter, role, some content
	cancel()
	resp.Body.Close()

	rec := h.only()
	if rec.Status != statusClientClosed || rec.State != record.StateInterrupted || rec.Error == nil ||
		rec.Error.Code != "client_closed" {
		t.Fatalf("record status %d state %s error %+v", rec.Status, rec.State, rec.Error)
	}
	if rec.Response == nil || rec.Response.Text == "" || rec.UpstreamStatus != 200 {
		t.Errorf("what was streamed so far is not recorded: %+v", rec.Response)
	}
	if rec.Usage == nil || rec.Usage.Source != record.UsageEstimated || rec.Usage.CompletionTokens == 0 ||
		rec.Usage.CompletionTokens >= 400 || rec.Usage.PromptTokens == 0 {
		t.Errorf("usage of a cut stream must be estimated from what was streamed: %+v", rec.Usage)
	}
}

func TestUpstreamResetMidStream(t *testing.T) {
	h := newHarness(t, func(_ *config.Config, e *emulator.AOAIConfig) { e.CompletionTokens = 400 })
	h.aoai.Inject(emulator.AOAIFault{ResetAfterEvents: 5})
	resp := h.openStream(context.Background(), chatPath, longStream)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || bytes.Contains(b, []byte("[DONE]")) {
		t.Fatalf("the caller must see the stream break, got err %v and %d bytes", err, len(b))
	}
	rec := h.only()
	if rec.State != record.StateInterrupted || rec.Status != http.StatusBadGateway || rec.Error == nil ||
		rec.Error.Code != "upstream_interrupted" {
		t.Fatalf("record state %s status %d error %+v", rec.State, rec.Status, rec.Error)
	}
	if rec.Response == nil || rec.Response.Text == "" || rec.Usage == nil || rec.Usage.Source != record.UsageEstimated {
		t.Errorf("response %+v usage %+v", rec.Response, rec.Usage)
	}
}

func TestSlowUpstreamRecordsTimeToFirstToken(t *testing.T) {
	h := newHarness(t, func(_ *config.Config, e *emulator.AOAIConfig) { e.Latency = 80 * time.Millisecond })
	resp := h.openStream(context.Background(), chatPath, `{"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	rec := h.only()
	// Lower bounds only: the emulator waits at least this long.
	if rec.State != record.StateCompleted || rec.TTFTMS == nil || *rec.TTFTMS < 80 || rec.DurationMS < *rec.TTFTMS {
		t.Errorf("state %s ttft %v duration %v", rec.State, rec.TTFTMS, rec.DurationMS)
	}
}

// The caller who did not ask for usage gets exactly what the backend sends
// such a caller: no usage chunk and no "usage":null members.
func TestInjectedUsageIsInvisibleToTheCaller(t *testing.T) {
	h := newHarness(t)
	body := `{"stream":true,"max_tokens":12,"messages":[{"role":"user","content":"hi"}]}`
	resp := h.openStream(context.Background(), chatPath, body)
	via, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	req, _ := http.NewRequest(http.MethodPost, h.upstream.URL+chatPath, strings.NewReader(body))
	req.Header.Set("api-key", upstreamKey)
	direct, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(direct.Body)
	direct.Body.Close()

	if bytes.Contains(via, []byte("usage")) {
		t.Errorf("the caller got usage it did not ask for:\n%s", via)
	}
	gotEv, wantEv := sseEvents(via), sseEvents(want)
	if len(gotEv) != len(wantEv) || gotEv[len(gotEv)-1] != "data: [DONE]" {
		t.Errorf("%d events through the gateway, %d direct", len(gotEv), len(wantEv))
	}
	if rec := h.only(); rec.Usage == nil || rec.Usage.Source != record.UsageReported {
		t.Errorf("usage %+v", rec.Usage)
	}
}

// Old api-versions never send usage when streaming (azure-contracts.md
// §7.4): the gateway does not inject, and estimates instead.
func TestOldAPIVersionStreamIsEstimated(t *testing.T) {
	h := newHarness(t)
	resp := h.openStream(context.Background(), "/openai/deployments/gpt-4/chat/completions?api-version=2024-06-01",
		`{"stream":true,"max_tokens":10,"messages":[{"role":"user","content":"Count to ten"}]}`)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	rec := h.only()
	if rec.Usage == nil || rec.Usage.Source != record.UsageEstimated || rec.Usage.CompletionTokens == 0 ||
		rec.Usage.TotalTokens != rec.Usage.PromptTokens+rec.Usage.CompletionTokens {
		t.Errorf("usage %+v", rec.Usage)
	}
}

// An OpenAI-compatible backend may answer without usage: the gateway
// estimates it from the prompt and the response's text.
func TestResponseWithoutUsageIsEstimated(t *testing.T) {
	answer := strings.Repeat("hello ", 50)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-2024-08-06",`+
			`"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":%q}}]}`, answer)
	}))
	t.Cleanup(backend.Close)
	h := newHarness(t, func(c *config.Config, _ *emulator.AOAIConfig) { c.Gateway.Backends[0].URL = backend.URL })
	resp, body := h.post(chatPath, `{"messages":[{"role":"user","content":"Say hello fifty times"}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	rec := h.only()
	// "hello" and " hello" are one token each in o200k_base.
	if u := rec.Usage; u == nil || u.Source != record.UsageEstimated || u.CompletionTokens < 45 || u.CompletionTokens > 55 ||
		u.PromptTokens == 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage %+v", rec.Usage)
	}
	if rec.Response == nil || !strings.Contains(rec.Response.Text, answer) {
		t.Errorf("response %+v", rec.Response)
	}
}

func TestLongStreamCaptureIsBounded(t *testing.T) {
	h := newHarness(t, func(c *config.Config, e *emulator.AOAIConfig) {
		c.Gateway.MaxCaptureBytes, e.CompletionTokens = 1024, 20000
	})
	resp := h.openStream(context.Background(), chatPath,
		`{"stream":true,"max_tokens":20000,"messages":[{"role":"user","content":"go on"}]}`)
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	rec := h.only()
	if rec.Response == nil || len(rec.Response.Text) > 1024 || !rec.Response.Truncated || rec.ResponseBytes != n {
		t.Errorf("response capture %d bytes truncated=%v; response_bytes %d of %d", len(rec.Response.Text),
			rec.Response.Truncated, rec.ResponseBytes, n)
	}
	if rec.Usage == nil || rec.Usage.CompletionTokens < 1000 {
		t.Errorf("usage %+v", rec.Usage)
	}
}

func TestStrictAuditCommitsBeforeForwarding(t *testing.T) {
	h := newHarness(t)
	h.aoai.Inject(emulator.AOAIFault{Delay: 300 * time.Millisecond})
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.post(chatPath, `{"messages":[{"role":"user","content":"hello"}]}`)
	}()
	var started []record.GatewayRequest
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(started) == 0; time.Sleep(2 * time.Millisecond) {
		started = h.records()
	}
	<-done
	if len(started) != 1 || started[0].State != record.StateStarted || started[0].Prompt == nil ||
		started[0].Principal.KeyName != "tester" {
		t.Fatalf("no started record while the call was in flight: %+v", started)
	}
	final := h.only()
	if final.RequestID != started[0].RequestID || final.State != record.StateCompleted {
		t.Errorf("the completed record must replace the started one: %+v", final)
	}
}

func TestStrictAuditRefusesWhenStoreFull(t *testing.T) {
	h := newHarness(t, func(c *config.Config, _ *emulator.AOAIConfig) { c.Store.MaxBytes = -1 })
	resp, b := h.post(chatPath, `{"messages":[{"role":"user","content":"hello"}]}`)
	if e := parseError(t, b); resp.StatusCode != 503 || !strings.Contains(e.Error.Message, "not forwarded") {
		t.Fatalf("got %d %+v", resp.StatusCode, e)
	}
	if n := len(h.aoai.Requests()); n != 0 {
		t.Fatalf("a call the store could not record reached the backend (%d requests)", n)
	}
}

func TestStandardAuditServesWhenStoreFull(t *testing.T) {
	h := newHarness(t, func(c *config.Config, _ *emulator.AOAIConfig) {
		c.Store.MaxBytes = -1
		c.Gateway.Audit = config.AuditStandard
	})
	resp, _ := h.post(chatPath, `{"messages":[{"role":"user","content":"hello"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The record is written after the response is flushed: wait for it.
	for deadline := time.Now().Add(5 * time.Second); h.gw.Stats().Dropped == 0 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	if d := h.gw.Stats().Dropped; d != 1 {
		t.Errorf("dropped = %d, want 1", d)
	}
}

func TestCapturePolicies(t *testing.T) {
	prompt := `{"messages":[{"role":"user","content":"mail ana@contoso.com and bo.li@fabrikam.co.uk the report ` +
		strings.Repeat("x", 300) + `"}]}`
	t.Run("full with redaction and truncation", func(t *testing.T) {
		h := newHarness(t, func(c *config.Config, _ *emulator.AOAIConfig) {
			c.Gateway.Redact = []config.RedactRule{{Name: "email", Pattern: `[\w.+-]+@[\w-]+\.[\w.]+`}}
			c.Gateway.MaxCaptureBytes = 128
		})
		h.post(chatPath, prompt)
		rec := h.only()
		p := rec.Prompt
		if p.Redactions != 2 || strings.Contains(p.Text, "contoso.com") || !strings.Contains(p.Text, "[REDACTED]") {
			t.Errorf("redaction: %+v", p)
		}
		if !p.Truncated || len(p.Text) > 128 || p.Bytes != int64(len(prompt)) {
			t.Errorf("truncation: %d bytes of %d, truncated %v", len(p.Text), p.Bytes, p.Truncated)
		}
	})
	t.Run("metadata", func(t *testing.T) {
		h := newHarness(t, func(c *config.Config, _ *emulator.AOAIConfig) { c.Gateway.Capture = config.CaptureMetadata })
		h.post(chatPath, prompt)
		rec := h.only()
		if rec.Prompt == nil || rec.Prompt.Text != "" || rec.Prompt.Bytes != int64(len(prompt)) ||
			rec.Response == nil || rec.Response.Text != "" || rec.Usage == nil {
			t.Errorf("metadata capture: prompt %+v response %+v usage %+v", rec.Prompt, rec.Response, rec.Usage)
		}
	})
	t.Run("none", func(t *testing.T) {
		h := newHarness(t, func(c *config.Config, _ *emulator.AOAIConfig) { c.Gateway.Capture = config.CaptureNone })
		h.post(chatPath, prompt)
		if rec := h.only(); rec.Prompt != nil || rec.Response != nil || rec.Usage == nil {
			t.Errorf("none capture: %+v", rec)
		}
	})
}
