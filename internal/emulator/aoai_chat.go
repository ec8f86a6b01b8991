package emulator

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// Content filter verdicts as recorded: per choice and chunk
// (aoai-chat-completion.recorded.json), and on the prompt of newer models,
// which adds jailbreak (aoai-chat-stream-include-usage.recorded.sse.txt).
const (
	aoaiSafe          = `{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}`
	aoaiSafeJailbreak = `{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}`
)

// aoaiCompletion is a chat or text completion, or one chunk of its stream,
// with the keys in the recorded order. Nil RawMessages are left out;
// "null" ones are sent as null.
type aoaiCompletion struct {
	Choices             []any           `json:"choices"`
	Created             int64           `json:"created"`
	ID                  string          `json:"id"`
	Model               string          `json:"model"`
	Object              string          `json:"object"`
	PromptFilterResults json.RawMessage `json:"prompt_filter_results,omitempty"`
	SystemFingerprint   json.RawMessage `json:"system_fingerprint,omitempty"`
	Usage               json.RawMessage `json:"usage,omitempty"`
}

type aoaiChatChoice struct {
	ContentFilterResults json.RawMessage `json:"content_filter_results,omitempty"`
	FinishReason         string          `json:"finish_reason"`
	Index                int             `json:"index"`
	Logprobs             json.RawMessage `json:"logprobs"`
	Message              aoaiMessage     `json:"message"`
}

type aoaiMessage struct {
	Content string `json:"content"`
	Role    string `json:"role"`
}

type aoaiChunkChoice struct {
	ContentFilterResults json.RawMessage `json:"content_filter_results,omitempty"`
	Delta                aoaiDelta       `json:"delta"`
	FinishReason         *string         `json:"finish_reason"`
	Index                int             `json:"index"`
	Logprobs             json.RawMessage `json:"logprobs"`
}

type aoaiDelta struct {
	Content *string `json:"content,omitempty"`
	Role    string  `json:"role,omitempty"`
}

// aoaiTextChoice is a legacy completions choice (INFERRED: OpenAI's shape
// with Azure's content_filter_results; no recording).
type aoaiTextChoice struct {
	ContentFilterResults json.RawMessage `json:"content_filter_results,omitempty"`
	FinishReason         *string         `json:"finish_reason"`
	Index                int             `json:"index"`
	Logprobs             json.RawMessage `json:"logprobs"`
	Text                 string          `json:"text"`
}

type aoaiUsage struct {
	CompletionTokens        int                    `json:"completion_tokens"`
	CompletionTokensDetails *aoaiCompletionDetails `json:"completion_tokens_details,omitempty"`
	PromptTokens            int                    `json:"prompt_tokens"`
	PromptTokensDetails     *aoaiPromptDetails     `json:"prompt_tokens_details,omitempty"`
	TotalTokens             int                    `json:"total_tokens"`
}

type aoaiCompletionDetails struct {
	AcceptedPredictionTokens int `json:"accepted_prediction_tokens"`
	AudioTokens              int `json:"audio_tokens"`
	ReasoningTokens          int `json:"reasoning_tokens"`
	RejectedPredictionTokens int `json:"rejected_prediction_tokens"`
}

type aoaiPromptDetails struct {
	AudioTokens  int `json:"audio_tokens"`
	CachedTokens int `json:"cached_tokens"`
}

// usage builds the usage object. The *_details objects are recorded for an
// o-series model and absent for gpt-4 and gpt-4o (azure-contracts.md §7.3);
// INFERRED: sent for o-series and gpt-5 models, on the OpenAI-style paths,
// and whenever tokens were cached.
func (c *aoaiCall) usage(prompt, cached int, r aoaiReply) aoaiUsage {
	u := aoaiUsage{CompletionTokens: r.Completion(), PromptTokens: prompt, TotalTokens: prompt + r.Completion()}
	if aoaiIsReasoning(c.model) || c.flavor == aoaiOpenAI || cached > 0 {
		u.CompletionTokensDetails = &aoaiCompletionDetails{ReasoningTokens: r.Reasoning}
		u.PromptTokensDetails = &aoaiPromptDetails{CachedTokens: cached}
	}
	return u
}

// azure returns v on the Azure paths and nil on the OpenAI-style ones.
func (c *aoaiCall) azure(v string) json.RawMessage {
	if c.flavor == aoaiOpenAI {
		return nil
	}
	return json.RawMessage(v)
}

// promptFilterResults is recorded with jailbreak for gpt-4o and without for
// gpt-4. INFERRED: it depends on the model family, not the filter config.
func (c *aoaiCall) promptFilterResults() json.RawMessage {
	results := aoaiSafe
	if aoaiIsO200k(c.model) {
		results = aoaiSafeJailbreak
	}
	return c.azure(`[{"prompt_index":0,"content_filter_results":` + results + `}]`)
}

// fingerprint is recorded as null for gpt-4 and "fp_04751d0b65" for gpt-4o.
// INFERRED: a made-up fp_ value for every o200k_base model.
func (c *aoaiCall) fingerprint() json.RawMessage {
	if !aoaiIsO200k(c.model) {
		return json.RawMessage("null")
	}
	return json.RawMessage(fmt.Sprintf(`"fp_%010x"`, aoaiHash(c.model)&0xffffffffff))
}

// includeUsage reports whether a stream ends with a usage chunk: asked
// for, and supported by the api-version (2024-09-01-preview and later,
// azure-contracts.md §7.4) or a v1 path.
func (c *aoaiCall) includeUsage() bool {
	return c.body.StreamOptions.IncludeUsage && (c.flavor != aoaiClassic || aoaiVersionAtLeast(c.apiVersion, "2024-09-01"))
}

// aoaiVersionAtLeast compares the date of an api-version with date.
// INFERRED: a version that is not a date ("preview", "latest") is new.
func aoaiVersionAtLeast(version, date string) bool {
	if len(version) < len(date) || version[4] != '-' || version[7] != '-' {
		return true
	}
	return version[:len(date)] >= date
}

func (c *aoaiCall) wantLogprobs() bool { return string(c.body.Logprobs) == "true" }

// limit is the request's cap on generated tokens, 0 for none.
func (c *aoaiCall) limit() int {
	for _, p := range []*int{c.body.MaxCompletionTokens, c.body.MaxTokens, c.body.MaxOutputTokens} {
		if p != nil && *p > 0 {
			return *p
		}
	}
	return 0
}

// paceTotal is how long n tokens take at the configured pace.
func (c *aoaiCall) paceTotal(n int) time.Duration {
	if tps := c.a.cfg.TokensPerSecond; tps > 0 {
		return time.Duration(float64(n) / tps * float64(time.Second))
	}
	return 0
}

const aoaiIDChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// aoaiID makes an id like the recorded "chatcmpl-AxJxCGsfC5NsEFZlXuv033ekCrPq5".
func aoaiID(prefix string, n int) string {
	var sb strings.Builder
	sb.WriteString(prefix)
	for range n {
		sb.WriteByte(aoaiIDChars[rand.IntN(len(aoaiIDChars))])
	}
	return sb.String()
}

func (c *aoaiCall) serveChat() {
	enc := aoaiEncodingFor(c.model)
	promptTokens, prompt, err := aoaiChatPrompt(enc.codec, c.body.Messages)
	if err != nil {
		c.writeBadRequest(err)
		return
	}
	if c.filtered(prompt, promptTokens) {
		return
	}
	r := c.a.reply(enc, c.model, prompt, c.limit())
	u := c.usage(promptTokens, c.a.cachedTokens(prompt, promptTokens), r)
	id, created := aoaiID("chatcmpl-", 29), time.Now().Unix()
	if c.body.Stream {
		c.streamChat(enc, r, u, id, created)
		return
	}
	if c.wait(c.paceTotal(r.Visible())) != nil {
		return
	}
	var logprobs json.RawMessage
	if c.wantLogprobs() {
		content := make([]aoaiLogprob, len(r.Tokens))
		for i, t := range r.Tokens {
			content[i] = aoaiTokenLogprob(enc, t, i, c.body.TopLogprobs)
		}
		logprobs = aoaiMarshal(map[string]any{"content": content}) // INFERRED shape for non-streamed logprobs
	}
	c.writeSuccess(aoaiCompletion{
		Choices: []any{aoaiChatChoice{
			ContentFilterResults: c.azure(aoaiSafe),
			FinishReason:         r.Finish,
			Logprobs:             logprobs,
			Message:              aoaiMessage{Content: r.Text, Role: "assistant"},
		}},
		Created:             created,
		ID:                  id,
		Model:               c.model,
		Object:              "chat.completion",
		PromptFilterResults: c.promptFilterResults(),
		SystemFingerprint:   c.fingerprint(),
		Usage:               aoaiMarshal(u),
	}, u.TotalTokens)
}

// streamChat sends the recorded event sequence: the prompt-filter-only
// chunk, the role chunk, one chunk per token, the finish chunk, the usage
// chunk when asked for, then [DONE].
func (c *aoaiCall) streamChat(enc *aoaiEncoding, r aoaiReply, u aoaiUsage, id string, created int64) {
	s := c.startSSE(u.TotalTokens)
	withUsage := c.includeUsage()
	chunk := func(choices ...any) aoaiCompletion {
		ch := aoaiCompletion{Choices: choices, Created: created, ID: id, Model: c.model,
			Object: "chat.completion.chunk", SystemFingerprint: c.fingerprint()}
		if withUsage {
			ch.Usage = json.RawMessage("null")
		}
		return ch
	}
	if c.flavor != aoaiOpenAI {
		if s.send("", aoaiCompletion{Choices: []any{}, PromptFilterResults: c.promptFilterResults()}) != nil {
			return
		}
	}
	empty, logprobs := "", json.RawMessage(nil)
	if c.wantLogprobs() {
		logprobs = json.RawMessage(`{"content":[]}`)
	}
	if s.send("", chunk(aoaiChunkChoice{ContentFilterResults: c.azure("{}"), Delta: aoaiDelta{Content: &empty, Role: "assistant"}, Logprobs: logprobs})) != nil {
		return
	}
	for i, t := range r.Tokens {
		if c.wantLogprobs() {
			logprobs = aoaiMarshal(map[string]any{"content": []aoaiLogprob{aoaiTokenLogprob(enc, t, i, c.body.TopLogprobs)}})
		}
		if s.token("", chunk(aoaiChunkChoice{ContentFilterResults: c.azure(aoaiSafe), Delta: aoaiDelta{Content: &t}, Logprobs: logprobs})) != nil {
			return
		}
	}
	if s.send("", chunk(aoaiChunkChoice{ContentFilterResults: c.azure("{}"), FinishReason: &r.Finish})) != nil {
		return
	}
	if withUsage {
		last := chunk()
		last.Choices, last.Usage = []any{}, aoaiMarshal(u)
		if s.send("", last) != nil {
			return
		}
	}
	s.done(true)
}

func (c *aoaiCall) writeSuccess(v any, tokens int) {
	c.writeSuccessBody(aoaiMarshal(v), tokens)
}

// writeSuccessBody sends a JSON success with the headers recorded for
// chat (aoai-chat-completion.recorded.json) and embeddings
// (aoai-embeddings.recorded.json).
func (c *aoaiCall) writeSuccessBody(body []byte, tokens int) {
	c.setSuccessHeaders(tokens)
	if c.flavor != aoaiOpenAI {
		c.w.Header().Set("Access-Control-Allow-Origin", "*")
		if c.op == aoaiOpChat {
			c.w.Header().Set("Cache-Control", "must-revalidate, no-cache")
		}
	}
	c.writeBody(http.StatusOK, "application/json", body)
}

// serveCompletions answers the legacy text completions API, plain or
// streamed. INFERRED throughout: no recording; it mirrors chat.
func (c *aoaiCall) serveCompletions() {
	enc := aoaiEncodingFor(c.model)
	promptTokens, items, err := aoaiPromptList(enc.codec, c.body.Prompt)
	if err != nil {
		c.writeBadRequest(err)
		return
	}
	prompt := strings.Join(items, "\n")
	if c.filtered(prompt, promptTokens) {
		return
	}
	r := c.a.reply(enc, c.model, prompt, c.limit())
	u := c.usage(promptTokens, 0, r)
	id, created := aoaiID("cmpl-", 29), time.Now().Unix()
	base := aoaiCompletion{Created: created, ID: id, Model: c.model, Object: "text_completion", SystemFingerprint: c.fingerprint()}
	if !c.body.Stream {
		if c.wait(c.paceTotal(r.Visible())) != nil {
			return
		}
		base.Choices = []any{aoaiTextChoice{ContentFilterResults: c.azure(aoaiSafe), FinishReason: &r.Finish, Text: r.Text}}
		base.PromptFilterResults = c.promptFilterResults()
		base.Usage = aoaiMarshal(u)
		c.writeSuccess(base, u.TotalTokens)
		return
	}
	s := c.startSSE(u.TotalTokens)
	withUsage := c.includeUsage()
	if withUsage {
		base.Usage = json.RawMessage("null")
	}
	chunk := func(ch aoaiTextChoice) aoaiCompletion {
		out := base
		out.Choices = []any{ch}
		return out
	}
	if c.flavor != aoaiOpenAI {
		if s.send("", aoaiCompletion{Choices: []any{}, PromptFilterResults: c.promptFilterResults()}) != nil {
			return
		}
	}
	for _, t := range r.Tokens {
		if s.token("", chunk(aoaiTextChoice{ContentFilterResults: c.azure(aoaiSafe), Text: t})) != nil {
			return
		}
	}
	if s.send("", chunk(aoaiTextChoice{ContentFilterResults: c.azure("{}"), FinishReason: &r.Finish})) != nil {
		return
	}
	if withUsage {
		last := base
		last.Choices, last.Usage = []any{}, aoaiMarshal(u)
		if s.send("", last) != nil {
			return
		}
	}
	s.done(true)
}
