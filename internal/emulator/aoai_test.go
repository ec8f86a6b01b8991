package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Requests logs every request in order, the rejected ones included, with
// the client's request id and the credential kind presented.
func TestAOAIRequestsLog(t *testing.T) {
	a, srv := newTestAOAI(t, nil)
	a.Inject(AOAIFault{Status: 429, Deployment: "gpt-4-0613"})
	const chat = `{"messages":[{"role":"user","content":"hi"}]}`
	steps := []struct {
		method, path, body string
		header             map[string]string
	}{
		{"POST", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", chat,
			map[string]string{"api-key": testKey, "x-ms-client-request-id": "c-1"}},
		{"POST", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", chat,
			map[string]string{"api-key": "wrong", "x-ms-client-request-id": "c-2"}},
		{"POST", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", chat, nil},
		{"POST", "/openai/deployments/nope/chat/completions?api-version=2024-10-21", chat, keyHeader()},
		{"POST", "/openai/deployments/gpt-4o/chat/completions", chat, keyHeader()},
		{"POST", "/openai/deployments/gpt-4-0613/chat/completions?api-version=2024-10-21", chat, keyHeader()},
		{"POST", "/openai/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			map[string]string{"Authorization": "Bearer " + testKey, "x-ms-client-request-id": "c-7"}},
		{"POST", "/openai/v1/chat/completions", `{"model":`, keyHeader()},
		{"GET", "/v1/models", "", map[string]string{"Authorization": "Bearer " + testKey}},
		{"GET", "/somewhere/else", "", nil},
	}
	ids := map[string]bool{}
	for _, s := range steps {
		resp, _ := send(t, s.method, srv.URL+s.path, s.body, s.header)
		for _, h := range []string{"apim-request-id", "x-request-id"} {
			if v := resp.Header.Get(h); v != "" {
				if ids[v] {
					t.Errorf("%s %s reused", h, v)
				}
				ids[v] = true
			}
		}
	}
	const chatPath = "/openai/deployments/gpt-4o/chat/completions"
	want := []AOAIRequest{
		{Method: "POST", Path: chatPath, APIVersion: "2024-10-21", Deployment: "gpt-4o", ClientRequestID: "c-1", Auth: "api-key", Status: 200},
		{Method: "POST", Path: chatPath, APIVersion: "2024-10-21", Deployment: "gpt-4o", ClientRequestID: "c-2", Auth: "api-key", Status: 401},
		{Method: "POST", Path: chatPath, APIVersion: "2024-10-21", Deployment: "gpt-4o", Status: 401},
		{Method: "POST", Path: "/openai/deployments/nope/chat/completions", APIVersion: "2024-10-21", Deployment: "nope", Auth: "api-key", Status: 404},
		{Method: "POST", Path: chatPath, Deployment: "gpt-4o", Auth: "api-key", Status: 404},
		{Method: "POST", Path: "/openai/deployments/gpt-4-0613/chat/completions", APIVersion: "2024-10-21", Deployment: "gpt-4-0613", Auth: "api-key", Status: 429},
		{Method: "POST", Path: "/openai/v1/chat/completions", Deployment: "gpt-4o", ClientRequestID: "c-7", Auth: "bearer", Status: 200, Stream: true},
		{Method: "POST", Path: "/openai/v1/chat/completions", Auth: "api-key", Status: 400},
		{Method: "GET", Path: "/v1/models", Auth: "bearer", Status: 200},
		{Method: "GET", Path: "/somewhere/else", Status: 404},
	}
	got := a.Requests()
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(AOAIRequest{}, "Time")); diff != "" {
		t.Errorf("request log (-want +got):\n%s", diff)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) || got[i].Time.IsZero() {
			t.Errorf("entry %d at %v, after %v", i, got[i].Time, got[i-1].Time)
		}
	}
}

// Successful answers replayed from the recordings carry the recorded
// header names and the recorded body shape.
func TestAOAISuccessMatchesRecordings(t *testing.T) {
	tests := []struct {
		name     string
		fixture  string
		sameBody bool // the body is reproduced exactly, not only its shape
	}{
		{"chat", "aoai-chat-completion.recorded.json", false},
		{"embeddings", "aoai-embeddings.recorded.json", true},
		{"stream", "aoai-chat-stream-include-usage.request-and-headers.json", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestAOAI(t, nil)
			rec := readRecording(t, tt.fixture)
			u, err := url.Parse(rec.RequestURI)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := send(t, http.MethodPost, srv.URL+u.EscapedPath()+"?"+u.RawQuery, string(rec.RequestBody),
				map[string]string{"api-key": testKey, "x-ms-client-request-id": "recorded"})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if diff := cmp.Diff(headerNames(rec.ResponseHeaders), respHeaderNames(resp.Header)); diff != "" {
				t.Errorf("header names differ from the recording (-recorded +emulated):\n%s", diff)
			}
			if got := resp.Header.Get("x-ms-client-request-id"); got != "recorded" {
				t.Errorf("x-ms-client-request-id = %q, want it echoed", got)
			}
			switch {
			case tt.sameBody:
				if diff := cmp.Diff(jsonValue(t, rec.ResponseBody), jsonValue(t, body)); diff != "" {
					t.Errorf("body (-recorded +emulated):\n%s", diff)
				}
				if got, want := strconv.Itoa(len(body)), rec.ResponseHeaders["Content-Length"]; got != want {
					t.Errorf("body is %s bytes, recorded %s", got, want)
				}
			case rec.ResponseBody != nil:
				if diff := cmp.Diff(skeleton(t, string(rec.ResponseBody)), skeleton(t, string(body))); diff != "" {
					t.Errorf("body shape (-recorded +emulated):\n%s", diff)
				}
				var r struct{ Model string }
				_ = json.Unmarshal(body, &r)
				if r.Model != testDeployments[strings.Split(u.Path, "/")[3]] {
					t.Errorf("model = %q, want the underlying model", r.Model)
				}
			}
		})
	}
}

// Usage details: reasoning tokens for o-series models, cached tokens for a
// long prompt sent again, neither for gpt-4o on a first call (as recorded).
func TestAOAIUsageDetails(t *testing.T) {
	_, srv := newTestAOAI(t, nil)
	long := strings.Repeat("audit every call. ", 400) // well over 1024 tokens
	type usage struct {
		CompletionTokens        int `json:"completion_tokens"`
		PromptTokens            int `json:"prompt_tokens"`
		CompletionTokensDetails *struct {
			ReasoningTokens int `json:"reasoning_tokens"`
		} `json:"completion_tokens_details"`
		PromptTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	}
	call := func(deployment, content string) (usage, string) {
		body, _ := json.Marshal(map[string]any{"messages": []map[string]string{{"role": "user", "content": content}}})
		resp, b := send(t, http.MethodPost, srv.URL+"/openai/deployments/"+deployment+"/chat/completions?api-version=2024-12-01-preview", string(body), keyHeader())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		var r struct {
			Usage   usage
			Choices []struct{ Message struct{ Content string } }
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return r.Usage, r.Choices[0].Message.Content
	}

	u, text := call("o1", "Think first.")
	if u.CompletionTokensDetails == nil || u.CompletionTokensDetails.ReasoningTokens == 0 ||
		u.CompletionTokens != tokens(t, "o200k", text)+u.CompletionTokensDetails.ReasoningTokens {
		t.Errorf("o1 usage %+v for %q: want reasoning tokens counted in completion tokens", u, text)
	}
	if u, _ := call("gpt-4o", "Hello."); u.CompletionTokensDetails != nil || u.PromptTokensDetails != nil {
		t.Errorf("gpt-4o usage has details: %+v", u)
	}
	first, _ := call("gpt-4o", long)
	second, _ := call("gpt-4o", long)
	if first.PromptTokensDetails != nil {
		t.Errorf("first long call cached %+v", first.PromptTokensDetails)
	}
	want := 1024 + (second.PromptTokens-1024)/128*128
	if second.PromptTokensDetails == nil || second.PromptTokensDetails.CachedTokens != want {
		t.Errorf("second long call details %+v, want %d cached", second.PromptTokensDetails, want)
	}
}

// The other endpoints answer in their documented shapes on every path family.
func TestAOAIEndpoints(t *testing.T) {
	var upload bytes.Buffer
	mw := multipart.NewWriter(&upload)
	fw, _ := mw.CreateFormFile("file", "call.mp3")
	_, _ = fw.Write([]byte("ID3 not really audio"))
	_ = mw.WriteField("model", "whisper")
	_ = mw.Close()

	bearer := map[string]string{"Authorization": "Bearer " + testKey}
	tests := []struct {
		name        string
		method      string
		path        string
		body        string
		header      map[string]string
		contentType string // of the request, when not JSON
		wantType    string
		check       func(t *testing.T, h http.Header, body []byte)
	}{
		{"legacy completions", "POST", "/openai/deployments/gpt-4-0613/completions?api-version=2024-10-21",
			`{"prompt":"Say hi","max_tokens":4}`, keyHeader(), "", "application/json", func(t *testing.T, _ http.Header, b []byte) {
				var r struct {
					Object  string
					Choices []struct {
						Text         string `json:"text"`
						FinishReason string `json:"finish_reason"`
					}
					Usage struct {
						CompletionTokens int `json:"completion_tokens"`
					}
				}
				_ = json.Unmarshal(b, &r)
				if r.Object != "text_completion" || r.Choices[0].FinishReason != "length" || r.Usage.CompletionTokens != 4 ||
					tokens(t, "cl100k", r.Choices[0].Text) != 4 {
					t.Errorf("completion %s", b)
				}
			}},
		{"legacy completions streamed", "POST", "/v1/completions", `{"model":"gpt-4-0613","prompt":"Say hi","stream":true}`,
			bearer, "", "text/event-stream", func(t *testing.T, _ http.Header, b []byte) {
				if ev := sseData(t, b); ev[len(ev)-1] != "[DONE]" || !strings.Contains(ev[0], `"object":"text_completion"`) {
					t.Errorf("stream %s", b)
				}
			}},
		{"v1 embeddings name the deployment", "POST", "/openai/v1/embeddings", `{"model":"text-embedding-3-small","input":"hi"}`,
			keyHeader(), "", "application/json", func(t *testing.T, h http.Header, b []byte) {
				if h.Get("x-ms-deployment-name") != "text-embedding-3-small" {
					t.Errorf("x-ms-deployment-name = %q", h.Get("x-ms-deployment-name"))
				}
			}},
		{"OpenAI-style embeddings", "POST", "/v1/embeddings", `{"model":"text-embedding-3-small","input":[[1,2,3]]}`,
			bearer, "", "application/json", func(t *testing.T, h http.Header, b []byte) {
				if h.Get("apim-request-id") != "" || !strings.Contains(compact(t, b), `"prompt_tokens":3`) {
					t.Errorf("headers %v body %s", h, b)
				}
			}},
		{"OpenAI-style responses", "POST", "/v1/responses", `{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}]}`,
			bearer, "", "application/json", func(t *testing.T, _ http.Header, b []byte) {
				if !strings.Contains(string(b), `"object":"response"`) {
					t.Errorf("response %s", b)
				}
			}},
		{"images", "POST", "/openai/deployments/dall-e-3/images/generations?api-version=2024-10-21", `{"prompt":"a ledger","n":1}`,
			keyHeader(), "", "application/json", func(t *testing.T, _ http.Header, b []byte) {
				var r struct {
					Data []struct {
						B64JSON []byte `json:"b64_json"`
					}
				}
				if err := json.Unmarshal(b, &r); err != nil || !bytes.HasPrefix(r.Data[0].B64JSON, []byte("\x89PNG")) {
					t.Errorf("image %s (%v)", b, err)
				}
			}},
		{"speech", "POST", "/openai/deployments/tts/audio/speech?api-version=2024-10-21", `{"input":"hello there","voice":"alloy"}`,
			keyHeader(), "", "audio/mpeg", func(t *testing.T, _ http.Header, b []byte) {
				if !bytes.HasPrefix(b, []byte("ID3")) {
					t.Errorf("audio starts %q", b[:8])
				}
			}},
		{"transcription", "POST", "/openai/deployments/whisper/audio/transcriptions?api-version=2024-10-21", upload.String(),
			keyHeader(), mw.FormDataContentType(), "application/json", func(t *testing.T, _ http.Header, b []byte) {
				var r struct{ Text string }
				if err := json.Unmarshal(b, &r); err != nil || !strings.Contains(r.Text, "call.mp3") {
					t.Errorf("transcription %s", b)
				}
			}},
		{"transcription on v1", "POST", "/openai/v1/audio/transcriptions", upload.String(),
			keyHeader(), mw.FormDataContentType(), "application/json", nil},
		{"v1 models", "GET", "/openai/v1/models", "", keyHeader(), "", "application/json", func(t *testing.T, _ http.Header, b []byte) {
			var r struct{ Data []struct{ ID string } }
			_ = json.Unmarshal(b, &r)
			if len(r.Data) != len(testDeployments) || r.Data[0].ID != "dall-e-3" {
				t.Errorf("models %s", b)
			}
		}},
		{"classic models", "GET", "/openai/models?api-version=2024-10-21", "", keyHeader(), "", "application/json", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestAOAI(t, nil)
			header := map[string]string{}
			for k, v := range tt.header {
				header[k] = v
			}
			if tt.contentType != "" {
				header["Content-Type"] = tt.contentType
			}
			resp, body := send(t, tt.method, srv.URL+tt.path, tt.body, header)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantType)
			}
			if tt.check != nil {
				tt.check(t, resp.Header, body)
			}
		})
	}
}

func TestListenAOAI(t *testing.T) {
	cfg := AOAIConfig{Deployments: testDeployments, APIKeys: []string{testKey}}
	for _, addr := range []string{"0.0.0.0:0", "example.com:80", "[::]:0"} {
		if _, _, err := ListenAOAI(t.Context(), addr, cfg, nil); err == nil {
			t.Errorf("ListenAOAI(%q) served a non-loopback address", addr)
		}
	}

	url, stop, err := ListenAOAI(t.Context(), "", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("url = %q", url)
	}
	if resp, body := send(t, "GET", url+"/openai/v1/models", "", keyHeader()); resp.StatusCode != http.StatusOK {
		t.Errorf("status %d: %s", resp.StatusCode, body)
	}
	stop()
	stop() // idempotent
	if _, err := http.Get(url + "/openai/v1/models"); err == nil {
		t.Errorf("still serving after stop")
	}

	ctx, cancel := context.WithCancel(t.Context())
	url, stop, err = ListenAOAI(ctx, "127.0.0.1:0", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	cancel()
	stop() // waits for the shutdown the cancel started
	if _, err := http.Get(url + "/openai/v1/models"); err == nil {
		t.Errorf("still serving after the context ended")
	}
}
