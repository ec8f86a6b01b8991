package usage

import (
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/record"
)

// eventsReader returns one SSE event per Read, as Azure flushes them.
type eventsReader struct {
	evs []string
	i   int
}

func (r *eventsReader) Read(p []byte) (int, error) {
	if r.i >= len(r.evs) {
		return 0, io.EOF
	}
	n := copy(p, r.evs[r.i])
	r.i++
	return n, nil
}

// BenchmarkStream passes the include-usage fixture (33 events, 19 KB)
// through a Stream, one event per upstream read, into a 32 KiB buffer as
// httputil.ReverseProxy copies. "baseline" is the same copy without a
// Stream; the difference is the parsing overhead. ns/event and
// allocs/event are per SSE event.
func BenchmarkStream(b *testing.B) {
	data := readFixture(b, fixtureStreamUsage)
	evs := events(string(data))
	buf := make([]byte, 32<<10)
	for _, bc := range []struct {
		name   string
		stream bool
		drop   bool
	}{
		{"baseline", false, false},
		{"pass", true, false},
		{"drop", true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			for b.Loop() {
				var r io.Reader = &eventsReader{evs: evs}
				if bc.stream {
					r = NewStream(record.OpChatCompletions, io.NopCloser(r), StreamOptions{DropUsage: bc.drop, MaxText: 4096})
				}
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
					b.Fatal(err)
				}
				if s, ok := r.(*Stream); ok && s.Result().Usage == nil {
					b.Fatal("no usage")
				}
			}
			runtime.ReadMemStats(&ms1)
			n := float64(b.N * len(evs))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/event")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/n, "allocs/event")
		})
	}
}

func BenchmarkParseJSON(b *testing.B) {
	for _, bc := range []struct{ name, file, op string }{
		{"chat", fixtureChat, record.OpChatCompletions},
		{"embeddings", fixtureEmbeddings, record.OpEmbeddings},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := recorded(b, bc.file, "ResponseBody")
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if r := ParseJSON(bc.op, body, 4096); r.Usage == nil {
					b.Fatal("no usage")
				}
			}
		})
	}
	b.Run("responses", func(b *testing.B) {
		body := readFixture(b, fixtureResponses)
		b.ReportAllocs()
		for b.Loop() {
			ParseJSON(record.OpResponses, body, 4096)
		}
	})
}

func BenchmarkParseRequest(b *testing.B) {
	body := recorded(b, fixtureStreamUsageX, "RequestBody")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(record.OpChatCompletions, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInjectIncludeUsage(b *testing.B) {
	body := recorded(b, fixtureChat, "RequestBody")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := InjectIncludeUsage(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEstimatorPrompt counts a chat prompt's tokens: the same body
// every time ("repeated": the count cache answers, as for a system prompt
// or a conversation's earlier turns), and a body whose user message is new
// every time ("unique": the tokenizer runs on it).
func BenchmarkEstimatorPrompt(b *testing.B) {
	fixture := recorded(b, fixtureChat, "RequestBody")
	long := `The quick brown fox jumps over the lazy dog. `
	for _, bc := range []struct {
		name string
		body func(i int) []byte
	}{
		{"fixture/repeated", func(int) []byte { return fixture }},
		{"4.5KB/repeated", func(int) []byte { return chatOf(strings.Repeat(long, 100)) }},
		{"4.5KB/unique", func(i int) []byte { return chatOf(strconv.Itoa(i) + strings.Repeat(long, 100)) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			estimator.Prompt(record.OpChatCompletions, "gpt-4o", bc.body(-1)) // load the encoding
			bodies := make([][]byte, 1024)
			for i := range bodies {
				bodies[i] = bc.body(i)
			}
			b.SetBytes(int64(len(bodies[0])))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				body := bodies[i%len(bodies)]
				if i >= len(bodies) && bc.name == "4.5KB/unique" {
					body = bc.body(i) // past the first round, make a new one
				}
				estimator.Prompt(record.OpChatCompletions, "gpt-4o", body)
				i++
			}
		})
	}
}

func chatOf(text string) []byte {
	return []byte(`{"messages":[{"role":"user","content":"` + text + `"}]}`)
}

// BenchmarkChunk parses one content chunk: of the include-usage fixture
// (logprobs on, 593 bytes) and of the plain stream fixture (327 bytes).
// "floor" only skips the chunk's JSON in one pass, the least any parse
// must do.
func BenchmarkChunk(b *testing.B) {
	logprobs := events(string(readFixture(b, fixtureStreamUsage)))[5]
	plain := events(string(readFixture(b, fixtureStream)))[5]
	for _, bc := range []struct {
		name, ev string
		floor    bool
	}{
		{"logprobs", logprobs, false},
		{"logprobs floor", logprobs, true},
		{"plain", plain, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			js := strings.TrimSuffix(strings.TrimPrefix(bc.ev, "data: "), "\n\n")
			b.SetBytes(int64(len(js)))
			b.ReportAllocs()
			c := collector{maxText: 1 << 20}
			for b.Loop() {
				if bc.floor {
					sc := scanner{s: js}
					sc.skip()
					continue
				}
				c.text = c.text[:0]
				c.chunk(js)
			}
		})
	}
}
