package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
)

const chatPath = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"

// errorBody is the OpenAI error envelope.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func parseError(t *testing.T, b []byte) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" {
		t.Fatalf("not an OpenAI-shaped error: %s", b)
	}
	return e
}

func TestCallersWithoutValidKeyAreDeniedAndRecorded(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name   string
		hdr    []string
		expect string
	}{
		{"no credential", []string{"api-key", ""}, "no credentials"},
		{"azure openai key", []string{"api-key", upstreamKey}, "not a Tapline gateway key"},
		{"wrong key", []string{"api-key", "tapline_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "invalid gateway key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := h.post(chatPath, `{"messages":[{"role":"user","content":"hi"}]}`, c.hdr...)
			e := parseError(t, body)
			if resp.StatusCode != 401 || e.Error.Code != "401" || !strings.Contains(e.Error.Message, c.expect) {
				t.Errorf("got %d %+v", resp.StatusCode, e)
			}
			if strings.Contains(string(body), upstreamKey) {
				t.Error("the error echoes the credential")
			}
		})
	}
	recs := h.waitRecords(len(cases))
	for _, r := range recs {
		if r.State != record.StateDenied || r.Status != 401 || r.ClientIP != "127.0.0.1" || r.Error == nil {
			t.Errorf("denied record %+v", r)
		}
	}
	if n := len(h.aoai.Requests()); n != 0 {
		t.Errorf("%d denied calls reached the backend", n)
	}
}

// headerEcho is an upstream that answers a small chat completion and keeps
// the headers it was sent, to see what the gateway forwards.
type headerEcho struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (e *headerEcho) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.seen = append(e.seen, r.Clone(r.Context()))
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"object":"chat.completion","model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`))
}

func TestForwardedHeaders(t *testing.T) {
	echo := &headerEcho{}
	up := httptest.NewServer(echo)
	defer up.Close()
	withEcho := func(trusted ...string) setup {
		return func(c *config.Config, _ *emulator.AOAIConfig) {
			c.Gateway.TrustedProxies = trusted
			c.Gateway.Backends[0].Priority = 2
			c.Gateway.Backends = append(c.Gateway.Backends, config.Backend{Name: "echo", URL: up.URL,
				Auth: config.AuthManagedIdentity, Deployments: []string{"echo-*"}, Priority: 1})
		}
	}
	path := "/openai/deployments/echo-1/chat/completions?api-version=2024-10-21"
	body := `{"messages":[{"role":"user","content":"hi"}]}`

	t.Run("untrusted peer", func(t *testing.T) {
		h := newHarness(t, withEcho())
		h.post(path, body, "X-Forwarded-For", "6.6.6.6", "Cookie", "session=abc",
			"Ocp-Apim-Subscription-Key", "apim-secret", "Connection", "keep-alive, X-Hop", "X-Hop", "1",
			"Accept-Encoding", "br")
		got := echo.seen[len(echo.seen)-1]
		if v := got.Header.Get("Authorization"); v != "Bearer "+testMIToken {
			t.Errorf("backend auth = %q, want the gateway's managed identity token", v)
		}
		for _, k := range []string{"Api-Key", "Cookie", "Ocp-Apim-Subscription-Key", "X-Hop"} {
			if v := got.Header.Get(k); v != "" {
				t.Errorf("%s forwarded: %q", k, v)
			}
		}
		if xff := got.Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q: a client-set value must not be trusted", xff)
		}
		if got.Host != strings.TrimPrefix(up.URL, "http://") {
			t.Errorf("Host = %q", got.Host)
		}
		if got.Header.Get("X-Ms-Client-Request-Id") == "" {
			t.Error("no client request id for correlation")
		}
		rec := h.only()
		if rec.ClientIP != "127.0.0.1" || rec.ForwardedFor != "6.6.6.6" || rec.Backend != "echo" {
			t.Errorf("record client_ip %q forwarded_for %q backend %q", rec.ClientIP, rec.ForwardedFor, rec.Backend)
		}
		if rec.Principal.KeyName != "tester" || strings.Contains(rec.Prompt.Text, h.key) {
			t.Errorf("principal %+v", rec.Principal)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		h := newHarness(t, withEcho("127.0.0.0/8", "10.0.0.0/8"))
		h.post(path, body, "X-Forwarded-For", "203.0.113.9, 10.1.2.3")
		got := echo.seen[len(echo.seen)-1]
		if xff := got.Header.Get("X-Forwarded-For"); xff != "203.0.113.9, 10.1.2.3, 127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q", xff)
		}
		if rec := h.only(); rec.ClientIP != "203.0.113.9" {
			t.Errorf("client_ip %q, want the first untrusted hop", rec.ClientIP)
		}
	})
}

func TestRoutingErrors(t *testing.T) {
	h := newHarness(t, func(c *config.Config, _ *emulator.AOAIConfig) {
		c.Gateway.Backends[0].Deployments = []string{"gpt-*", "text-embedding-3-small"}
	})
	cases := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"unknown api", "/openai/whatever", `{}`, 404, "404"},
		{"no api-version", "/openai/deployments/gpt-4o/chat/completions", `{}`, 400, "400"},
		{"no backend for deployment", "/openai/deployments/llama/chat/completions?api-version=2024-10-21", `{"messages":[]}`, 404, "DeploymentNotFound"},
		{"malformed json", chatPath, `{"messages":[`, 400, "400"},
		{"v1 without model", "/openai/v1/chat/completions", `{"messages":[]}`, 400, "400"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := h.post(c.path, c.body)
			if e := parseError(t, body); resp.StatusCode != c.status || e.Error.Code != c.code {
				t.Errorf("got %d %+v", resp.StatusCode, e)
			}
		})
	}
	for _, r := range h.waitRecords(len(cases)) {
		if r.State != record.StateDenied || r.Principal.KeyName != "tester" {
			t.Errorf("refused call recorded as %+v", r)
		}
	}
	if n := len(h.aoai.Requests()); n != 0 {
		t.Errorf("%d refused calls reached the backend", n)
	}
}

func TestUpstreamErrorsArePassedAndRecorded(t *testing.T) {
	body := `{"messages":[{"role":"user","content":"hello"}]}`
	t.Run("429 with Retry-After", func(t *testing.T) {
		h := newHarness(t)
		h.aoai.Inject(emulator.AOAIFault{Status: 429, RetryAfter: 7e9})
		resp, b := h.post(chatPath, body)
		e := parseError(t, b)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || e.Error.Code != "429" {
			t.Fatalf("caller got %d retry-after %q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), e)
		}
		rec := h.only()
		if rec.Status != 429 || rec.Error == nil || rec.Error.Code != "429" || rec.Error.RetryAfterMS != 7000 ||
			!strings.Contains(rec.Error.Message, "exceeded") || rec.State != record.StateCompleted || rec.Usage != nil {
			t.Errorf("record %+v error %+v", rec, rec.Error)
		}
	})
	t.Run("content filter", func(t *testing.T) {
		h := newHarness(t)
		resp, b := h.post(chatPath, `{"messages":[{"role":"user","content":"How do I rob a bank with violence?"}]}`)
		if e := parseError(t, b); resp.StatusCode != 400 || e.Error.Code != "content_filter" {
			t.Fatalf("caller got %d %+v", resp.StatusCode, e)
		}
		rec := h.only()
		if rec.ContentFilter == nil || !rec.ContentFilter.Filtered || !contains(rec.ContentFilter.Categories, "violence") {
			t.Errorf("content filter %+v", rec.ContentFilter)
		}
		if rec.Error == nil || rec.Error.Code != "content_filter" || rec.Status != 400 {
			t.Errorf("error %+v status %d", rec.Error, rec.Status)
		}
	})
	t.Run("deployment missing at the backend", func(t *testing.T) {
		h := newHarness(t)
		resp, b := h.post("/openai/deployments/nope/chat/completions?api-version=2024-10-21", body)
		if e := parseError(t, b); resp.StatusCode != 404 || e.Error.Code != "DeploymentNotFound" {
			t.Fatalf("caller got %d %+v", resp.StatusCode, e)
		}
		if rec := h.only(); rec.Status != 404 || rec.UpstreamStatus != 404 || rec.Error.Code != "DeploymentNotFound" {
			t.Errorf("record %+v", rec)
		}
	})
	t.Run("backend refuses the gateway's key", func(t *testing.T) {
		h := newHarness(t, func(c *config.Config, _ *emulator.AOAIConfig) { c.Gateway.Backends[0].APIKey = "stale-key" })
		resp, b := h.post(chatPath, body)
		e := parseError(t, b)
		if resp.StatusCode != 502 || !strings.Contains(e.Error.Message, "refused the gateway's credential") ||
			strings.Contains(string(b), "stale-key") {
			t.Fatalf("caller got %d %+v", resp.StatusCode, e)
		}
		if rec := h.only(); rec.Status != 502 || rec.UpstreamStatus != 401 {
			t.Errorf("record status %d upstream %d", rec.Status, rec.UpstreamStatus)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		h := newHarness(t)
		h.upstream.Close()
		resp, b := h.post(chatPath, body)
		if e := parseError(t, b); resp.StatusCode != 502 || !strings.Contains(e.Error.Message, "could not reach backend emu") {
			t.Fatalf("caller got %d %+v", resp.StatusCode, e)
		}
		if rec := h.only(); rec.Status != 502 || rec.UpstreamStatus != 0 || rec.State != record.StateCompleted {
			t.Errorf("record %+v", rec)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		h := newHarness(t, func(c *config.Config, _ *emulator.AOAIConfig) { c.Gateway.Timeout = config.Duration(50e6) })
		h.aoai.Inject(emulator.AOAIFault{Delay: 5e9})
		resp, b := h.post(chatPath, body)
		if e := parseError(t, b); resp.StatusCode != 504 || e.Error.Code != "504" {
			t.Fatalf("caller got %d %+v", resp.StatusCode, e)
		}
		if rec := h.only(); rec.Status != 504 {
			t.Errorf("record %+v", rec)
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestRequestBodyLimit(t *testing.T) {
	h := newHarness(t, func(c *config.Config, _ *emulator.AOAIConfig) { c.Gateway.MaxRequestBytes = 1024 })
	big := `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 2048) + `"}]}`
	resp, body := h.post(chatPath, big)
	if e := parseError(t, body); resp.StatusCode != 413 || !strings.Contains(e.Error.Message, "1024 bytes") {
		t.Fatalf("got %d %+v", resp.StatusCode, e)
	}
	if rec := h.only(); rec.State != record.StateDenied || rec.Status != 413 || rec.RequestBytes != int64(len(big)) {
		t.Errorf("record %+v", rec)
	}
	if len(h.aoai.Requests()) != 0 {
		t.Error("an oversized call reached the backend")
	}
}
