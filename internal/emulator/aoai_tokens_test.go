package emulator

import (
	"encoding/json"
	"strings"
	"testing"
)

// The tokenizer and the chat formula reproduce the usage Azure recorded.
func TestAOAITokenCountsMatchRecordings(t *testing.T) {
	var withUsage struct {
		RequestBody struct {
			Messages []json.RawMessage `json:"messages"`
		}
	}
	if err := json.Unmarshal(readFixture(t, "aoai-chat-stream-include-usage.request-and-headers.json"), &withUsage); err != nil {
		t.Fatal(err)
	}
	var plain struct {
		RequestBody struct {
			Messages []json.RawMessage `json:"messages"`
		}
		ResponseBody struct {
			Choices []struct {
				Message struct{ Content string }
			}
		}
	}
	if err := json.Unmarshal(readFixture(t, "aoai-chat-completion.recorded.json"), &plain); err != nil {
		t.Fatal(err)
	}
	var streamed strings.Builder
	for i, d := range sseData(t, readFixture(t, "aoai-chat-stream-include-usage.recorded.sse.txt")) {
		var ch struct {
			Choices []struct{ Delta struct{ Content string } }
		}
		if d == "[DONE]" || i == 0 {
			continue
		}
		if err := json.Unmarshal([]byte(d), &ch); err != nil {
			t.Fatal(err)
		}
		for _, c := range ch.Choices {
			streamed.WriteString(c.Delta.Content)
		}
	}

	tests := []struct {
		name       string
		model      string
		messages   []json.RawMessage
		completion string
		wantPrompt int
		wantCompl  int
	}{
		// aoai-chat-completion.recorded.json: usage 42 prompt, 29 completion.
		{"gpt-4 non-streamed", "gpt-4", plain.RequestBody.Messages, plain.ResponseBody.Choices[0].Message.Content, 42, 29},
		// aoai-chat-stream-include-usage: usage 22 prompt, 28 completion.
		{"gpt-4o streamed", "gpt-4o-2024-08-06", withUsage.RequestBody.Messages, streamed.String(), 22, 28},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := aoaiEncodingFor(tt.model)
			got, _, err := aoaiChatPrompt(enc.codec, tt.messages)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.wantPrompt {
				t.Errorf("prompt tokens = %d, recorded %d", got, tt.wantPrompt)
			}
			if got := aoaiCount(enc.codec, tt.completion); got != tt.wantCompl {
				t.Errorf("completion tokens of %q = %d, recorded %d", tt.completion, got, tt.wantCompl)
			}
		})
	}
}

// A reply is exactly as long as asked, its tokens are what the tokenizer
// makes of its text, and reasoning tokens fit within the limit.
func TestAOAIReply(t *testing.T) {
	tests := []struct {
		name       string
		model      string
		configured int
		limit      int
		wantLen    int // 0: about 20
		wantFinish string
	}{
		{"default length", "gpt-4o-2024-08-06", 0, 0, 0, "stop"},
		{"cl100k default", "gpt-4", 0, 0, 0, "stop"},
		{"cut to one", "gpt-4", 0, 1, 1, "length"},
		{"cut to five", "gpt-4o-2024-08-06", 0, 5, 5, "length"},
		{"limit above length", "gpt-4", 0, 1024, 0, "stop"},
		{"configured long", "gpt-4.1-nano", 300, 0, 300, "stop"},
		{"configured cut", "gpt-4.1-nano", 300, 100, 100, "length"},
		{"reasoning model", "o1-2024-12-17", 0, 0, 0, "stop"},
		{"reasoning model capped", "o1-2024-12-17", 0, 10, 10, "length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAOAI(AOAIConfig{CompletionTokens: tt.configured}, nil)
			enc := aoaiEncodingFor(tt.model)
			r := a.reply(enc, tt.model, "Say something about "+tt.name, tt.limit)
			if r.Text != strings.Join(r.Tokens, "") {
				t.Errorf("tokens %q do not join to text %q", r.Tokens, r.Text)
			}
			if got := aoaiCount(enc.codec, r.Text); got != r.Visible() {
				t.Errorf("tokenizer counts %d, reply has %d tokens", got, r.Visible())
			}
			if tt.wantLen != 0 && r.Visible() != tt.wantLen {
				t.Errorf("length = %d, want %d", r.Visible(), tt.wantLen)
			}
			if tt.wantLen == 0 && (r.Visible() < 12 || r.Visible() > 28) {
				t.Errorf("default length = %d, want about 20", r.Visible())
			}
			if r.Finish != tt.wantFinish {
				t.Errorf("finish = %q, want %q", r.Finish, tt.wantFinish)
			}
			if aoaiIsReasoning(tt.model) != (r.Reasoning > 0) && tt.limit == 0 {
				t.Errorf("reasoning tokens = %d for %s", r.Reasoning, tt.model)
			}
			if tt.limit > 0 && r.Completion() > tt.limit {
				t.Errorf("completion tokens %d exceed the limit %d", r.Completion(), tt.limit)
			}
			again := a.reply(enc, tt.model, "Say something about "+tt.name, tt.limit)
			if again.Text != r.Text {
				t.Errorf("reply not deterministic: %q then %q", r.Text, again.Text)
			}
		})
	}
}
