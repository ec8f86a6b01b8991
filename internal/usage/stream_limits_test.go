package usage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"testing/synctest"

	"github.com/tapline/tapline/internal/record"
)

// TestStreamDoesNotWait checks that Read returns the first event while the
// upstream has sent nothing more. In a synctest bubble a Read that waited
// would deadlock, which synctest reports instead of hanging.
func TestStreamDoesNotWait(t *testing.T) {
	first := "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n"
	second := "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"}}],\"usage\":null}\n\n"
	for _, tt := range []struct {
		name  string
		drop  bool
		write string // what the upstream sends before it blocks
		want  string // what the first Read returns
	}{
		{"pass", false, first, first},
		{"pass, half of the next event", false, first + second[:10], first + second[:10]},
		{"drop", true, first, strings.Replace(first, `,"usage":null`, "", 1)},
		{"drop, half of the next event", true, first + second[:10], strings.Replace(first, `,"usage":null`, "", 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pr, pw := io.Pipe()
				release := make(chan struct{})
				all := first + second + "data: [DONE]\n\n"
				go func() {
					io.WriteString(pw, tt.write)
					<-release
					io.WriteString(pw, all[len(tt.write):])
					pw.Close()
				}()
				s := NewStream(record.OpChatCompletions, pr, StreamOptions{DropUsage: tt.drop, MaxText: 100})
				p := make([]byte, 32<<10)
				n, err := s.Read(p)
				if err != nil || string(p[:n]) != tt.want {
					t.Fatalf("first Read = %q, %v, want %q", p[:n], err, tt.want)
				}
				if s.FirstToken().IsZero() {
					t.Error("FirstToken not set after the first token passed")
				}
				close(release)
				if _, err := io.ReadAll(s); err != nil {
					t.Fatal(err)
				}
				if !s.Done() || s.Result().Text != "Hi!" {
					t.Errorf("Done, Text = %v, %q", s.Done(), s.Result().Text)
				}
			})
		})
	}
}

// genReader generates a long chat stream without holding it: a prompt
// filter chunk, n content chunks with usage null, a finish chunk, the usage
// chunk and [DONE].
type genReader struct {
	n, i int
	buf  []byte
	max  int // longest event generated
}

func (g *genReader) Read(p []byte) (int, error) {
	if len(g.buf) == 0 {
		switch {
		case g.i == 0:
			g.buf = []byte(`data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}` + "\n\n")
		case g.i <= g.n:
			g.buf = fmt.Appendf(g.buf, `data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"tok%d "},"finish_reason":null,"index":0}],"created":1,"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk","usage":null}`+"\n\n", g.i)
		case g.i == g.n+1:
			g.buf = []byte(`data: {"choices":[{"delta":{},"finish_reason":"stop","index":0}],"id":"chatcmpl-1","model":"gpt-4o","usage":null}` + "\n\n")
		case g.i == g.n+2:
			g.buf = []byte(`data: {"choices":[],"id":"chatcmpl-1","model":"gpt-4o","usage":{"completion_tokens":200000,"prompt_tokens":7,"total_tokens":200007}}` + "\n\n")
		case g.i == g.n+3:
			g.buf = []byte("data: [DONE]\n\n")
		default:
			return 0, io.EOF
		}
		g.max = max(g.max, len(g.buf))
		g.i++
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// TestStreamMemoryFlat streams 200,000 events and checks, white-box, that
// the Stream never holds more than one event, whatever the stream length.
func TestStreamMemoryFlat(t *testing.T) {
	const n = 200_000
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprintf("drop=%v", drop), func(t *testing.T) {
			g := &genReader{n: n}
			s := NewStream(record.OpChatCompletions, io.NopCloser(&chunkReader{g, 4000}), StreamOptions{DropUsage: drop, MaxText: 1000})
			p := make([]byte, 32<<10)
			var total int64
			for {
				k, err := s.Read(p)
				total += int64(k)
				if len(s.ev) > g.max || cap(s.ev) > keepEvent || len(s.out) > g.max {
					t.Fatalf("holding %d bytes (cap %d, out %d), longest event %d", len(s.ev), cap(s.ev), len(s.out), g.max)
				}
				if len(s.c.text) > 1000 || len(s.c.finish) > 1 || cap(s.joined) > 0 {
					t.Fatalf("text %d, finish %d, joined %d", len(s.c.text), len(s.c.finish), cap(s.joined))
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			r := s.Result()
			if s.Events() != n+4 || !s.Done() || r.Usage == nil || r.Usage.CompletionTokens != 200000 || len(r.Text) != 1000 {
				t.Errorf("Events %d, Done %v, Usage %+v, Text %d bytes", s.Events(), s.Done(), r.Usage, len(r.Text))
			}
			if total == 0 {
				t.Error("nothing passed")
			}
			if s.inbuf != nil {
				t.Error("the read buffer was not given back at the end of the stream")
			}
		})
	}
}

// TestStreamOversize checks that an event over 1 MiB passes through
// unparsed and counted, and that the events after it are parsed.
func TestStreamOversize(t *testing.T) {
	big := "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + strings.Repeat("x", maxEvent) + "\"}}],\"usage\":null}\n\n"
	in := "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n" +
		big +
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}],\"usage\":null}\n\n" +
		"data: [DONE]\n\n"
	for _, drop := range []bool{false, true} {
		for _, upstream := range []int{4096, 1 << 20} {
			t.Run(fmt.Sprintf("drop=%v/reads of %d", drop, upstream), func(t *testing.T) {
				out, s := readStream(t, record.OpChatCompletions, []byte(in), StreamOptions{DropUsage: drop, MaxText: 100},
					func(r io.Reader) io.Reader { return &chunkReader{r, upstream} }, 32<<10)
				want := in
				if drop {
					want = strings.Replace(in, `,"usage":null`, "", 1)
					want = strings.Replace(want, "\"b\"}}],\"usage\":null", "\"b\"}}]", 1)
				}
				if string(out) != want {
					t.Errorf("output differs (%d bytes, want %d)", len(out), len(want))
				}
				if s.Result().Text != "ab" || s.Skipped() != 1 || s.Events() != 4 || !s.Done() {
					t.Errorf("Text %q, Skipped %d, Events %d, Done %v", s.Result().Text, s.Skipped(), s.Events(), s.Done())
				}
				if cap(s.ev) > keepEvent {
					t.Errorf("event buffer of %d kept after the big event", cap(s.ev))
				}
			})
		}
	}
}

// errReader returns data, then err.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestStreamUpstreamError checks a stream cut short by an upstream error:
// the bytes that came are passed on, the error is returned, and Result has
// what was seen.
func TestStreamUpstreamError(t *testing.T) {
	boom := errors.New("connection reset")
	in := "data: {\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\ndata: {\"choices\":[{\"ind"
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprintf("drop=%v", drop), func(t *testing.T) {
			s := NewStream(record.OpChatCompletions, io.NopCloser(&errReader{[]byte(in), boom}), StreamOptions{DropUsage: drop, MaxText: 10})
			out, err := io.ReadAll(s)
			if !errors.Is(err, boom) {
				t.Errorf("err = %v, want %v", err, boom)
			}
			want := in
			if drop {
				want = strings.Replace(in, `,"usage":null`, "", 1)
			}
			if string(out) != want {
				t.Errorf("output %q, want %q", out, want)
			}
			r := s.Result()
			if r.Model != "gpt-4o" || r.Text != "a" || s.Done() {
				t.Errorf("Model %q, Text %q, Done %v", r.Model, r.Text, s.Done())
			}
		})
	}
}

// TestStreamConcurrentResult reads Result from another goroutine while the
// stream is read (run with -race).
func TestStreamConcurrentResult(t *testing.T) {
	data := readFixture(t, fixtureStreamUsage)
	s := NewStream(record.OpChatCompletions, io.NopCloser(iotest.OneByteReader(bytes.NewReader(data))), StreamOptions{DropUsage: true, MaxText: 1 << 10})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := s.Result()
			_ = strings.Count(r.Text, "e") + len(r.FinishReasons)
			_, _, _ = s.FirstToken(), s.Done(), s.Events()
		}
	})
	if _, err := io.ReadAll(s); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if s.Result().Usage == nil {
		t.Error("no usage")
	}
}

// closeRecorder records Close.
type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestStreamClose(t *testing.T) {
	c := &closeRecorder{Reader: strings.NewReader("")}
	if err := NewStream(record.OpChatCompletions, c, StreamOptions{}).Close(); err != nil || !c.closed {
		t.Errorf("Close = %v, upstream closed %v", err, c.closed)
	}
}
