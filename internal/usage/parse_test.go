package usage

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tapline/tapline/internal/record"
)

// TestParseJSON checks response shapes beyond the fixtures, written from
// the contracts in azure-contracts.md §7.
func TestParseJSON(t *testing.T) {
	tests := []struct {
		name    string
		op      string
		body    string
		maxText int
		want    Result
	}{
		{
			name: "429 with a string code",
			op:   record.OpChatCompletions,
			// azure-contracts.md §7.5, aoai-error-429.excerpts.txt #5 as JSON.
			body: `{"error":{"code":"429","message":"Rate limit is exceeded. Try again in 50 seconds."}}`,
			want: Result{Error: &record.Error{Code: "429", Message: "Rate limit is exceeded. Try again in 50 seconds."}},
		},
		{
			name: "numeric code",
			op:   record.OpChatCompletions,
			body: `{"error":{"code":429,"message":"slow down"}}`,
			want: Result{Error: &record.Error{Code: "429", Message: "slow down"}},
		},
		{
			name: "null code falls back to the type",
			op:   record.OpChatCompletions,
			body: `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}`,
			want: Result{Error: &record.Error{Code: "invalid_request_error", Message: "bad"}},
		},
		{
			name: "chat with usage details",
			op:   record.OpChatCompletions,
			body: `{"id":"chatcmpl-1","model":"o1-2024-12-17","choices":[{"finish_reason":"stop","index":0,"message":{"content":"ok","role":"assistant"}}],
				"usage":{"completion_tokens":2922,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":320,"rejected_prediction_tokens":0},
				"prompt_tokens":100,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":64},"total_tokens":3022}}`,
			maxText: 10,
			want: Result{
				Usage:         &record.Usage{PromptTokens: 100, CompletionTokens: 2922, TotalTokens: 3022, CachedTokens: 64, ReasoningTokens: 320, Source: record.UsageReported},
				Model:         "o1-2024-12-17",
				ResponseID:    "chatcmpl-1",
				FinishReasons: []string{"stop"},
				Text:          "ok",
				TextBytes:     2,
			},
		},
		{
			name: "usage without total",
			op:   record.OpChatCompletions,
			body: `{"usage":{"prompt_tokens":3,"completion_tokens":4}}`,
			want: Result{Usage: &record.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7, Source: record.UsageReported}},
		},
		{
			name: "usage null",
			op:   record.OpChatCompletions,
			body: `{"usage":null}`,
			want: Result{},
		},
		{
			name:    "completions text",
			op:      record.OpCompletions,
			body:    `{"id":"cmpl-1","model":"gpt-35-turbo-instruct","choices":[{"text":"Hello","index":0,"finish_reason":"length","logprobs":null}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`,
			maxText: 10,
			want: Result{
				Usage:         &record.Usage{PromptTokens: 5, CompletionTokens: 1, TotalTokens: 6, Source: record.UsageReported},
				Model:         "gpt-35-turbo-instruct",
				ResponseID:    "cmpl-1",
				FinishReasons: []string{"length"},
				Text:          "Hello",
				TextBytes:     5,
			},
		},
		{
			name:    "refusal",
			op:      record.OpChatCompletions,
			body:    `{"choices":[{"finish_reason":"stop","index":0,"message":{"content":null,"refusal":"I can't help with that.","role":"assistant"}}]}`,
			maxText: 100,
			want:    Result{FinishReasons: []string{"stop"}, Text: "I can't help with that.", TextBytes: 23},
		},
		{
			name:    "tool calls have no text",
			op:      record.OpChatCompletions,
			body:    `{"choices":[{"finish_reason":"tool_calls","index":0,"message":{"content":null,"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}}]}`,
			maxText: 100,
			want:    Result{FinishReasons: []string{"tool_calls"}},
		},
		{
			name:    "several choices: reasons in choice order, text of choice 0",
			op:      record.OpChatCompletions,
			body:    `{"choices":[{"finish_reason":"length","index":1,"message":{"content":"B"}},{"finish_reason":"stop","index":0,"message":{"content":"A"}},{"finish_reason":null,"index":2,"message":{"content":"C"}}]}`,
			maxText: 100,
			want:    Result{FinishReasons: []string{"stop", "length"}, Text: "A", TextBytes: 1},
		},
		{
			name: "detected but not filtered, old prompt_annotations",
			op:   record.OpChatCompletions,
			body: `{"prompt_annotations":[{"prompt_index":0,"content_filter_results":{"jailbreak":{"filtered":false,"detected":true},"hate":{"filtered":false,"severity":"low"}}}],
				"choices":[{"index":0,"finish_reason":"stop","message":{"content":"x"},"content_filter_results":{"protected_material_text":{"filtered":false,"detected":true},"custom_blocklists":{"filtered":false,"details":[]}}}]}`,
			want: Result{
				FinishReasons: []string{"stop"},
				ContentFilter: &record.ContentFilter{Categories: []string{"jailbreak", "protected_material_text"}},
				TextBytes:     1,
			},
		},
		{
			name:    "text cut on a UTF-8 boundary",
			op:      record.OpChatCompletions,
			body:    `{"choices":[{"index":0,"message":{"content":"a€b"}}]}`,
			maxText: 3,
			want:    Result{Text: "a", TextBytes: 5},
		},
		{
			name: "responses incomplete",
			op:   record.OpResponses,
			body: `{"id":"resp_1","object":"response","model":"o4-mini","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[{"type":"reasoning","summary":[]}],
				"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":0},"output_tokens":16,"output_tokens_details":{"reasoning_tokens":16},"total_tokens":26}}`,
			want: Result{
				Usage:         &record.Usage{PromptTokens: 10, CompletionTokens: 16, TotalTokens: 26, ReasoningTokens: 16, Source: record.UsageReported},
				Model:         "o4-mini",
				ResponseID:    "resp_1",
				FinishReasons: []string{"max_output_tokens"},
			},
		},
		{
			name: "responses failed",
			op:   record.OpResponses,
			body: `{"id":"resp_2","object":"response","status":"failed","error":{"code":"server_error","message":"oops"},"output":[]}`,
			want: Result{ResponseID: "resp_2", FinishReasons: []string{"failed"}, Error: &record.Error{Code: "server_error", Message: "oops"}},
		},
		{
			name: "responses error envelope",
			op:   record.OpResponses,
			body: `{"error":{"code":"DeploymentNotFound","message":"no"}}`,
			want: Result{Error: &record.Error{Code: "DeploymentNotFound", Message: "no"}},
		},
		{name: "not JSON", op: record.OpChatCompletions, body: `<html>502 Bad Gateway</html>`, want: Result{}},
		{name: "empty", op: record.OpChatCompletions, body: ``, want: Result{}},
		{name: "array", op: record.OpChatCompletions, body: `[{"usage":{"prompt_tokens":1}}]`, want: Result{}},
		{name: "truncated", op: record.OpChatCompletions, body: `{"model":"gpt-4","usage":{"prompt_tok`, want: Result{Model: "gpt-4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseJSON(tt.op, []byte(tt.body), tt.maxText)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseJSON (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseJSONDoesNotAlias checks that a Result stays as it was when the
// body it came from is overwritten (the gateway reuses buffers).
func TestParseJSONDoesNotAlias(t *testing.T) {
	body := []byte(`{"id":"x1","model":"m1","choices":[{"index":0,"finish_reason":"weird","message":{"content":"t1"},"content_filter_results":{"odd":{"filtered":true}}}],"error":{"code":"c1","message":"e1"}}`)
	got := ParseJSON(record.OpChatCompletions, body, 100)
	want := Result{
		Model: "m1", ResponseID: "x1", FinishReasons: []string{"weird"},
		ContentFilter: &record.ContentFilter{Filtered: true, Categories: []string{"odd"}},
		Text:          "t1", TextBytes: 2,
		Error: &record.Error{Code: "c1", Message: "e1"},
	}
	for i := range body {
		body[i] = '#'
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Result changed with the body (-want +got):\n%s", diff)
	}
}
