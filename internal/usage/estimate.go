package usage

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tidwall/gjson"
	"github.com/tiktoken-go/tokenizer"

	"github.com/tapline/tapline/internal/record"
)

// The chat message overhead of OpenAI's cookbook ("How to count tokens with
// tiktoken", num_tokens_from_messages) for every model since
// gpt-3.5-turbo-0613: each message costs 3 tokens besides its values, a
// name 1 more, and the reply is primed with 3. It reproduces the prompt
// tokens Azure reported for the recorded exchanges in testdata.
const (
	tokensPerMessage = 3
	tokensPerName    = 1
	tokensReply      = 3
)

// Estimator counts tokens with the tokenizer of each model's encoding. It
// is safe for concurrent use; each encoding is loaded once, on first use
// (o200k_base takes tens of milliseconds and tens of MB).
type Estimator struct {
	o200k  lazyCodec
	cl100k lazyCodec
	counts *countCache // nil: no cache
}

// countCache remembers token counts by text, without the texts: callers
// repeat most of what they send, a system prompt on every call and the
// whole conversation so far on every turn of a chat, which would otherwise
// be tokenized again each time (the tokenizer is the dearest step of a
// limited call). It is direct-mapped: a seeded 64-bit hash of the
// encoding and the text picks a slot, whose one word holds the
// hash's upper 40 bits and the count. A lookup is one atomic load and a
// store one atomic store, so the calls of a busy gateway never wait on
// each other here; a text whose slot another took is counted again. Two
// texts agreeing on the slot and the 40 bits (one in 2^54) would only
// misjudge one admission estimate.
type countCache struct {
	slots [countCacheSize]atomic.Uint64
}

// countCacheSize is the number of slots, a power of two.
const countCacheSize = 1 << 14

const (
	countBits = 24 // a count up to 16,777,215 tokens is remembered
	countMask = 1<<countBits - 1
)

var countSeed = maphash.MakeSeed()

// countHash is the hash of text in encoding enc (1 or 2).
func countHash(enc byte, text string) uint64 {
	return maphash.String(countSeed, text) ^ uint64(enc)*0x9e3779b97f4a7c15
}

func (c *countCache) get(h uint64) (int, bool) {
	if c == nil {
		return 0, false
	}
	v := c.slots[h&(countCacheSize-1)].Load()
	if v == 0 || v>>countBits != h>>countBits {
		return 0, false
	}
	return int(v & countMask), true
}

func (c *countCache) add(h uint64, n int) {
	if c == nil || n < 0 || n > countMask {
		return
	}
	c.slots[h&(countCacheSize-1)].Store(h>>countBits<<countBits | uint64(n))
}

// len is the number of slots in use, for tests.
func (c *countCache) len() int {
	n := 0
	for i := range c.slots {
		if c.slots[i].Load() != 0 {
			n++
		}
	}
	return n
}

type lazyCodec struct {
	enc   tokenizer.Encoding
	id    byte // the encoding in countCache's hashes
	once  sync.Once
	codec tokenizer.Codec
}

func (l *lazyCodec) get() tokenizer.Codec {
	l.once.Do(func() {
		c, err := tokenizer.Get(l.enc)
		if err == nil {
			l.codec = c
		}
	})
	return l.codec
}

// NewEstimator returns an Estimator. It loads nothing until first used.
func NewEstimator() *Estimator {
	return &Estimator{
		o200k:  lazyCodec{enc: tokenizer.O200kBase, id: 1},
		cl100k: lazyCodec{enc: tokenizer.Cl100kBase, id: 2},
		counts: new(countCache),
	}
}

// Encoding returns the name of the encoding used for model: o200k_base for
// gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3 and o4 models; cl100k_base for
// the other gpt-4 models, gpt-3.5 (Azure: gpt-35) and text-embedding-*;
// o200k_base for anything else, such as a deployment name.
func Encoding(model string) string {
	return string(encodingFor(model))
}

func encodingFor(model string) tokenizer.Encoding {
	m := strings.ToLower(model)
	if i := strings.LastIndexByte(m, '/'); i >= 0 { // "openai/gpt-4o"
		m = m[i+1:]
	}
	for _, p := range []string{
		"gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-41", "gpt-4.5", "gpt-45",
		"gpt-5", "o1", "o3", "o4",
	} {
		if strings.HasPrefix(m, p) {
			return tokenizer.O200kBase
		}
	}
	for _, p := range []string{"gpt-4", "gpt-35", "gpt-3.5", "text-embedding-"} {
		if strings.HasPrefix(m, p) {
			return tokenizer.Cl100kBase
		}
	}
	return tokenizer.O200kBase
}

// codec returns the encoding of model, loaded on first use.
func (e *Estimator) codec(model string) *lazyCodec {
	if encodingFor(model) == tokenizer.Cl100kBase {
		return &e.cl100k
	}
	return &e.o200k
}

// Count returns the number of tokens of text in model's encoding.
func (e *Estimator) Count(model, text string) int {
	return e.count(e.codec(model), text)
}

func (e *Estimator) count(l *lazyCodec, text string) int {
	if text == "" {
		return 0
	}
	if c := l.get(); c != nil {
		h := countHash(l.id, text)
		if n, ok := e.counts.get(h); ok {
			return n
		}
		if n, err := c.Count(text); err == nil {
			e.counts.add(h, n)
			return n
		}
	}
	// No codec or a tokenizer failure: the usual four bytes a token.
	return (len(text) + 3) / 4
}

// Prompt estimates the prompt tokens of a request body of operation op:
//   - chat: the cookbook formula over messages (3 per message, the tokens
//     of its role, content and name, 1 more for a name, 3 for the reply);
//     content is a string or an array of text parts, tool calls count
//     their function name and arguments. Images, audio and tool
//     definitions are not counted.
//   - completions: prompt, a string or an array of strings or token arrays.
//   - embeddings: input, likewise; a token array counts its length.
//   - responses: instructions as a system message and input, a string (one
//     user message) or a list of messages and items, with the chat
//     overhead.
//
// It returns 0 for other operations and for a body it cannot read.
func (e *Estimator) Prompt(op, model string, body []byte) int {
	root := gjson.Parse(bytesString(body))
	if !root.IsObject() {
		return 0
	}
	c := e.codec(model)
	switch op {
	case record.OpChatCompletions:
		n := 0
		root.Get("messages").ForEach(func(_, m gjson.Result) bool {
			n += e.message(c, m)
			return true
		})
		return n + tokensReply
	case record.OpCompletions:
		return e.inputs(c, root.Get("prompt"))
	case record.OpEmbeddings:
		return e.inputs(c, root.Get("input"))
	case record.OpResponses:
		n := 0
		if in := root.Get("instructions"); in.Type == gjson.String {
			n += tokensPerMessage + e.count(c, "system") + e.count(c, in.Str)
		}
		switch in := root.Get("input"); {
		case in.Type == gjson.String:
			n += tokensPerMessage + e.count(c, "user") + e.count(c, in.Str)
		case in.IsArray():
			in.ForEach(func(_, m gjson.Result) bool {
				n += e.message(c, m)
				return true
			})
		}
		return n + tokensReply
	}
	return 0
}

// message counts one chat message, or one Responses API input item.
func (e *Estimator) message(c *lazyCodec, m gjson.Result) int {
	if !m.IsObject() {
		return 0
	}
	n := tokensPerMessage
	m.ForEach(func(k, v gjson.Result) bool {
		switch {
		case v.Type == gjson.String:
			if k.Str == "type" || k.Str == "id" || k.Str == "call_id" || k.Str == "status" {
				// Responses API item metadata, not text the model reads.
				return true
			}
			n += e.count(c, v.Str)
			if k.Str == "name" {
				n += tokensPerName
			}
		case k.Str == "content" && v.IsArray():
			v.ForEach(func(_, part gjson.Result) bool {
				if t := part.Get("text"); t.Type == gjson.String {
					n += e.count(c, t.Str)
				}
				return true
			})
		case k.Str == "tool_calls" && v.IsArray():
			v.ForEach(func(_, call gjson.Result) bool {
				f := call.Get("function")
				n += e.count(c, f.Get("name").Str) + e.count(c, f.Get("arguments").Str)
				return true
			})
		}
		return true
	})
	return n
}

// inputs counts a completions prompt or an embeddings input: a string, a
// token array, or an array of either.
func (e *Estimator) inputs(c *lazyCodec, v gjson.Result) int {
	switch {
	case v.Type == gjson.String:
		return e.count(c, v.Str)
	case !v.IsArray():
		return 0
	}
	n := 0
	v.ForEach(func(_, x gjson.Result) bool {
		switch {
		case x.Type == gjson.String:
			n += e.count(c, x.Str)
		case x.Type == gjson.Number:
			n++ // one token of a token array
		case x.IsArray():
			x.ForEach(func(_, _ gjson.Result) bool {
				n++
				return true
			})
		}
		return true
	})
	return n
}

// Estimate estimates the usage of a call whose response reported none:
// the prompt of reqBody (Prompt) and the tokens of outputText, the output
// of choice 0, times the number of choices asked for. Embeddings have no
// completion tokens.
func (e *Estimator) Estimate(op, model string, reqBody []byte, outputText string) record.Usage {
	u := record.Usage{
		PromptTokens: e.Prompt(op, model, reqBody),
		Source:       record.UsageEstimated,
	}
	if op != record.OpEmbeddings {
		n := 1
		if v := gjson.GetBytes(reqBody, "n"); v.Type == gjson.Number && v.Int() > 1 && v.Int() <= maxChoices {
			n = int(v.Int())
		}
		u.CompletionTokens = n * e.Count(model, outputText)
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}
