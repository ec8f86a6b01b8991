package usage

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tiktoken-go/tokenizer"

	"github.com/tapline/tapline/internal/record"
)

// estimator is shared by the tests: loading the encodings once keeps them
// fast, and sharing it is what the gateway does.
var estimator = NewEstimator()

func TestEncoding(t *testing.T) {
	tests := []struct{ model, want string }{
		{"gpt-4o", "o200k_base"},
		{"gpt-4o-2024-08-06", "o200k_base"},
		{"gpt-4o-mini", "o200k_base"},
		{"GPT-4O", "o200k_base"},
		{"gpt-4.1-nano", "o200k_base"},
		{"gpt-41-mini", "o200k_base"},
		{"gpt-4.5-preview", "o200k_base"},
		{"gpt-5", "o200k_base"},
		{"gpt-5-mini", "o200k_base"},
		{"o1-2024-12-17", "o200k_base"},
		{"o3-mini", "o200k_base"},
		{"o4-mini", "o200k_base"},
		{"gpt-4", "cl100k_base"},
		{"gpt-4-0613", "cl100k_base"},
		{"gpt-4-turbo", "cl100k_base"},
		{"gpt-4-32k", "cl100k_base"},
		{"gpt-35-turbo", "cl100k_base"},
		{"gpt-35-turbo-16k", "cl100k_base"},
		{"gpt-3.5-turbo", "cl100k_base"},
		{"text-embedding-ada-002", "cl100k_base"},
		{"text-embedding-3-small", "cl100k_base"},
		{"my-chat-deployment", "o200k_base"},
		{"", "o200k_base"},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			if got := Encoding(tt.model); got != tt.want {
				t.Errorf("Encoding(%q) = %s, want %s", tt.model, got, tt.want)
			}
		})
	}
}

func TestCount(t *testing.T) {
	tests := []struct {
		name, model, text string
		want              int
	}{
		{"hello world o200k", "gpt-4o", "hello world", 2},
		{"hello world cl100k", "gpt-4", "hello world", 2},
		{"empty", "gpt-4o", "", 0},
		// Counted with the library; they differ between the encodings.
		{"numbers cl100k", "gpt-4", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10.", 29},
		{"prompt cl100k", "gpt-4", "Count to 10, with a comma between each number, no newlines and a period at the end. E.g., 1, 2, 3, ...", 35},
		{"curmudgeon o200k", "gpt-4o", "You are a curmudgeon", 7},
		{"hangul o200k", "gpt-4o", "안녕하세요", 2},
		{"hangul cl100k", "gpt-4", "안녕하세요", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := estimator.Count(tt.model, tt.text); got != tt.want {
				t.Errorf("Count(%q, %q) = %d, want %d", tt.model, tt.text, got, tt.want)
			}
		})
	}
}

// TestCountCache checks that remembered counts are those of their own text
// and encoding: texts of one length, the same text in two encodings, each
// asked twice, the second time from the cache.
func TestCountCache(t *testing.T) {
	e := NewEstimator()
	tests := []struct{ model, text string }{
		{"gpt-4o", "안녕하세요"}, {"gpt-4", "안녕하세요"}, // 2 and 5 tokens
		{"gpt-4o", "aaaaaaaaaaaaaaa"}, {"gpt-4o", "a a a a a a a a"}, // one length, different counts
	}
	want := make([]int, len(tests))
	for i, tt := range tests { // straight from the tokenizer, no cache
		c, err := tokenizer.Get(encodingFor(tt.model))
		if err != nil {
			t.Fatal(err)
		}
		if want[i], err = c.Count(tt.text); err != nil {
			t.Fatal(err)
		}
	}
	if want[0] == want[1] || want[2] == want[3] {
		t.Fatalf("the cases must differ in count: %v", want)
	}
	for round := range 2 {
		for i, tt := range tests {
			if got := e.Count(tt.model, tt.text); got != want[i] {
				t.Errorf("round %d: Count(%q, %q) = %d, want %d", round, tt.model, tt.text, got, want[i])
			}
		}
		if n := e.counts.len(); n != len(tests) {
			t.Errorf("round %d: the cache holds %d counts, want %d", round, n, len(tests))
		}
	}
}

// TestPromptFormula checks the cookbook overhead: 3 tokens a message, 1 a
// name, 3 for the reply, on top of the values' tokens.
func TestPromptFormula(t *testing.T) {
	hw := 2 // "hello world"
	tests := []struct {
		name, op, body string
		want           int
	}{
		{"one message", record.OpChatCompletions, `{"messages":[{"role":"user","content":"hello world"}]}`, 3 + 1 + hw + 3},
		{"with a name", record.OpChatCompletions, `{"messages":[{"role":"user","name":"bob","content":"hello world"}]}`, 3 + 1 + 1 + 1 + hw + 3},
		{"two messages", record.OpChatCompletions, `{"messages":[{"role":"system","content":"hello world"},{"role":"user","content":"hello world"}]}`, 2*(3+1+hw) + 3},
		{"content parts", record.OpChatCompletions, `{"messages":[{"role":"user","content":[{"type":"text","text":"hello world"},{"type":"image_url","image_url":{"url":"data:..."}},{"type":"text","text":"hello world"}]}]}`, 3 + 1 + 2*hw + 3},
		{"null content and tool calls", record.OpChatCompletions, `{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"hello","arguments":"hello world"}}]}]}`, 3 + 1 + 1 + hw + 3},
		{"no messages", record.OpChatCompletions, `{}`, 3},
		{"completions string", record.OpCompletions, `{"prompt":"hello world"}`, hw},
		{"completions array", record.OpCompletions, `{"prompt":["hello world","hello world"]}`, 2 * hw},
		{"embeddings string", record.OpEmbeddings, `{"input":"hello world"}`, hw},
		{"embeddings token array", record.OpEmbeddings, `{"input":[1,2,3]}`, 3},
		{"embeddings token arrays", record.OpEmbeddings, `{"input":[[1,2,3],[4,5]]}`, 5},
		{"responses string", record.OpResponses, `{"input":"hello world"}`, 3 + 1 + hw + 3},
		{"responses instructions", record.OpResponses, `{"instructions":"hello world","input":"hello world"}`, (3 + 1 + hw) + (3 + 1 + hw) + 3},
		{"responses messages", record.OpResponses, `{"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hello world"}]}]}`, 3 + 1 + hw + 3},
		{"not JSON", record.OpChatCompletions, `nope`, 0},
		{"other op", record.OpImages, `{"prompt":"hello world"}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, model := range []string{"gpt-4o", "gpt-4"} {
				if got := estimator.Prompt(tt.op, model, []byte(tt.body)); got != tt.want {
					t.Errorf("Prompt(%s) = %d, want %d", model, got, tt.want)
				}
			}
		})
	}
}

// TestEstimateFixtures checks the estimator against the usage Azure
// reported for the recorded exchanges: it gets every count exactly.
func TestEstimateFixtures(t *testing.T) {
	streamText := "Ah, greetings. How can I assist you today, or do I need to remind you how much better things were back in the day?"
	tests := []struct {
		name   string
		op     string
		model  string // the deployment's model, as the gateway would know it
		file   string
		output string
		want   record.Usage
	}{
		{"chat completion", record.OpChatCompletions, "gpt-4-0613", fixtureChat, "1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
			record.Usage{PromptTokens: 42, CompletionTokens: 29, TotalTokens: 71, Source: record.UsageEstimated}},
		{"stream with include_usage", record.OpChatCompletions, "gpt-4o-0806", fixtureStreamUsageX, streamText,
			record.Usage{PromptTokens: 22, CompletionTokens: 28, TotalTokens: 50, Source: record.UsageEstimated}},
		{"embeddings", record.OpEmbeddings, "text-embedding-3-small", fixtureEmbeddings, "",
			record.Usage{PromptTokens: 1, TotalTokens: 1, Source: record.UsageEstimated}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := estimator.Estimate(tt.op, tt.model, recorded(t, tt.file, "RequestBody"), tt.output)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Estimate (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("n choices", func(t *testing.T) {
		got := estimator.Estimate(record.OpChatCompletions, "gpt-4o", []byte(`{"n":3,"messages":[]}`), "hello world")
		if got.CompletionTokens != 6 {
			t.Errorf("CompletionTokens = %d, want 3 choices x 2", got.CompletionTokens)
		}
	})
}

func TestEstimatorConcurrent(t *testing.T) {
	e := NewEstimator()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			model := []string{"gpt-4o", "gpt-4"}[i%2]
			for j := range 20 {
				text := fmt.Sprintf("hello world %d", j)
				if got, want := e.Count(model, text), estimator.Count(model, text); got != want {
					t.Errorf("Count = %d, want %d", got, want)
				}
			}
		})
	}
	wg.Wait()
}
