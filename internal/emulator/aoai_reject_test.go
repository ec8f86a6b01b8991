package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
)

// headerNames lists the header names of h, canonical and sorted, without
// the hop-by-hop ones the transport owns.
func headerNames(h map[string]string) []string {
	var names []string
	for k := range h {
		k = http.CanonicalHeaderKey(k)
		if k != "Connection" && k != "Transfer-Encoding" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}

func respHeaderNames(h http.Header) []string {
	flat := map[string]string{}
	for k := range h {
		flat[k] = ""
	}
	return headerNames(flat)
}

func jsonValue(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return v
}

// Replaying each recorded rejection gives the recorded status, the recorded
// body byte for byte (its recorded Content-Length) and the recorded headers.
func TestAOAIRecordedRejections(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		header  map[string]string
	}{
		{"401 missing key", "aoai-error-401-bad-key.recorded.json", nil},
		{"401 wrong key", "aoai-error-401-bad-key.recorded.json", map[string]string{"api-key": "not-the-key"}},
		{"401 bearer not accepted", "aoai-error-401-bad-key.recorded.json", map[string]string{"Authorization": "Bearer " + testKey}},
		{"404 deployment not found", "aoai-error-404-deployment-not-found.recorded.json", keyHeader()},
		{"400 content filter", "aoai-error-400-content-filter.recorded.json", keyHeader()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := readRecording(t, tt.fixture)
			a, srv := newTestAOAI(t, func(c *AOAIConfig) {
				c.Deployments = map[string]string{"gpt-4": "gpt-4", "gpt-4o-0806": "gpt-4o-2024-08-06"}
				c.Region = rec.ResponseHeaders["x-ms-region"]
			})
			u, err := url.Parse(strings.Replace(rec.RequestURI, "//openai", "/openai", 1))
			if err != nil {
				t.Fatal(err)
			}
			resp, body := send(t, http.MethodPost, srv.URL+u.EscapedPath()+"?"+u.RawQuery, string(rec.RequestBody), tt.header)

			if resp.StatusCode != rec.StatusCode {
				t.Errorf("status = %d, recorded %d", resp.StatusCode, rec.StatusCode)
			}
			if diff := cmp.Diff(jsonValue(t, rec.ResponseBody), jsonValue(t, body)); diff != "" {
				t.Errorf("body differs from the recording (-recorded +emulated):\n%s", diff)
			}
			if got, want := strconv.Itoa(len(body)), rec.ResponseHeaders["Content-Length"]; got != want {
				t.Errorf("body is %s bytes, recorded %s: %s", got, want, body)
			}
			if diff := cmp.Diff(headerNames(rec.ResponseHeaders), respHeaderNames(resp.Header)); diff != "" {
				t.Errorf("header names differ from the recording (-recorded +emulated):\n%s", diff)
			}
			for k, v := range rec.ResponseHeaders {
				switch http.CanonicalHeaderKey(k) {
				case "Content-Type", "Ms-Azureml-Model-Error-Reason", "Ms-Azureml-Model-Error-Statuscode",
					"Strict-Transport-Security", "X-Content-Type-Options", "X-Ms-Region":
					if got := resp.Header.Get(k); got != v {
						t.Errorf("%s = %q, recorded %q", k, got, v)
					}
				}
			}
			// As recorded for the content filter: with no client request id
			// sent, Azure echoes the apim-request-id.
			if got := resp.Header.Get("x-ms-client-request-id"); got != "" && got != resp.Header.Get("apim-request-id") {
				t.Errorf("x-ms-client-request-id = %q, want the apim-request-id %q", got, resp.Header.Get("apim-request-id"))
			}
			if n := len(a.Requests()); n != 1 || a.Requests()[0].Status != rec.StatusCode {
				t.Errorf("request log = %+v, want one entry with status %d", a.Requests(), rec.StatusCode)
			}
		})
	}
}

// Rejections the fixtures do not record (INFERRED bodies) still answer with
// the right status and an error envelope.
func TestAOAIInferredRejections(t *testing.T) {
	const chat = "/openai/deployments/gpt-4o/chat/completions"
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string // compact JSON; "" checks only the envelope
		wantParam  any
	}{
		{"404 no api-version", http.MethodPost, chat, `{"messages":[{"role":"user","content":"hi"}]}`,
			http.StatusNotFound, aoaiBody404Resource, nil},
		{"404 unknown path", http.MethodPost, "/openai/deployments/gpt-4o/chat/nothing?api-version=2024-10-21", `{}`,
			http.StatusNotFound, aoaiBody404Resource, nil},
		{"405 wrong method", http.MethodGet, chat + "?api-version=2024-10-21", ``, http.StatusMethodNotAllowed, "", nil},
		{"400 malformed JSON", http.MethodPost, chat + "?api-version=2024-10-21", `{"messages": [`,
			http.StatusBadRequest, "", nil},
		{"400 malformed JSON on v1", http.MethodPost, "/openai/v1/chat/completions", `not json`, http.StatusBadRequest, "", nil},
		{"400 missing messages", http.MethodPost, chat + "?api-version=2024-10-21", `{"max_tokens":5}`,
			http.StatusBadRequest, "", "messages"},
		{"400 missing input", http.MethodPost, "/openai/v1/responses", `{"model":"gpt-4o"}`, http.StatusBadRequest, "", "input"},
		{"400 missing model on v1", http.MethodPost, "/openai/v1/embeddings", `{"input":"x"}`, http.StatusBadRequest, "", "model"},
		{"404 unknown model on v1", http.MethodPost, "/openai/v1/embeddings", `{"model":"nope","input":"x"}`,
			http.StatusNotFound, strings.TrimSpace(aoaiBody404Deployment), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestAOAI(t, nil)
			resp, body := send(t, tt.method, srv.URL+tt.path, tt.body, keyHeader())
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantBody != "" {
				if diff := cmp.Diff(tt.wantBody, compact(t, body)); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
				return
			}
			var e struct {
				Error struct {
					Message string `json:"message"`
					Type    string `json:"type"`
					Param   any    `json:"param"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type != "invalid_request_error" {
				t.Errorf("body %s is not an OpenAI-shaped error (%v)", body, err)
			}
			if e.Error.Param != tt.wantParam {
				t.Errorf("param = %v, want %v", e.Error.Param, tt.wantParam)
			}
		})
	}
}

// Injected faults answer with their status, body and retry headers, for as
// many requests as asked and for the deployment asked only.
func TestAOAIInjectedErrors(t *testing.T) {
	const (
		path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
		body = `{"messages":[{"role":"user","content":"hi"}]}`
	)
	tests := []struct {
		name         string
		fault        AOAIFault
		wantStatuses []int
		wantHeader   map[string]string // "" means absent
		wantBody     string
	}{
		{
			name:         "429 with Retry-After and retry-after-ms",
			fault:        AOAIFault{Status: 429, RetryAfter: 2500 * time.Millisecond, RetryAfterMS: true},
			wantStatuses: []int{429, 200},
			wantHeader:   map[string]string{"Retry-After": "3", "retry-after-ms": "2500"},
			// The wording of aoai-error-429.excerpts.txt §3.
			wantBody: `{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 3 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}`,
		},
		{
			name:         "429 twice without retry-after-ms",
			fault:        AOAIFault{Status: 429, RetryAfter: 10 * time.Second, Count: 2},
			wantStatuses: []int{429, 429, 200},
			wantHeader:   map[string]string{"Retry-After": "10", "retry-after-ms": ""},
		},
		{
			name:         "503",
			fault:        AOAIFault{Status: 503, Deployment: "gpt-4o"},
			wantStatuses: []int{503, 200},
			wantHeader:   map[string]string{"Retry-After": "", "apim-request-id": "*"},
			wantBody:     `{"error":{"code":"ServiceUnavailable","message":"The service is temporarily unable to process your request. Please try again later."}}`,
		},
		{
			name:         "500",
			fault:        AOAIFault{Status: 500},
			wantStatuses: []int{500, 200},
			wantBody:     `{"error":{"code":"InternalServerError","message":"The server had an error while processing your request. Sorry about that!"}}`,
		},
		{
			name:         "other deployment untouched",
			fault:        AOAIFault{Status: 503, Deployment: "gpt-4-0613"},
			wantStatuses: []int{200, 200},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, srv := newTestAOAI(t, nil)
			a.Inject(tt.fault)
			for i, want := range tt.wantStatuses {
				resp, got := send(t, http.MethodPost, srv.URL+path, body, keyHeader())
				if resp.StatusCode != want {
					t.Fatalf("request %d: status = %d, want %d: %s", i, resp.StatusCode, want, got)
				}
				if i > 0 || want == 200 {
					continue
				}
				for k, v := range tt.wantHeader {
					switch g := resp.Header.Get(k); {
					case v == "*" && g == "", v != "*" && g != v:
						t.Errorf("%s = %q, want %q", k, g, v)
					}
				}
				if tt.wantBody != "" {
					if diff := cmp.Diff(tt.wantBody, string(got)); diff != "" {
						t.Errorf("body (-want +got):\n%s", diff)
					}
				}
			}
		})
	}
}

// ResetAfterEvents cuts a stream after N events: the client reads them,
// then an abrupt end with no [DONE]. On a plain request it drops the call.
func TestAOAIResetAfterEvents(t *testing.T) {
	a, srv := newTestAOAI(t, nil)
	const path = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"

	a.Inject(AOAIFault{ResetAfterEvents: 3})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path,
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("api-key", testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read error = %v, want an unexpected EOF", err)
	}
	events := sseData(t, body)
	if len(events) != 3 || slices.Contains(events, "[DONE]") {
		t.Errorf("got %d events %q, want 3 and no [DONE]", len(events), events)
	}

	a.Inject(AOAIFault{ResetAfterEvents: 1})
	req, err = http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path,
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("api-key", testKey)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("plain request got status %d, want the connection dropped", resp.StatusCode)
	}

	if resp, _ := send(t, http.MethodPost, srv.URL+path, `{"messages":[{"role":"user","content":"hi"}]}`, keyHeader()); resp.StatusCode != 200 {
		t.Errorf("after the faults: status %d, want 200", resp.StatusCode)
	}
}

// The waits (fault Delay, Latency, token pace) last as configured, and each
// ends as soon as the client leaves, with nothing written. Run in a
// synctest bubble, so the durations are exact and nothing really sleeps.
func TestAOAIWaits(t *testing.T) {
	tests := []struct {
		name       string
		fault      *AOAIFault
		edit       func(*AOAIConfig)
		stream     bool
		wantWait   time.Duration
		wantStatus int
	}{
		{"fault delay", &AOAIFault{Delay: 2 * time.Second}, nil, false, 2 * time.Second, 200},
		{"fault delay before a 503", &AOAIFault{Delay: 3 * time.Second, Status: 503}, nil, false, 3 * time.Second, 503},
		{"latency", nil, func(c *AOAIConfig) { c.Latency = time.Second }, false, time.Second, 200},
		{"latency after fault delay", &AOAIFault{Delay: 2 * time.Second},
			func(c *AOAIConfig) { c.Latency = time.Second }, false, 3 * time.Second, 200},
		{"token pace, plain", nil, func(c *AOAIConfig) { c.TokensPerSecond, c.CompletionTokens = 10, 20 }, false, 2 * time.Second, 200},
		{"token pace, streamed", nil, func(c *AOAIConfig) { c.TokensPerSecond, c.CompletionTokens = 10, 20 }, true, 2 * time.Second, 200},
	}
	for _, tt := range tests {
		serve := func(t *testing.T, ctx context.Context) (*AOAI, *httptest.ResponseRecorder, chan struct{}) {
			cfg := AOAIConfig{Deployments: testDeployments, APIKeys: []string{testKey}}
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			a := NewAOAI(cfg, nil)
			if tt.fault != nil {
				a.Inject(*tt.fault)
			}
			body := fmt.Sprintf(`{"messages":[{"role":"user","content":"hi"}],"stream":%t}`, tt.stream)
			req := httptest.NewRequestWithContext(ctx, http.MethodPost,
				"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", strings.NewReader(body))
			req.Header.Set("api-key", testKey)
			rec := httptest.NewRecorder()
			done := make(chan struct{})
			go func() {
				defer close(done)
				a.ServeHTTP(rec, req)
			}()
			return a, rec, done
		}
		t.Run(tt.name+"/served", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				_, rec, done := serve(t, t.Context())
				<-done
				if rec.Code != tt.wantStatus {
					t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
				}
				if got := time.Since(start); got != tt.wantWait {
					t.Errorf("answered after %v, want %v", got, tt.wantWait)
				}
			})
		})
		t.Run(tt.name+"/client left", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				ctx, cancel := context.WithCancel(t.Context())
				a, rec, done := serve(t, ctx)
				synctest.Wait() // the handler is blocked in its wait
				select {
				case <-done:
					t.Fatal("handler returned before the client left")
				default:
				}
				cancel()
				<-done
				if got := time.Since(start); got != 0 {
					t.Errorf("handler returned after %v, want at once", got)
				}
				if !tt.stream && (rec.Body.Len() != 0 || a.Requests()[0].Status != 0) {
					t.Errorf("wrote status %d body %q, want nothing", a.Requests()[0].Status, rec.Body)
				}
			})
		})
	}
}

// The official path of a client giving up: its context cancels an injected
// Delay over a real connection, and the handler returns (srv.Close waits
// for it).
func TestAOAIDelayCancelledByClient(t *testing.T) {
	a, srv := newTestAOAI(t, nil)
	a.Inject(AOAIFault{Delay: time.Hour})
	client := openai.NewClient(
		azure.WithEndpoint(srv.URL, "2024-10-21"),
		azure.WithAPIKey(testKey),
		azure.WithUnsafeAllowHTTP(),
		option.WithMaxRetries(0),
	)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		done <- err
	}()
	for len(a.Requests()) == 0 { // the request has arrived; the Delay holds it
		if err := aoaiSleep(t.Context(), time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
	srv.Close() // returns only once the handler has
	if got := a.Requests()[0].Status; got != 0 {
		t.Errorf("logged status = %d, want 0 (no response written)", got)
	}
}
