package usage

import (
	"hash/maphash"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
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
	counts *lru.Cache[countKey, int] // nil: no cache
}

// countKey names a text counted in one encoding by its length and a 64-bit
// seeded hash, so the cache holds no prompt text. Two texts of one length
// colliding would only misjudge one admission estimate.
type countKey struct {
	codec tokenizer.Codec
	n     int
	h     uint64
}

// countCacheSize is how many texts' counts an Estimator remembers. Callers
// repeat most of what they send: a system prompt on every call, and the
// whole conversation so far on every turn of a chat, which would otherwise
// be tokenized again each time (the tokenizer is the dearest step of a
// limited call).
const countCacheSize = 16384

var countSeed = maphash.MakeSeed()

type lazyCodec struct {
	enc   tokenizer.Encoding
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
	counts, _ := lru.New[countKey, int](countCacheSize) // errors only for a size <= 0
	return &Estimator{
		o200k:  lazyCodec{enc: tokenizer.O200kBase},
		cl100k: lazyCodec{enc: tokenizer.Cl100kBase},
		counts: counts,
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

func (e *Estimator) codec(model string) tokenizer.Codec {
	if encodingFor(model) == tokenizer.Cl100kBase {
		return e.cl100k.get()
	}
	return e.o200k.get()
}

// Count returns the number of tokens of text in model's encoding.
func (e *Estimator) Count(model, text string) int {
	return e.count(e.codec(model), text)
}

func (e *Estimator) count(c tokenizer.Codec, text string) int {
	if text == "" {
		return 0
	}
	if c != nil {
		key := countKey{codec: c, n: len(text), h: maphash.String(countSeed, text)}
		if n, ok := e.counts.Get(key); ok {
			return n
		}
		if n, err := c.Count(text); err == nil {
			e.counts.Add(key, n)
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
func (e *Estimator) message(c tokenizer.Codec, m gjson.Result) int {
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
func (e *Estimator) inputs(c tokenizer.Codec, v gjson.Result) int {
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
