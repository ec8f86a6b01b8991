package usage

import (
	"github.com/tapline/tapline/internal/record"
)

// ParseJSON reads the facts of a non-streamed response body: usage, model,
// id, finish reasons, content filter verdicts, output text (at most maxText
// bytes; 0 keeps none) and error. op is one of the record.Op* constants and
// selects the Responses API shape for record.OpResponses; every other op is
// read as chat, completions, embeddings or an error envelope, whichever
// members the body has. It never fails and never panics: a body that is not
// JSON, or not of the expected shape, gives whatever could be read before
// the first syntax error. The Result does not alias body.
func ParseJSON(op string, body []byte, maxText int) Result {
	c := collector{maxText: maxText}
	js := bytesString(body)
	if op == record.OpResponses {
		c.responseObject(&scanner{s: js}, true)
	} else {
		c.chunk(js)
	}
	return c.result()
}
