package emulator

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/tiktoken-go/tokenizer"
)

// aoaiEncoding is one tokenizer with the words the emulator writes in it.
type aoaiEncoding struct {
	codec   tokenizer.Codec
	openers []string // capitalised words that are one token
	words   []string // words that are one token after a space
}

var aoaiEncodings = map[tokenizer.Encoding]func() *aoaiEncoding{
	tokenizer.O200kBase:  sync.OnceValue(func() *aoaiEncoding { return newAOAIEncoding(tokenizer.O200kBase) }),
	tokenizer.Cl100kBase: sync.OnceValue(func() *aoaiEncoding { return newAOAIEncoding(tokenizer.Cl100kBase) }),
}

var (
	aoaiOpeners = []string{"Sure", "Okay", "Here", "Well", "Yes", "Right", "So", "Now", "Indeed", "Certainly"}
	aoaiWords   = strings.Fields(`the of and to in is that for it as with was on be at by this have from or
		one had not but what all were when we there can an your which their said if do will each about how up
		out them then she many some so these would other into has more her two like him see time could no make
		than first been its who now people my made over did down only way find use may water long little very
		after words called just where most know answer reply short plain simple note test audit record call
		model token stream value line word part point data text clear good new old`)
)

func newAOAIEncoding(enc tokenizer.Encoding) *aoaiEncoding {
	c, err := tokenizer.Get(enc)
	if err != nil {
		panic(fmt.Sprintf("emulator: tokenizer %s: %v", enc, err)) // both encodings ship with the module
	}
	e := &aoaiEncoding{codec: c}
	for _, w := range aoaiOpeners {
		if aoaiCount(c, w) == 1 {
			e.openers = append(e.openers, w)
		}
	}
	for _, w := range aoaiWords {
		if aoaiCount(c, " "+w) == 1 {
			e.words = append(e.words, w)
		}
	}
	if len(e.openers) == 0 || len(e.words) == 0 {
		panic(fmt.Sprintf("emulator: no one-token words in %s", enc)) // TestAOAIReply covers both encodings
	}
	return e
}

// aoaiEncodingFor picks the tokenizer of model.
func aoaiEncodingFor(model string) *aoaiEncoding {
	if aoaiIsO200k(model) {
		return aoaiEncodings[tokenizer.O200kBase]()
	}
	return aoaiEncodings[tokenizer.Cl100kBase]()
}

// aoaiIsO200k reports whether model uses o200k_base: gpt-4o, gpt-4.1, the
// o-series and gpt-5. Every other model uses cl100k_base.
func aoaiIsO200k(model string) bool {
	m := strings.ToLower(model)
	for _, p := range []string{"gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-5"} {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	return aoaiIsReasoning(m)
}

// aoaiIsReasoning reports whether model is an o-series or gpt-5 model,
// whose usage carries reasoning tokens.
func aoaiIsReasoning(model string) bool {
	m := strings.ToLower(model)
	return strings.HasPrefix(m, "gpt-5") || len(m) >= 2 && m[0] == 'o' && m[1] >= '1' && m[1] <= '9'
}

func aoaiCount(c tokenizer.Codec, s string) int {
	n, _ := c.Count(s) // errors only in ErrorModeStrict, which is not used
	return n
}

func aoaiHash(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// aoaiChatPrompt counts a chat prompt with the cookbook formula (openai-cookbook
// "How to count tokens with tiktoken"): 3 tokens per message, the tokens of
// each field's value, 1 more for a name, and 3 that prime the reply. It also
// returns the text of the contents, which seeds the reply and the filter.
func aoaiChatPrompt(c tokenizer.Codec, msgs []json.RawMessage) (tokens int, text string, err error) {
	var sb strings.Builder
	tokens = 3
	for i, raw := range msgs {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return 0, "", fmt.Errorf("messages[%d] is not an object: %w", i, err)
		}
		tokens += 3
		for k, v := range m {
			s := aoaiText(v)
			tokens += aoaiCount(c, s)
			if k == "name" {
				tokens++
			}
		}
		sb.WriteString(aoaiText(m["content"]))
		sb.WriteByte('\n')
	}
	return tokens, sb.String(), nil
}

// aoaiText is the text a message field holds: a string as is, the text
// parts of a content array, and (INFERRED) any other value as its JSON.
func aoaiText(v json.RawMessage) string {
	if aoaiAbsent(v) {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(v, &parts) == nil {
		var sb strings.Builder
		for _, p := range parts {
			sb.WriteString(p.Text)
		}
		return sb.String()
	}
	return string(v)
}

// aoaiPromptList counts a completions prompt or embeddings input: a string,
// strings, token ids or token id arrays. INFERRED: no per-item overhead
// (the embeddings recording counts "hello" as 1).
func aoaiPromptList(c tokenizer.Codec, raw json.RawMessage) (tokens int, items []string, err error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return aoaiCount(c, s), []string{s}, nil
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil {
		for _, s := range ss {
			tokens += aoaiCount(c, s)
		}
		return tokens, ss, nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil {
		return len(ids), []string{string(raw)}, nil
	}
	var idss [][]int64
	if err := json.Unmarshal(raw, &idss); err != nil {
		return 0, nil, fmt.Errorf("input must be a string, strings or token arrays: %w", err)
	}
	for _, ids := range idss {
		tokens += len(ids)
		b, _ := json.Marshal(ids)
		items = append(items, string(b))
	}
	return tokens, items, nil
}

// aoaiReply is a generated completion.
type aoaiReply struct {
	Text      string
	Tokens    []string // Text split into its tokens, in order
	Finish    string   // "stop", or "length" when the maximum cut it short
	Reasoning int      // reasoning tokens, counted in completion tokens
}

// Visible is the number of tokens in Text.
func (r aoaiReply) Visible() int { return len(r.Tokens) }

// Completion is the completion token count the usage reports.
func (r aoaiReply) Completion() int { return len(r.Tokens) + r.Reasoning }

// reply generates the deterministic completion for prompt. Its length is
// the configured one (about 20 tokens by default, varying with the prompt),
// cut to limit when limit > 0. Text is made of words that are one token
// each and is re-encoded, so Tokens is exactly what the tokenizer makes of Text.
func (a *AOAI) reply(enc *aoaiEncoding, model, prompt string, limit int) aoaiReply {
	h := aoaiHash(prompt)
	natural := a.cfg.CompletionTokens
	if natural <= 0 {
		natural = 12 + int(h%17)
	}
	n, finish := natural, "stop"
	if limit > 0 && limit < natural {
		n, finish = limit, "length"
	}
	rng := rand.New(rand.NewPCG(h, 0x7a91))
	words := []string{enc.openers[rng.IntN(len(enc.openers))]}
	for range n - 2 {
		words = append(words, " "+enc.words[rng.IntN(len(enc.words))])
	}
	var ids []uint
	var toks []string
	for {
		text := strings.Join(words, "")
		if n >= 2 {
			text += "."
		}
		ids, toks, _ = enc.codec.Encode(text)
		if len(ids) <= n || len(words) == 1 {
			break
		}
		words = words[:len(words)-1] // never seen: each word is one token
	}
	r := aoaiReply{Text: strings.Join(toks, ""), Tokens: toks, Finish: finish}
	if aoaiIsReasoning(model) {
		// INFERRED amount; the recorded o1 call used 320 of 2922.
		r.Reasoning = 16 + int((h>>8)%48)
		if limit > 0 {
			r.Reasoning = max(min(r.Reasoning, limit-len(toks)), 0)
		}
	}
	return r
}

// cachedTokens simulates prompt caching (INFERRED from Azure's documented
// behaviour, not recorded): a prompt of 1024 tokens or more seen before is
// cached in 1024 + 128·k token blocks.
func (a *AOAI) cachedTokens(prompt string, promptTokens int) int {
	if promptTokens < 1024 {
		return 0
	}
	key := aoaiHash(prompt)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen[key] {
		return 1024 + (promptTokens-1024)/128*128
	}
	if len(a.seen) >= 10_000 {
		clear(a.seen)
	}
	a.seen[key] = true
	return 0
}

// aoaiLogprob is one token's entry in a logprobs.content array, shaped as
// in aoai-chat-stream-include-usage.recorded.sse.txt; the values are made up.
type aoaiLogprob struct {
	Bytes       []int            `json:"bytes"`
	Logprob     float64          `json:"logprob"`
	Token       string           `json:"token"`
	TopLogprobs []aoaiTopLogprob `json:"top_logprobs"`
}

type aoaiTopLogprob struct {
	Bytes   []int   `json:"bytes"`
	Logprob float64 `json:"logprob"`
	Token   string  `json:"token"`
}

func aoaiTokenLogprob(enc *aoaiEncoding, token string, i, top int) aoaiLogprob {
	h := aoaiHash(fmt.Sprint(i, token))
	lp := -float64(h%3000) / 1000
	l := aoaiLogprob{Bytes: aoaiBytes(token), Logprob: lp, Token: token, TopLogprobs: []aoaiTopLogprob{}}
	for k := range top {
		t, p := token, lp
		if k > 0 {
			t, p = " "+enc.words[(h>>uint(k))%uint64(len(enc.words))], lp-float64(k)
		}
		l.TopLogprobs = append(l.TopLogprobs, aoaiTopLogprob{Bytes: aoaiBytes(t), Logprob: p, Token: t})
	}
	return l
}

func aoaiBytes(s string) []int {
	b := make([]int, len(s))
	for i := range len(s) {
		b[i] = int(s[i])
	}
	return b
}
