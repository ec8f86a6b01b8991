package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/tapline/tapline/internal/record"
)

// The official Go client, with its Azure options, calls through the
// gateway; the records carry the tokens, content and timings it saw.

func (h *harness) client() *openai.Client {
	c := openai.NewClient(
		azure.WithEndpoint(h.srv.URL, "2024-10-21"),
		azure.WithAPIKey(h.key),
		azure.WithUnsafeAllowHTTP(),
		option.WithMaxRetries(0),
	)
	return &c
}

func TestGoClientChat(t *testing.T) {
	h := newHarness(t)
	resp, err := h.client().Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Count to three, please")},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := h.only()
	want := record.Usage{PromptTokens: int(resp.Usage.PromptTokens), CompletionTokens: int(resp.Usage.CompletionTokens),
		TotalTokens: int(resp.Usage.TotalTokens), Source: record.UsageReported}
	if rec.Usage == nil || *rec.Usage != want || want.TotalTokens == 0 {
		t.Errorf("usage %+v, client saw %+v", rec.Usage, want)
	}
	if rec.Principal.Kind != record.PrincipalKey || rec.Principal.KeyName != "tester" {
		t.Errorf("principal %+v", rec.Principal)
	}
	checks := map[string][2]string{
		"operation":      {rec.Operation, record.OpChatCompletions},
		"deployment":     {rec.Deployment, "gpt-4o"},
		"model_returned": {rec.ModelReturned, resp.Model},
		"api_version":    {rec.APIVersion, "2024-10-21"},
		"client_ip":      {rec.ClientIP, "127.0.0.1"},
		"backend":        {rec.Backend, "emu"},
		"state":          {rec.State, record.StateCompleted},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if rec.Status != 200 || rec.UpstreamStatus != 200 || rec.Stream {
		t.Errorf("status %d upstream %d stream %v", rec.Status, rec.UpstreamStatus, rec.Stream)
	}
	if rec.Prompt == nil || !strings.Contains(rec.Prompt.Text, "Count to three, please") {
		t.Errorf("prompt not captured: %+v", rec.Prompt)
	}
	if rec.Response == nil || !strings.Contains(rec.Response.Text, resp.Choices[0].Message.Content) {
		t.Errorf("response not captured: %+v", rec.Response)
	}
	if rec.Upstream.APIMRequestID == "" || rec.Upstream.Region == "" {
		t.Errorf("upstream ids missing: %+v", rec.Upstream)
	}
	if rec.TTFTMS == nil || *rec.TTFTMS > rec.DurationMS || rec.DurationMS <= 0 {
		t.Errorf("timings ttft %v duration %v", rec.TTFTMS, rec.DurationMS)
	}
	if len(rec.FinishReasons) != 1 || rec.FinishReasons[0] != "stop" {
		t.Errorf("finish reasons %v", rec.FinishReasons)
	}
	if !strings.HasPrefix(rec.UserAgent, "OpenAI/Go") {
		t.Errorf("user agent %q", rec.UserAgent)
	}
}

func TestGoClientStreamWithoutUsageGetsNoUsageButRecordHasIt(t *testing.T) {
	h := newHarness(t)
	stream := h.client().Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story about a lighthouse")},
	})
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		c := stream.Current()
		acc.AddChunk(c)
		chunks++
		if c.Usage.TotalTokens != 0 || strings.Contains(c.RawJSON(), `"usage"`) {
			t.Errorf("the caller did not ask for usage but got it: %s", c.RawJSON())
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	rec := h.only()
	text := acc.Choices[0].Message.Content
	if text == "" || rec.Response == nil || rec.Response.Text != text {
		t.Errorf("streamed text %q, recorded %+v", text, rec.Response)
	}
	// The emulator sends usage only when asked: a reported usage proves the
	// gateway asked for it on the caller's behalf.
	if rec.Usage == nil || rec.Usage.Source != record.UsageReported || rec.Usage.CompletionTokens == 0 {
		t.Errorf("usage %+v", rec.Usage)
	}
	if !rec.Stream || rec.TTFTMS == nil || *rec.TTFTMS > rec.DurationMS {
		t.Errorf("stream %v ttft %v duration %v", rec.Stream, rec.TTFTMS, rec.DurationMS)
	}
}

func TestGoClientStreamWithUsage(t *testing.T) {
	h := newHarness(t)
	stream := h.client().Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         "gpt-4o",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var got openai.CompletionUsage
	for stream.Next() {
		if c := stream.Current(); len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
			got = c.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	rec := h.only()
	if got.TotalTokens == 0 || rec.Usage == nil || int64(rec.Usage.TotalTokens) != got.TotalTokens ||
		int64(rec.Usage.PromptTokens) != got.PromptTokens {
		t.Errorf("client usage %+v, record %+v", got, rec.Usage)
	}
}

func TestGoClientEmbeddings(t *testing.T) {
	h := newHarness(t)
	resp, err := h.client().Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello", "audit trail"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := h.only()
	if len(resp.Data) != 2 || rec.Operation != record.OpEmbeddings || rec.Usage == nil ||
		int64(rec.Usage.PromptTokens) != resp.Usage.PromptTokens || rec.Usage.CompletionTokens != 0 {
		t.Errorf("embeddings: %d vectors, record %+v usage %+v", len(resp.Data), rec, rec.Usage)
	}
}

func TestGoClientResponses(t *testing.T) {
	h := newHarness(t)
	client := openai.NewClient(
		option.WithBaseURL(h.srv.URL+"/openai/v1/"),
		option.WithHeader("api-key", h.key),
		option.WithMaxRetries(0),
	)
	resp, err := client.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "gpt-4o",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello to the auditors")},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := h.only()
	if rec.Operation != record.OpResponses || rec.Deployment != "gpt-4o" || rec.Usage == nil ||
		int64(rec.Usage.TotalTokens) != resp.Usage.TotalTokens || int64(rec.Usage.PromptTokens) != resp.Usage.InputTokens {
		t.Errorf("record %+v usage %+v; client usage %+v", rec, rec.Usage, resp.Usage)
	}
	if rec.Response == nil || !strings.Contains(rec.Response.Text, resp.OutputText()) || resp.OutputText() == "" {
		t.Errorf("response text %q recorded %+v", resp.OutputText(), rec.Response)
	}
}
