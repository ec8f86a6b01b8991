package usage

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/tapline/tapline/internal/record"
)

// FuzzStream feeds random bytes through a Stream in random read sizes. It
// never panics; without DropUsage the output is the input byte for byte;
// the Result, Events and Done do not depend on the read sizes nor on
// DropUsage; the DropUsage output does not depend on the read sizes.
func FuzzStream(f *testing.F) {
	// Seeds from the fixtures, kept small (the first two and the last three
	// events) so that the fuzzer's minimization stays quick.
	for _, name := range []string{fixtureStream, fixtureStreamUsage} {
		evs := events(string(readFixture(f, name)))
		seed := strings.Join(evs[:2], "") + strings.Join(evs[len(evs)-3:], "")
		f.Add([]byte(seed), []byte{0, 6, 200}, false)
	}
	f.Add([]byte("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\r\n\r\ndata: [DONE]"), []byte{1}, false)
	f.Add([]byte("event: response.output_text.delta\ndata: {\"delta\":\"hi\"}\n\nevent: response.completed\ndata: {\"response\":{\"usage\":{\"input_tokens\":1}}}\n\n"), []byte{3}, true)
	f.Add([]byte("data: {\"usage\":null,\"choices\":[{\"delta\":{\"content\":\"\\u00e9\"}}]}\n\n:x\n\ndata: a\ndata: b\n\n"), []byte{2, 0}, false)
	f.Fuzz(func(t *testing.T, data, sizes []byte, responses bool) {
		op := record.OpChatCompletions
		if responses {
			op = record.OpResponses
		}
		wrap := func(r io.Reader) io.Reader { return &sizesReader{r: r, sizes: sizes} }
		run := func(drop bool, wrap func(io.Reader) io.Reader, buf int) ([]byte, *Stream) {
			return readStream(t, op, data, StreamOptions{DropUsage: drop, MaxText: 64}, wrap, buf)
		}
		passOut, pass := run(false, wrap, 5)
		if !bytes.Equal(passOut, data) {
			t.Fatalf("output %q differs from input %q", passOut, data)
		}
		want := pass.Result()
		if len(want.Text) > 64 || !utf8.ValidString(want.Text) && utf8.ValidString(string(data)) {
			t.Fatalf("Text %q over the cap or cut inside a rune", want.Text)
		}
		dropWhole, dropW := run(true, nil, 1<<16)
		dropOut, drop := run(true, wrap, 3)
		if !bytes.Equal(dropOut, dropWhole) {
			t.Fatalf("DropUsage output depends on read sizes: %q vs %q", dropOut, dropWhole)
		}
		if len(dropOut) > len(data) {
			t.Fatalf("DropUsage output is longer than the input")
		}
		for _, s := range []*Stream{dropW, drop} {
			if got := s.Result(); !reflect.DeepEqual(want, got) {
				t.Fatalf("Result differs (-pass +drop):\n%s", cmp.Diff(want, got))
			}
			if s.Events() != pass.Events() || s.Done() != pass.Done() || !s.FirstToken().Equal(pass.FirstToken()) {
				t.Fatalf("Events, Done, FirstToken differ")
			}
		}
	})
}

// FuzzParseJSON feeds random bodies to ParseJSON. It never panics and
// keeps the text cap.
func FuzzParseJSON(f *testing.F) {
	for _, name := range []string{fixtureChat, fixtureEmbeddings, fixture400, fixture401, fixture404} {
		f.Add(recorded(f, name, "ResponseBody"), uint8(0))
	}
	f.Add(readFixture(f, fixtureResponses), uint8(3))
	f.Add([]byte(`{"choices":[{"index":0,"message":{"content":[{"type":"text","text":"a"}]}}],"error":{"code":1,"innererror":{"content_filter_result":{"x":{"filtered":true}}}}}`), uint8(0))
	ops := []string{record.OpChatCompletions, record.OpCompletions, record.OpEmbeddings, record.OpResponses, record.OpOther}
	f.Fuzz(func(t *testing.T, body []byte, op uint8) {
		r := ParseJSON(ops[int(op)%len(ops)], body, 16)
		if len(r.Text) > 16 || int64(len(r.Text)) > r.TextBytes {
			t.Fatalf("Text %q (%d bytes) over the cap or the count %d", r.Text, len(r.Text), r.TextBytes)
		}
		if r.Usage != nil && r.Usage.Source != record.UsageReported {
			t.Fatalf("Usage source %q", r.Usage.Source)
		}
		// The request side must not panic on the same bytes either.
		ParseRequest(ops[int(op)%len(ops)], body)
		if out, err := InjectIncludeUsage(body); err == nil {
			if req, err := ParseRequest(record.OpChatCompletions, out); err != nil || !req.IncludeUsage {
				t.Fatalf("InjectIncludeUsage(%q) = %q: %+v, %v", body, out, req, err)
			}
		}
	})
}

// FuzzUnescape checks the scanner's string decoding against
// encoding/json on every string encoding/json accepts.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`plain`, `a\"b\\c\/d\b\f\n\r\t`, `\u00e9\u20ac`, `\ud83d\ude00`, `\ud800x`, `\udc00\ud800`, `\u12`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if !utf8.ValidString(raw) {
			return
		}
		var want string
		if err := json.Unmarshal([]byte(`"`+raw+`"`), &want); err != nil {
			return
		}
		sc := scanner{s: `"` + raw + `"`}
		got, escaped, ok := sc.str()
		if !ok || sc.i != len(raw)+2 {
			t.Fatalf("str(%q) = %q, ok %v, at %d", raw, got, ok, sc.i)
		}
		if dec := text(got, escaped); dec != want {
			t.Fatalf("text(%q) = %q, want %q", raw, dec, want)
		}
	})
}
