package usage

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/tapline/tapline/internal/record"
)

// ErrInvalidJSON means a request body that must be a JSON object is not.
// The gateway answers it with 400; the wrapping error says where.
var ErrInvalidJSON = errors.New("request body is not a valid JSON object")

// Request is what the gateway needs to know about a request body before
// forwarding it. The token estimate of the prompt is Estimator.Prompt,
// which reads the body itself only when an estimate is needed.
type Request struct {
	// Model is the body's "model": the deployment on the v1 and Responses
	// paths, often absent on the classic deployment paths.
	Model string
	// Stream is "stream": true.
	Stream bool
	// IncludeUsage is "stream_options": {"include_usage": true}.
	IncludeUsage bool
	// MaxTokens is the output token cap the caller asked for:
	// max_completion_tokens, else max_tokens (chat); max_tokens
	// (completions); max_output_tokens (responses). 0 when unset.
	MaxTokens int
	// N is the number of choices asked for ("n"), at least 1.
	N int
}

// jsonOps are the operations whose body must be a JSON object. The others
// may be multipart (audio, image edits) or have no body.
var jsonOps = []string{record.OpChatCompletions, record.OpCompletions, record.OpEmbeddings, record.OpResponses}

// ParseRequest reads a request body of operation op (one of the record.Op*
// constants). For chat, completions, embeddings and responses the body must
// be a JSON object: anything else is an error wrapping ErrInvalidJSON that
// says where the syntax error is. For other operations a body that is not a
// JSON object (multipart audio, no body) gives a Request with only N set,
// and no error.
func ParseRequest(op string, body []byte) (Request, error) {
	r := Request{N: 1}
	strict := slices.Contains(jsonOps, op)
	js := bytesString(body)
	if !gjson.Valid(js) {
		if !strict {
			return r, nil
		}
		return Request{}, syntaxError(body)
	}
	root := gjson.Parse(js)
	if !root.IsObject() {
		if !strict {
			return r, nil
		}
		return Request{}, fmt.Errorf("%w: the body is a JSON %s", ErrInvalidJSON, kind(root))
	}
	var maxTokens, maxCompletion, maxOutput int
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			if v.Type == gjson.String {
				r.Model = strings.Clone(v.Str)
			}
		case "stream":
			r.Stream = v.Type == gjson.True
		case "stream_options":
			r.IncludeUsage = v.IsObject() && v.Get("include_usage").Type == gjson.True
		case "max_tokens":
			maxTokens = toInt(v)
		case "max_completion_tokens":
			maxCompletion = toInt(v)
		case "max_output_tokens":
			maxOutput = toInt(v)
		case "n":
			if n := toInt(v); n > 1 {
				r.N = n
			}
		}
		return true
	})
	switch op {
	case record.OpResponses:
		r.MaxTokens = maxOutput
	case record.OpChatCompletions:
		r.MaxTokens = maxCompletion
		if r.MaxTokens == 0 {
			r.MaxTokens = maxTokens
		}
	default:
		r.MaxTokens = maxTokens
	}
	return r, nil
}

// syntaxError says where body stops being JSON. It runs only on the error
// path, so the standard library's slower but precise scanner is fine here.
func syntaxError(body []byte) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return fmt.Errorf("%w: the body is empty", ErrInvalidJSON)
	}
	var v any
	err := json.Unmarshal(body, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: %s at byte %d", ErrInvalidJSON, se.Error(), se.Offset)
	}
	return ErrInvalidJSON
}

func kind(v gjson.Result) string {
	switch v.Type {
	case gjson.String:
		return "string"
	case gjson.Number:
		return "number"
	case gjson.True, gjson.False:
		return "boolean"
	case gjson.Null:
		return "null"
	}
	return "array"
}

// InjectIncludeUsage returns body with stream_options.include_usage set to
// true, so that a stream reports its usage in a last chunk. Every other
// byte of the caller's JSON is kept: existing stream_options members stay,
// a false include_usage is replaced, a missing one is added after the last
// member. A body that already asks for usage is returned as it is. The
// result is a new slice unless it is body itself.
//
// Only chat and completions streams accept stream_options; the Responses
// API always reports usage in response.completed.
func InjectIncludeUsage(body []byte) ([]byte, error) {
	js := bytesString(body)
	if !gjson.Valid(js) {
		return nil, syntaxError(body)
	}
	root := gjson.Parse(js)
	if !root.IsObject() {
		return nil, fmt.Errorf("%w: the body is a JSON %s", ErrInvalidJSON, kind(root))
	}
	opts := root.Get("stream_options")
	if !opts.IsObject() {
		if opts.Exists() { // null or not an object: replace the value
			return splice(body, opts.Index, opts.Index+len(opts.Raw), `{"include_usage":true}`), nil
		}
		return addMember(body, root, `"stream_options":{"include_usage":true}`), nil
	}
	inc := opts.Get("include_usage")
	switch {
	case inc.Type == gjson.True:
		return body, nil
	case inc.Exists():
		return splice(body, inc.Index, inc.Index+len(inc.Raw), "true"), nil
	}
	return addMember(body, opts, `"include_usage":true`), nil
}

// addMember inserts member into obj, a JSON object within body, right
// after its last member (or its opening brace when it has none).
func addMember(body []byte, obj gjson.Result, member string) []byte {
	at, comma := obj.Index+1, false
	obj.ForEach(func(_, v gjson.Result) bool {
		at, comma = v.Index+len(v.Raw), true
		return true
	})
	if comma {
		member = "," + member
	}
	return splice(body, at, at, member)
}

// splice returns a copy of body with body[from:to] replaced by s.
func splice(body []byte, from, to int, s string) []byte {
	out := make([]byte, 0, len(body)-(to-from)+len(s))
	out = append(out, body[:from]...)
	out = append(out, s...)
	return append(out, body[to:]...)
}

// toInt returns a JSON number as an int, 0 for anything else.
func toInt(v gjson.Result) int {
	if v.Type != gjson.Number {
		return 0
	}
	return int(v.Int())
}
