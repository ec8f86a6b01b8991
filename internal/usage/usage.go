// Package usage extracts token usage and response facts from Azure OpenAI
// and OpenAI request bodies, JSON responses and SSE streams, and estimates
// token counts with a real tokenizer when the upstream reports none.
package usage

import (
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/tapline/tapline/internal/record"
)

// Result is what a response said about itself. The zero value means the
// body carried none of the facts below.
type Result struct {
	// Usage is the token usage the upstream reported, with Source
	// record.UsageReported; nil when the body reported none.
	Usage *record.Usage
	// Model is the response's model: the base model ("gpt-4o-2024-08-06"),
	// not the deployment (azure-contracts.md §7.3).
	Model string
	// ResponseID is the response's id ("chatcmpl-...", "resp_...").
	ResponseID string
	// FinishReasons are the non-null choices[].finish_reason values in
	// choice order (chat, completions); for the Responses API, the
	// incomplete_details.reason if any, else the status.
	FinishReasons []string
	// ContentFilter summarises Azure's content filter verdicts; nil when the
	// body carried no filter data.
	ContentFilter *record.ContentFilter
	// Text is the assistant's output text of choice 0 (chat message content
	// or refusal, completions text) or the concatenated output_text of a
	// Responses API response, cut at the caller's limit on a UTF-8 boundary.
	Text string
	// TextBytes is the length of the whole output text before the cut, so
	// that TextBytes > len(Text) means Text was truncated.
	TextBytes int64
	// Error is the body's {"error":{"code","message"}}, if any. A code that
	// is a number or a string ("429") is kept as its text; a null code falls
	// back to the error's type.
	Error *record.Error
}

// collector accumulates the facts of one response. ParseJSON fills one from
// a whole body; a Stream fills one event at a time. It never retains the
// JSON it is given: every string it keeps is copied.
type collector struct {
	maxText int

	usage    record.Usage
	hasUsage bool
	model    string
	id       string

	finish []string // finish reasons indexed by choice index; "" for none

	filterSeen bool
	filtered   bool
	categories []string // sorted, unique

	text      []byte // append-only: bytes below len are never rewritten
	scratch   []byte // for decoding escaped strings
	textBytes int64
	textFull  bool // text reached maxText; later deltas are only counted

	err *record.Error

	status     string // Responses API status
	incomplete string // Responses API incomplete_details.reason
}

// result returns the facts collected so far. The returned Result shares no
// mutable memory with c: text is append-only, so a string over its current
// bytes stays valid while c appends more.
func (c *collector) result() Result {
	r := Result{
		Model:      c.model,
		ResponseID: c.id,
		TextBytes:  c.textBytes,
	}
	if len(c.text) > 0 {
		r.Text = unsafe.String(unsafe.SliceData(c.text), len(c.text))
	}
	if c.hasUsage {
		u := c.usage
		u.Source = record.UsageReported
		r.Usage = &u
	}
	if c.err != nil {
		e := *c.err
		r.Error = &e
	}
	for _, f := range c.finish {
		if f != "" {
			r.FinishReasons = append(r.FinishReasons, f)
		}
	}
	if r.FinishReasons == nil {
		switch {
		case c.incomplete != "":
			r.FinishReasons = []string{c.incomplete}
		case c.status != "":
			r.FinishReasons = []string{c.status}
		}
	}
	if c.filterSeen {
		r.ContentFilter = &record.ContentFilter{
			Filtered:   c.filtered,
			Categories: append([]string(nil), c.categories...),
		}
	}
	return r
}

// maxChoices bounds the finish reasons kept by choice index, so that a
// hostile "index" cannot make the collector allocate.
const maxChoices = 128

func (c *collector) setFinish(index int, reason string) {
	if index < 0 || index >= maxChoices {
		return
	}
	for len(c.finish) <= index {
		c.finish = append(c.finish, "")
	}
	if c.finish[index] == "" {
		c.finish[index] = intern(reason)
	}
}

// appendText adds s to the output text, keeping at most maxText bytes and
// never splitting a UTF-8 sequence.
func (c *collector) appendText(s string) {
	c.textBytes += int64(len(s))
	if c.textFull || s == "" {
		return
	}
	if c.text == nil {
		c.text = make([]byte, 0, min(c.maxText, 512))
	}
	room := c.maxText - len(c.text)
	if len(s) > room {
		s = s[:utf8Prefix(s, room)]
		c.textFull = true
	}
	c.text = append(c.text, s...)
}

// utf8Prefix returns the largest n <= max such that s[:n] does not end in
// the middle of a UTF-8 sequence.
func utf8Prefix(s string, max int) int {
	if max <= 0 {
		return 0
	}
	if max >= len(s) {
		return len(s)
	}
	n := max
	// Back up over at most utf8.UTFMax-1 continuation bytes to the start of
	// the sequence that straddles the cut.
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return n
}

// maxCategories bounds the categories kept from untrusted input.
const maxCategories = 32

func (c *collector) addCategory(name string) {
	if name == "" {
		return
	}
	i := 0
	for ; i < len(c.categories); i++ {
		if c.categories[i] == name {
			return
		}
		if c.categories[i] > name {
			break
		}
	}
	if len(c.categories) >= maxCategories {
		return
	}
	c.categories = append(c.categories, "")
	copy(c.categories[i+1:], c.categories[i:])
	c.categories[i] = intern(name)
}

// intern returns s copied, or a constant for the finish reasons and filter
// categories seen on nearly every response, so that the result never
// aliases the JSON being parsed and the common case costs no copy.
func intern(s string) string {
	switch s {
	case "stop":
		return "stop"
	case "length":
		return "length"
	case "content_filter":
		return "content_filter"
	case "tool_calls":
		return "tool_calls"
	case "function_call":
		return "function_call"
	case "completed":
		return "completed"
	case "incomplete":
		return "incomplete"
	case "failed":
		return "failed"
	case "max_output_tokens":
		return "max_output_tokens"
	case "hate":
		return "hate"
	case "sexual":
		return "sexual"
	case "violence":
		return "violence"
	case "self_harm":
		return "self_harm"
	case "profanity":
		return "profanity"
	case "jailbreak":
		return "jailbreak"
	case "indirect_attack":
		return "indirect_attack"
	case "protected_material_text":
		return "protected_material_text"
	case "protected_material_code":
		return "protected_material_code"
	case "custom_blocklists":
		return "custom_blocklists"
	}
	return strings.Clone(s)
}

// bytesString views b as a string without copying. The caller must not
// modify b while the string, or anything derived from it, is in use.
func bytesString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
