package usage

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"

	"github.com/tapline/tapline/internal/record"
)

// TestFixtures reads every Azure OpenAI fixture in testdata, JSON bodies
// with ParseJSON and SSE bodies with a Stream, and checks every fact.
func TestFixtures(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		op     string
		stream bool
		want   Result
	}{
		{
			name: "chat completion",
			file: fixtureChat,
			op:   record.OpChatCompletions,
			want: Result{
				Usage:         &record.Usage{PromptTokens: 42, CompletionTokens: 29, TotalTokens: 71, Source: record.UsageReported},
				Model:         "gpt-4",
				ResponseID:    "Sanitized",
				FinishReasons: []string{"stop"},
				ContentFilter: &record.ContentFilter{},
				Text:          "1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
				TextBytes:     30,
			},
		},
		{
			name: "embeddings",
			file: fixtureEmbeddings,
			op:   record.OpEmbeddings,
			want: Result{
				Usage: &record.Usage{PromptTokens: 1, TotalTokens: 1, Source: record.UsageReported},
				Model: "text-embedding-3-small",
			},
		},
		{
			name: "responses API",
			file: fixtureResponses,
			op:   record.OpResponses,
			want: Result{
				Usage:         &record.Usage{PromptTokens: 12, CompletionTokens: 19, TotalTokens: 31, Source: record.UsageReported},
				Model:         "gpt-4.1-nano",
				ResponseID:    "resp_682f7eb5dc408190b491cbbe57be2fbf0f98d661c3dc276d",
				FinishReasons: []string{"completed"},
				Text:          "Hello! It looks like you've sent a test message. How can I assist you today?",
				TextBytes:     76,
			},
		},
		{
			name: "400 content filter",
			file: fixture400,
			op:   record.OpChatCompletions,
			want: Result{
				ContentFilter: &record.ContentFilter{Filtered: true, Categories: []string{"violence"}},
				Error: &record.Error{
					Code:    "content_filter",
					Message: "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
				},
			},
		},
		{
			name: "401 bad key",
			file: fixture401,
			op:   record.OpChatCompletions,
			want: Result{Error: &record.Error{
				Code:    "401",
				Message: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
			}},
		},
		{
			name: "404 deployment not found",
			file: fixture404,
			op:   record.OpChatCompletions,
			want: Result{Error: &record.Error{
				Code:    "DeploymentNotFound",
				Message: "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
			}},
		},
		{
			name:   "stream with include_usage",
			file:   fixtureStreamUsage,
			op:     record.OpChatCompletions,
			stream: true,
			want: Result{
				Usage:         &record.Usage{PromptTokens: 22, CompletionTokens: 28, TotalTokens: 50, Source: record.UsageReported},
				Model:         "gpt-4o-2024-08-06",
				ResponseID:    "chatcmpl-Aau7xzmYfJIyXvEuPJF4LUW9PUfOW",
				FinishReasons: []string{"stop"},
				ContentFilter: &record.ContentFilter{},
				Text:          "Ah, greetings. How can I assist you today, or do I need to remind you how much better things were back in the day?",
				TextBytes:     114,
			},
		},
		{
			name:   "stream without include_usage",
			file:   fixtureStream,
			op:     record.OpChatCompletions,
			stream: true,
			want: Result{
				Model:         "gpt-4",
				ResponseID:    "chatcmpl-AxJxCGsfC5NsEFZlXuv033ekCrPq5",
				FinishReasons: []string{"stop"},
				ContentFilter: &record.ContentFilter{},
				Text:          "1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
				TextBytes:     30,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.stream {
				body := readFixture(t, tt.file)
				if gjson.GetBytes(body, "ResponseBody").Exists() {
					body = recorded(t, tt.file, "ResponseBody")
				}
				got := ParseJSON(tt.op, body, 1<<20)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("ParseJSON (-want +got):\n%s", diff)
				}
				return
			}
			data := readFixture(t, tt.file)
			out, s := readStream(t, tt.op, data, StreamOptions{MaxText: 1 << 20}, nil, 32<<10)
			if !bytes.Equal(out, data) {
				t.Error("the stream's output differs from its input")
			}
			if diff := cmp.Diff(tt.want, s.Result()); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
			if want := strings.Count(string(data), "data: "); s.Events() != want {
				t.Errorf("Events = %d, want %d", s.Events(), want)
			}
			if !s.Done() {
				t.Error("Done = false after data: [DONE]")
			}
			if !s.FirstToken().Equal(epoch) {
				t.Errorf("FirstToken = %v, want %v", s.FirstToken(), epoch)
			}
			// The assembled text is every delta.content in order.
			var text strings.Builder
			for _, ev := range events(string(data)) {
				text.WriteString(gjson.Get(strings.TrimPrefix(ev, "data: "), "choices.0.delta.content").Str)
			}
			if got := s.Result().Text; got != text.String() {
				t.Errorf("Text = %q, want the deltas %q", got, text.String())
			}
		})
	}
}
