package emulator

import (
	"math"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// azureClient is the official client set up as test-infrastructure.md §6 shows.
func azureClient(url, apiVersion string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		azure.WithEndpoint(url, apiVersion),
		azure.WithAPIKey(testKey),
		azure.WithUnsafeAllowHTTP(),
		option.WithMaxRetries(0),
	}, opts...)...)
}

// tokens counts s with the encoding the test names, independently of the
// stand-in's model table.
func tokens(t *testing.T, encoding string, s string) int {
	t.Helper()
	enc := aoaiEncodingFor(map[string]string{"o200k": "gpt-4o", "cl100k": "gpt-4"}[encoding])
	return aoaiCount(enc.codec, s)
}

// chatPromptTokens is the cookbook formula spelled out for role/content
// messages: 3 per message plus its role and content, 3 for the reply.
func chatPromptTokens(t *testing.T, encoding string, roleContent ...string) int {
	n := 3
	for i := 0; i < len(roleContent); i += 2 {
		n += 3 + tokens(t, encoding, roleContent[i]) + tokens(t, encoding, roleContent[i+1])
	}
	return n
}

var testChat = openai.ChatCompletionNewParams{
	Model: "gpt-4o",
	Messages: []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage("You are terse."),
		openai.UserMessage("Count to three."),
	},
}

func TestAOAIOfficialClientChat(t *testing.T) {
	a, srv := newTestAOAI(t, nil)
	client := azureClient(srv.URL, "2024-10-21", option.WithHeader("x-ms-client-request-id", "client-req-1"))

	resp, err := client.Chat.Completions.New(t.Context(), testChat)
	if err != nil {
		t.Fatal(err)
	}
	text := resp.Choices[0].Message.Content
	if text == "" || resp.Model != "gpt-4o-2024-08-06" || resp.Object != "chat.completion" {
		t.Errorf("got model %q object %q content %q", resp.Model, resp.Object, text)
	}
	type usage struct{ Prompt, Completion, Total int64 }
	wantPrompt := int64(chatPromptTokens(t, "o200k", "system", "You are terse.", "user", "Count to three."))
	wantCompletion := int64(tokens(t, "o200k", text))
	want := usage{wantPrompt, wantCompletion, wantPrompt + wantCompletion}
	got := usage{resp.Usage.PromptTokens, resp.Usage.CompletionTokens, resp.Usage.TotalTokens}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
	if _, ok := resp.JSON.ExtraFields["prompt_filter_results"]; !ok {
		t.Errorf("no prompt_filter_results in %s", resp.RawJSON())
	}
	if reqs := a.Requests(); reqs[0].ClientRequestID != "client-req-1" || reqs[0].Path != "/openai/deployments/gpt-4o/chat/completions" {
		t.Errorf("logged %+v", reqs[0])
	}
}

func TestAOAIOfficialClientChatStream(t *testing.T) {
	_, srv := newTestAOAI(t, nil)
	client := azureClient(srv.URL, "2024-10-21")
	params := testChat
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}

	stream := client.Chat.Completions.NewStreaming(t.Context(), params)
	var acc openai.ChatCompletionAccumulator
	var streamed strings.Builder
	var usage openai.CompletionUsage
	chunks := 0
	for stream.Next() {
		c := stream.Current()
		if !acc.AddChunk(c) {
			t.Errorf("accumulator rejected chunk %d: %s", chunks, c.RawJSON())
		}
		for _, ch := range c.Choices {
			streamed.WriteString(ch.Delta.Content)
		}
		if len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
			usage = c.Usage
		}
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	text := streamed.String()
	if got := acc.Choices[0].Message.Content; got != text || text == "" {
		t.Errorf("accumulated %q, streamed %q", got, text)
	}
	wantPrompt := chatPromptTokens(t, "o200k", "system", "You are terse.", "user", "Count to three.")
	if usage.PromptTokens != int64(wantPrompt) || usage.CompletionTokens != int64(tokens(t, "o200k", text)) ||
		usage.TotalTokens != usage.PromptTokens+usage.CompletionTokens {
		t.Errorf("usage %+v; want prompt %d, completion %d (the tokenizer's count of the streamed text)",
			usage, wantPrompt, tokens(t, "o200k", text))
	}
	// prompt filter, role, the tokens, finish, usage.
	if want := 4 + int(usage.CompletionTokens); chunks != want {
		t.Errorf("%d chunks, want %d", chunks, want)
	}
}

func TestAOAIOfficialClientEmbeddings(t *testing.T) {
	_, srv := newTestAOAI(t, nil)
	client := azureClient(srv.URL, "2024-10-21")
	vectors := map[openai.EmbeddingNewParamsEncodingFormat][][]float64{}
	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
		resp, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
			Model:          "text-embedding-3-small",
			Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello", "audit trail"}},
			Dimensions:     openai.Int(256),
			EncodingFormat: format,
		})
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if want := tokens(t, "cl100k", "hello") + tokens(t, "cl100k", "audit trail"); resp.Usage.PromptTokens != int64(want) {
			t.Errorf("%s: prompt tokens %d, want %d", format, resp.Usage.PromptTokens, want)
		}
		for i, d := range resp.Data {
			var norm float64
			for _, x := range d.Embedding {
				norm += x * x
			}
			if len(d.Embedding) != 256 || math.Abs(norm-1) > 1e-4 || d.Index != int64(i) {
				t.Errorf("%s: vector %d has %d values, norm² %f", format, i, len(d.Embedding), norm)
			}
			vectors[format] = append(vectors[format], d.Embedding)
		}
	}
	asFloat32 := cmp.Transformer("float32", func(v float64) float32 { return float32(v) })
	if diff := cmp.Diff(vectors[openai.EmbeddingNewParamsEncodingFormatFloat], vectors[openai.EmbeddingNewParamsEncodingFormatBase64], asFloat32); diff != "" {
		t.Errorf("base64 vectors differ from float ones:\n%s", diff)
	}
}

// The Responses API, over the classic path with the Azure options and over
// /openai/v1 with the plain client and the key as a bearer token.
func TestAOAIOfficialClientResponses(t *testing.T) {
	_, srv := newTestAOAI(t, nil)
	params := responses.ResponseNewParams{
		Model: "gpt-4.1-nano",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("This is a test.")},
	}
	// aoai-responses-api.docs-sample.json reports 12 input tokens for this input.
	const wantInput = 12

	classic := azureClient(srv.URL, "2025-04-01-preview")
	resp, err := classic.Responses.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	text := resp.OutputText()
	if text == "" || resp.Model != "gpt-4.1-nano" || resp.Status != "completed" {
		t.Errorf("got model %q status %q text %q", resp.Model, resp.Status, text)
	}
	if u := resp.Usage; u.InputTokens != wantInput || u.OutputTokens != int64(tokens(t, "o200k", text)) || u.TotalTokens != u.InputTokens+u.OutputTokens {
		t.Errorf("usage %+v for %q", u, text)
	}

	v1 := openai.NewClient(option.WithBaseURL(srv.URL+"/openai/v1/"), option.WithAPIKey(testKey), option.WithMaxRetries(0))
	stream := v1.Responses.NewStreaming(t.Context(), params)
	var deltas strings.Builder
	var types []string
	var final responses.Response
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		switch ev.Type {
		case "response.output_text.delta":
			deltas.WriteString(ev.Delta)
		case "response.completed":
			final = ev.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if types[0] != "response.created" || types[len(types)-1] != "response.completed" {
		t.Errorf("event types %q", types)
	}
	streamed := deltas.String()
	if streamed != final.OutputText() || streamed == "" {
		t.Errorf("streamed %q, final text %q", streamed, final.OutputText())
	}
	u := final.Usage
	if u.InputTokens != wantInput || u.OutputTokens != int64(tokens(t, "o200k", streamed)) ||
		u.InputTokensDetails.CachedTokens != 0 || u.OutputTokensDetails.ReasoningTokens != 0 {
		t.Errorf("usage %+v for %q", u, streamed)
	}
}

// The managed-identity path: a token credential's bearer token.
func TestAOAIOfficialClientBearer(t *testing.T) {
	a, srv := newTestAOAI(t, func(c *AOAIConfig) {
		c.AcceptBearer = func(tok string) bool { return tok == "fake_token" } // what fake.TokenCredential issues
	})
	client := openai.NewClient(
		azure.WithEndpoint(srv.URL, "2024-10-21"),
		azure.WithTokenCredential(&fake.TokenCredential{}),
		azure.WithUnsafeAllowHTTP(),
		option.WithMaxRetries(0),
	)
	if _, err := client.Chat.Completions.New(t.Context(), testChat); err != nil {
		t.Fatal(err)
	}
	if got := a.Requests()[0].Auth; got != "bearer" {
		t.Errorf("auth = %q, want bearer", got)
	}
}
