package emulator

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Replaying the recorded streaming requests gives events of the recorded
// shapes, key for key and in the same order.
func TestAOAIStreamShapeMatchesRecording(t *testing.T) {
	var recorded struct {
		RequestBody json.RawMessage
	}
	if err := json.Unmarshal(readFixture(t, "aoai-chat-stream-include-usage.request-and-headers.json"), &recorded); err != nil {
		t.Fatal(err)
	}
	var plain struct {
		RequestBody struct{ Messages json.RawMessage }
	}
	if err := json.Unmarshal(readFixture(t, "aoai-chat-completion.recorded.json"), &plain); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		body    string
		fixture string
		usage   bool
	}{
		{
			// The gpt-4 stream recording; its request was the non-streamed one's, streamed.
			name:    "gpt-4 without include_usage",
			path:    "/openai/deployments/gpt-4-0613/chat/completions?api-version=2025-01-01-preview",
			body:    `{"messages":` + string(plain.RequestBody.Messages) + `,"stream":true,"max_tokens":1024}`,
			fixture: "aoai-chat-stream.recorded.sse.txt",
		},
		{
			name:    "gpt-4o with include_usage and logprobs",
			path:    "/openai/deployments/gpt-4o-0806/chat/completions?api-version=2024-10-21",
			body:    string(recorded.RequestBody),
			fixture: "aoai-chat-stream-include-usage.recorded.sse.txt",
			usage:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestAOAI(t, nil)
			resp, body := send(t, http.MethodPost, srv.URL+tt.path, tt.body, keyHeader())
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got, want := resp.Header.Get("Content-Type"), "text/event-stream; charset=utf-8"; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			got, want := sseData(t, body), sseData(t, readFixture(t, tt.fixture))
			tail := 2 // finish, [DONE]
			if tt.usage {
				tail = 3
			}
			shape := func(events []string, i int) string {
				if events[i] == "[DONE]" {
					return "[DONE]"
				}
				return skeleton(t, events[i])
			}
			for _, part := range []struct {
				name string
				got  int
				want int
			}{
				{"prompt filter chunk", 0, 0},
				{"role chunk", 1, 1},
				{"finish chunk", len(got) - tail, len(want) - tail},
				{"last event", len(got) - 1, len(want) - 1},
			} {
				if diff := cmp.Diff(shape(want, part.want), shape(got, part.got)); diff != "" {
					t.Errorf("%s differs from the recording (-recorded +emulated):\n%s", part.name, diff)
				}
			}
			if tt.usage {
				if diff := cmp.Diff(shape(want, len(want)-2), shape(got, len(got)-2)); diff != "" {
					t.Errorf("usage chunk differs from the recording (-recorded +emulated):\n%s", diff)
				}
			}
			for i := 2; i < len(got)-tail; i++ {
				if diff := cmp.Diff(shape(want, 2), shape(got, i)); diff != "" {
					t.Fatalf("content chunk %d differs from the recording (-recorded +emulated):\n%s", i, diff)
				}
			}
		})
	}
}

// The usage chunk is sent exactly when include_usage is asked for and the
// api-version supports it; "usage":null rides on every other chunk but the
// prompt-filter one.
func TestAOAIStreamIncludeUsage(t *testing.T) {
	const msgs = `"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Name a colour."}]`
	tests := []struct {
		name         string
		path         string
		header       map[string]string
		body         string
		wantUsage    bool
		promptFilter bool
	}{
		{"classic without include_usage", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", keyHeader(),
			`{` + msgs + `,"stream":true}`, false, true},
		{"classic with include_usage", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", keyHeader(),
			`{` + msgs + `,"stream":true,"stream_options":{"include_usage":true}}`, true, true},
		{"first supporting preview", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-09-01-preview", keyHeader(),
			`{` + msgs + `,"stream":true,"stream_options":{"include_usage":true}}`, true, true},
		{"2024-06-01 ignores include_usage", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01", keyHeader(),
			`{` + msgs + `,"stream":true,"stream_options":{"include_usage":true}}`, false, true},
		{"v1 path", "/openai/v1/chat/completions", keyHeader(),
			`{"model":"gpt-4o",` + msgs + `,"stream":true,"stream_options":{"include_usage":true}}`, true, true},
		{"OpenAI-style path", "/v1/chat/completions", map[string]string{"Authorization": "Bearer " + testKey},
			`{"model":"gpt-4o",` + msgs + `,"stream":true,"stream_options":{"include_usage":true}}`, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newTestAOAI(t, nil)
			resp, body := send(t, http.MethodPost, srv.URL+tt.path, tt.body, tt.header)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			events := sseData(t, body)
			if events[len(events)-1] != "[DONE]" {
				t.Fatalf("last event = %q, want [DONE]", events[len(events)-1])
			}
			events = events[:len(events)-1]
			if tt.promptFilter {
				first := events[0]
				for _, want := range []string{`{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[`} {
					if !strings.HasPrefix(first, want) {
						t.Errorf("first event = %s, want the prompt-filter chunk %s...", first, want)
					}
				}
				if strings.Contains(first, `"usage"`) {
					t.Errorf("prompt-filter chunk carries usage: %s", first)
				}
				events = events[1:]
			} else if strings.Contains(string(body), "prompt_filter_results") || strings.Contains(string(body), "content_filter_results") {
				t.Errorf("OpenAI-style stream carries Azure filter results")
			}
			if !tt.wantUsage {
				if strings.Contains(string(body), `"usage"`) {
					t.Errorf("stream has a usage key although none was due:\n%s", body)
				}
				return
			}
			last := events[len(events)-1]
			if !strings.HasPrefix(last, `{"choices":[],`) || !strings.Contains(last, `"usage":{"completion_tokens":`) {
				t.Errorf("event before [DONE] = %s, want the usage chunk", last)
			}
			var text strings.Builder
			for i, ev := range events[:len(events)-1] {
				if !strings.HasSuffix(ev, `,"usage":null}`) {
					t.Errorf("chunk %d lacks \"usage\":null: %s", i, ev)
				}
				var ch struct {
					Choices []struct{ Delta struct{ Content string } }
				}
				if err := json.Unmarshal([]byte(ev), &ch); err != nil {
					t.Fatal(err)
				}
				text.WriteString(ch.Choices[0].Delta.Content)
			}
			if n := strings.Count(string(body), `"usage":{`); n != 1 {
				t.Errorf("%d usage objects, want 1", n)
			}
			var u struct {
				Usage struct {
					CompletionTokens int `json:"completion_tokens"`
					PromptTokens     int `json:"prompt_tokens"`
					TotalTokens      int `json:"total_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal([]byte(last), &u); err != nil {
				t.Fatal(err)
			}
			enc := aoaiEncodingFor("gpt-4o-2024-08-06")
			if got := aoaiCount(enc.codec, text.String()); got != u.Usage.CompletionTokens {
				t.Errorf("completion_tokens = %d, tokenizer counts %d in %q", u.Usage.CompletionTokens, got, text.String())
			}
			if u.Usage.PromptTokens+u.Usage.CompletionTokens != u.Usage.TotalTokens {
				t.Errorf("usage does not add up: %+v", u.Usage)
			}
		})
	}
}

// Each event is flushed as it is written: the first events arrive while the
// stand-in still waits to pace the first token.
func TestAOAIStreamFlushesEachEvent(t *testing.T) {
	_, srv := newTestAOAI(t, func(c *AOAIConfig) { c.TokensPerSecond = 1e-6 }) // one token a week
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		srv.URL+"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("api-key", testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	for _, want := range []string{`data: {"choices":[],"created":0`, ``, `data: {"choices":[{"content_filter_results":{},"delta":{"content":"","role":"assistant"}`} {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if !strings.HasPrefix(line, want) {
			t.Fatalf("line = %q, want prefix %q", line, want)
		}
	}
	cancel() // the pacing wait ends with the request; srv.Close in cleanup would hang otherwise
}
