package usage

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/tapline/tapline/internal/record"
)

// dropUsage is what the include-usage fixture would have been without
// include_usage, computed without the package: the usage chunk gone, every
// "usage":null member gone, nothing else changed.
func dropUsage(t *testing.T, data string) string {
	t.Helper()
	var b strings.Builder
	dropped := 0
	for _, ev := range events(data) {
		if strings.Contains(ev, `"usage":{`) {
			dropped++
			continue
		}
		b.WriteString(strings.ReplaceAll(ev, `,"usage":null`, ""))
	}
	if dropped != 1 {
		t.Fatalf("found %d usage chunks, want 1", dropped)
	}
	return b.String()
}

// TestStreamReadSizes checks that output and Result do not depend on how
// the upstream and the caller slice the bytes.
func TestStreamReadSizes(t *testing.T) {
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
		buf  int
	}{
		{"whole", nil, 64 << 10},
		{"1 byte upstream", iotest.OneByteReader, 64 << 10},
		{"7 bytes upstream", func(r io.Reader) io.Reader { return &chunkReader{r, 7} }, 64 << 10},
		{"half reads upstream", iotest.HalfReader, 64 << 10},
		{"data with EOF", iotest.DataErrReader, 64 << 10},
		{"1 byte caller", nil, 1},
		{"7 bytes caller", nil, 7},
		{"7 bytes upstream, 3 bytes caller", func(r io.Reader) io.Reader { return &chunkReader{r, 7} }, 3},
	}
	for _, file := range []string{fixtureStream, fixtureStreamUsage} {
		data := readFixture(t, file)
		for _, drop := range []bool{false, true} {
			opts := StreamOptions{DropUsage: drop, MaxText: 1 << 20}
			wantOut, ws := readStream(t, record.OpChatCompletions, data, opts, nil, 64<<10)
			want := ws.Result()
			for _, rd := range readers {
				t.Run(fmt.Sprintf("%s/drop=%v/%s", file, drop, rd.name), func(t *testing.T) {
					out, s := readStream(t, record.OpChatCompletions, data, opts, rd.wrap, rd.buf)
					if !bytes.Equal(out, wantOut) {
						t.Errorf("output differs from a whole read:\n%s", cmp.Diff(string(wantOut), string(out)))
					}
					if diff := cmp.Diff(want, s.Result()); diff != "" {
						t.Errorf("Result differs from a whole read (-want +got):\n%s", diff)
					}
					if s.Events() != ws.Events() || s.Done() != ws.Done() {
						t.Errorf("Events, Done = %d, %v, want %d, %v", s.Events(), s.Done(), ws.Events(), ws.Done())
					}
				})
			}
			t.Run(fmt.Sprintf("%s/drop=%v/iotest.TestReader", file, drop), func(t *testing.T) {
				s := NewStream(record.OpChatCompletions, io.NopCloser(iotest.HalfReader(bytes.NewReader(data))), opts)
				if err := iotest.TestReader(s, wantOut); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// TestStreamDropUsage checks that with DropUsage the caller gets exactly
// the stream it would have got without include_usage, while the Result
// still has the usage.
func TestStreamDropUsage(t *testing.T) {
	data := readFixture(t, fixtureStreamUsage)
	want := dropUsage(t, string(data))
	for _, rd := range []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", nil},
		{"1 byte", iotest.OneByteReader},
		{"7 bytes", func(r io.Reader) io.Reader { return &chunkReader{r, 7} }},
	} {
		t.Run(rd.name, func(t *testing.T) {
			out, s := readStream(t, record.OpChatCompletions, data, StreamOptions{DropUsage: true, MaxText: 1 << 20}, rd.wrap, 4096)
			if diff := cmp.Diff(want, string(out)); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			wantUsage := &record.Usage{PromptTokens: 22, CompletionTokens: 28, TotalTokens: 50, Source: record.UsageReported}
			if diff := cmp.Diff(wantUsage, s.Result().Usage); diff != "" {
				t.Errorf("Usage (-want +got):\n%s", diff)
			}
			if strings.Contains(string(out), `"usage"`) {
				t.Error(`output still mentions "usage"`)
			}
			if !s.Done() {
				t.Error("Done = false")
			}
		})
	}
	t.Run("no include_usage", func(t *testing.T) {
		data := readFixture(t, fixtureStream)
		out, _ := readStream(t, record.OpChatCompletions, data, StreamOptions{DropUsage: true}, nil, 4096)
		if !bytes.Equal(out, data) {
			t.Errorf("a stream without usage changed:\n%s", cmp.Diff(string(data), string(out)))
		}
	})
}

// TestStreamDropCases checks DropUsage on hand-made chunks: where the usage
// member sits, line endings, and what is left alone.
func TestStreamDropCases(t *testing.T) {
	const usage = `{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}`
	tests := []struct {
		name, in, want string
	}{
		{
			name: "last member",
			in:   "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n",
			want: "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
		},
		{
			name: "first member",
			in:   "data: {\"usage\":null, \"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
			want: "data: { \"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
		},
		{
			name: "middle member with spaces",
			in:   "data: {\"id\":\"x\" , \"usage\" : null ,\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
			// The comma before the member and the member go; the spaces
			// around them stay.
			want: "data: {\"id\":\"x\"  ,\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
		},
		{
			name: "CRLF",
			in:   "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\r\n\r\ndata: {\"choices\":[],\"usage\":" + usage + "}\r\n\r\ndata: [DONE]\r\n\r\n",
			want: "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n",
		},
		{
			name: "usage chunk without final blank line",
			in:   "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":" + usage + "}",
			want: "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
		},
		{
			name: "prompt filter chunk kept",
			in:   "data: {\"choices\":[],\"prompt_filter_results\":[]}\n\n",
			want: "data: {\"choices\":[],\"prompt_filter_results\":[]}\n\n",
		},
		{
			name: "data over two lines left alone",
			in:   "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\ndata: \"usage\":null}\n\n",
			want: "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\ndata: \"usage\":null}\n\n",
		},
		{
			name: "invalid JSON left alone",
			in:   "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null,}\n\n",
			want: "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null,}\n\n",
		},
		{
			name: "comments and other events kept",
			in:   ": keep-alive\n\nevent: ping\ndata: {}\n\n",
			want: ": keep-alive\n\nevent: ping\ndata: {}\n\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, n := range []int{1, 5, 1 << 10} {
				out, s := readStream(t, record.OpChatCompletions, []byte(tt.in), StreamOptions{DropUsage: true, MaxText: 100},
					func(r io.Reader) io.Reader { return &chunkReader{r, n} }, 1<<10)
				if diff := cmp.Diff(tt.want, string(out)); diff != "" {
					t.Errorf("reads of %d: output (-want +got):\n%s", n, diff)
				}
				if strings.Contains(tt.in, usage) && s.Result().Usage == nil {
					t.Errorf("reads of %d: no usage", n)
				}
			}
		})
	}
}

// TestStreamFraming checks the SSE framing rules on hand-made streams.
func TestStreamFraming(t *testing.T) {
	const chunk = `{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":%s}]}`
	delta := func(s string) string { return fmt.Sprintf(chunk, s, "null") }
	stop := fmt.Sprintf(chunk, "", `"stop"`)
	tests := []struct {
		name       string
		in         string
		wantText   string
		wantEvents int
		wantDone   bool
	}{
		{
			name:       "LF",
			in:         "data: " + delta("a") + "\n\ndata: " + delta("b") + "\n\ndata: " + stop + "\n\ndata: [DONE]\n\n",
			wantText:   "ab",
			wantEvents: 4, wantDone: true,
		},
		{
			name:       "CRLF",
			in:         "data: " + delta("a") + "\r\n\r\ndata: " + delta("b") + "\r\n\r\ndata: [DONE]\r\n\r\n",
			wantText:   "ab",
			wantEvents: 3, wantDone: true,
		},
		{
			name:       "data over several lines",
			in:         "data: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n",
			wantText:   "a",
			wantEvents: 2, wantDone: true,
		},
		{
			name:       "no space after colon, event lines and comments",
			in:         ": hello\n\nevent: message\ndata:" + delta("a") + "\nid: 1\nretry: 10\n\n:comment\ndata:[DONE]\n\n",
			wantText:   "a",
			wantEvents: 2, wantDone: true,
		},
		{
			name:       "missing final blank line",
			in:         "data: " + delta("a") + "\n\ndata: [DONE]",
			wantText:   "a",
			wantEvents: 2, wantDone: true,
		},
		{
			name:       "missing final newline on a chunk",
			in:         "data: " + delta("a") + "\n\ndata: " + delta("b"),
			wantText:   "ab",
			wantEvents: 2,
		},
		{
			name:       "leading and extra blank lines",
			in:         "\n\r\ndata: " + delta("a") + "\n\n\n\ndata: [DONE]\n\n\n",
			wantText:   "a",
			wantEvents: 2, wantDone: true,
		},
		{
			name:       "not JSON",
			in:         "data: hello\n\ndata: {\"choices\":[{\n\n",
			wantEvents: 2,
		},
		{
			name: "cut short",
			in:   "data: " + delta("a") + "\n\ndata: " + delta("b")[:20],
			// The partial event is parsed at EOF but is not JSON enough.
			wantText:   "a",
			wantEvents: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, drop := range []bool{false, true} {
				out, s := readStream(t, record.OpChatCompletions, []byte(tt.in), StreamOptions{DropUsage: drop, MaxText: 100}, iotest.OneByteReader, 3)
				if string(out) != tt.in {
					t.Errorf("drop=%v: output %q, want the input", drop, out)
				}
				if got := s.Result().Text; got != tt.wantText {
					t.Errorf("drop=%v: Text = %q, want %q", drop, got, tt.wantText)
				}
				if s.Events() != tt.wantEvents || s.Done() != tt.wantDone {
					t.Errorf("drop=%v: Events, Done = %d, %v, want %d, %v", drop, s.Events(), s.Done(), tt.wantEvents, tt.wantDone)
				}
			}
		})
	}
}

// TestStreamChunks checks what is read from chat and completions chunks.
func TestStreamChunks(t *testing.T) {
	tests := []struct {
		name      string
		op        string
		in        string
		maxText   int
		want      Result
		wantFirst bool
	}{
		{
			name: "completions text",
			op:   record.OpCompletions,
			in: `data: {"id":"cmpl-1","model":"gpt-35-turbo-instruct","choices":[{"index":0,"text":"Hel","finish_reason":null}]}` + "\n\n" +
				`data: {"id":"cmpl-1","model":"gpt-35-turbo-instruct","choices":[{"index":0,"text":"lo","finish_reason":"length"}]}` + "\n\n",
			maxText: 100,
			want: Result{Model: "gpt-35-turbo-instruct", ResponseID: "cmpl-1", FinishReasons: []string{"length"},
				Text: "Hello", TextBytes: 5},
			wantFirst: true,
		},
		{
			name: "tool call only",
			op:   record.OpChatCompletions,
			in: `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}` + "\n\n",
			maxText:   100,
			want:      Result{FinishReasons: []string{"tool_calls"}},
			wantFirst: true,
		},
		{
			name:    "role chunk is not a token",
			op:      record.OpChatCompletions,
			in:      `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}` + "\n\n",
			maxText: 100,
			want:    Result{},
		},
		{
			name: "two choices",
			op:   record.OpChatCompletions,
			in: `data: {"choices":[{"index":1,"delta":{"content":"B"}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"content":"A"}}]}` + "\n\n" +
				`data: {"choices":[{"index":1,"delta":{},"finish_reason":"length"}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n",
			maxText:   100,
			want:      Result{FinishReasons: []string{"stop", "length"}, Text: "A", TextBytes: 1},
			wantFirst: true,
		},
		{
			name: "content filter on output",
			op:   record.OpChatCompletions,
			in: `data: {"choices":[],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"jailbreak":{"filtered":false,"detected":true}}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{},"finish_reason":"content_filter","content_filter_results":{"sexual":{"filtered":true,"severity":"medium"}}}]}` + "\n\n",
			maxText: 100,
			want: Result{FinishReasons: []string{"content_filter"},
				ContentFilter: &record.ContentFilter{Filtered: true, Categories: []string{"jailbreak", "sexual"}}},
		},
		{
			name:    "error mid-stream",
			op:      record.OpChatCompletions,
			in:      `data: {"error":{"code":"server_error","message":"boom"}}` + "\n\n",
			maxText: 100,
			want:    Result{Error: &record.Error{Code: "server_error", Message: "boom"}},
		},
		{
			name:      "text cap on a UTF-8 boundary",
			op:        record.OpChatCompletions,
			in:        `data: {"choices":[{"index":0,"delta":{"content":"h\u00e9"}}]}` + "\n\n" + `data: {"choices":[{"index":0,"delta":{"content":"llo"}}]}` + "\n\n",
			maxText:   2,
			want:      Result{Text: "h", TextBytes: 6},
			wantFirst: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, s := readStream(t, tt.op, []byte(tt.in), StreamOptions{MaxText: tt.maxText}, nil, 1<<10)
			if diff := cmp.Diff(tt.want, s.Result()); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
			if got := !s.FirstToken().IsZero(); got != tt.wantFirst {
				t.Errorf("FirstToken set = %v, want %v", got, tt.wantFirst)
			}
		})
	}
}
