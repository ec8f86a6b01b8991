package usage

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tapline/tapline/internal/record"
)

// responsesStream builds a Responses API stream from OpenAI's documented
// event names (platform.openai.com/docs/api-reference/responses-streaming).
func responsesStream(terminal string) []string {
	const resp = `"id":"resp_1","object":"response","model":"gpt-4.1-nano-2025-04-14"`
	evs := []string{
		`{"type":"response.created","sequence_number":0,"response":{` + resp + `,"status":"in_progress","usage":null}}`,
		`{"type":"response.in_progress","sequence_number":1,"response":{` + resp + `,"status":"in_progress","usage":null}}`,
		`{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","content":[],"role":"assistant"}}`,
		`{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"text":""}}`,
		`{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}`,
		`{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1","output_index":0,"content_index":0,"delta":" there\n"}`,
		`{"type":"response.output_text.done","sequence_number":6,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Hi there\n"}`,
		`{"type":"response.content_part.done","sequence_number":7,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"text":"Hi there\n"}}`,
		`{"type":"response.output_item.done","sequence_number":8,"output_index":0,"item":{"id":"msg_1","type":"message","status":"completed","content":[{"type":"output_text","annotations":[],"text":"Hi there\n"}],"role":"assistant"}}`,
		terminal,
	}
	return evs
}

// eventReader returns one SSE event per Read and moves the clock to
// epoch + i seconds before returning event i.
type eventReader struct {
	evs   []string
	i     int
	clock *time.Time
}

func (r *eventReader) Read(p []byte) (int, error) {
	if r.i >= len(r.evs) {
		return 0, io.EOF
	}
	*r.clock = epoch.Add(time.Duration(r.i) * time.Second)
	n := copy(p, r.evs[r.i])
	if n < len(r.evs[r.i]) {
		r.evs[r.i] = r.evs[r.i][n:]
	} else {
		r.i++
	}
	return n, nil
}

// TestStreamResponses reads Responses API streams.
func TestStreamResponses(t *testing.T) {
	const resp = `"id":"resp_1","object":"response","model":"gpt-4.1-nano-2025-04-14"`
	usage := `"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":2},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":14}`
	tests := []struct {
		name      string
		terminal  string
		withEvent bool // event: lines as well as data types
		want      Result
	}{
		{
			name:      "completed",
			terminal:  `{"type":"response.completed","sequence_number":9,"response":{` + resp + `,"status":"completed",` + usage + `}}`,
			withEvent: true,
			want: Result{
				Usage:         &record.Usage{PromptTokens: 9, CompletionTokens: 5, TotalTokens: 14, CachedTokens: 2, ReasoningTokens: 1, Source: record.UsageReported},
				Model:         "gpt-4.1-nano-2025-04-14",
				ResponseID:    "resp_1",
				FinishReasons: []string{"completed"},
				Text:          "Hi there\n",
				TextBytes:     9,
			},
		},
		{
			name:     "incomplete, data types only",
			terminal: `{"type":"response.incomplete","sequence_number":9,"response":{` + resp + `,"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},` + usage + `}}`,
			want: Result{
				Usage:         &record.Usage{PromptTokens: 9, CompletionTokens: 5, TotalTokens: 14, CachedTokens: 2, ReasoningTokens: 1, Source: record.UsageReported},
				Model:         "gpt-4.1-nano-2025-04-14",
				ResponseID:    "resp_1",
				FinishReasons: []string{"max_output_tokens"},
				Text:          "Hi there\n",
				TextBytes:     9,
			},
		},
		{
			name:      "failed",
			terminal:  `{"type":"response.failed","sequence_number":9,"response":{` + resp + `,"status":"failed","error":{"code":"server_error","message":"The model failed."},"usage":null}}`,
			withEvent: true,
			want: Result{
				Model:         "gpt-4.1-nano-2025-04-14",
				ResponseID:    "resp_1",
				FinishReasons: []string{"failed"},
				Error:         &record.Error{Code: "server_error", Message: "The model failed."},
				Text:          "Hi there\n",
				TextBytes:     9,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var evs []string
			for _, data := range responsesStream(tt.terminal) {
				ev := "data: " + data + "\n\n"
				if tt.withEvent {
					typ := data[len(`{"type":"`):strings.Index(data, `","`)]
					ev = "event: " + typ + "\n" + ev
				}
				evs = append(evs, ev)
			}
			in := strings.Join(evs, "")
			var clock time.Time
			s := NewStream(record.OpResponses, io.NopCloser(&eventReader{evs: evs, clock: &clock}),
				StreamOptions{MaxText: 100, DropUsage: true, Now: func() time.Time { return clock }})
			out, err := io.ReadAll(s)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != in {
				t.Error("output differs from the input (DropUsage must not touch a Responses stream)")
			}
			if diff := cmp.Diff(tt.want, s.Result()); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
			if want := epoch.Add(4 * time.Second); !s.FirstToken().Equal(want) {
				t.Errorf("FirstToken = %v, want the first delta's %v", s.FirstToken(), want)
			}
			if !s.Done() || s.Events() != len(evs) {
				t.Errorf("Done, Events = %v, %d, want true, %d", s.Done(), s.Events(), len(evs))
			}
		})
	}
	t.Run("error event", func(t *testing.T) {
		in := "event: error\ndata: {\"type\":\"error\",\"code\":\"ERR_SOMETHING\",\"message\":\"Something went wrong\",\"param\":null,\"sequence_number\":1}\n\n"
		_, s := readStream(t, record.OpResponses, []byte(in), StreamOptions{}, nil, 1<<10)
		want := &record.Error{Code: "ERR_SOMETHING", Message: "Something went wrong"}
		if diff := cmp.Diff(want, s.Result().Error); diff != "" {
			t.Errorf("Error (-want +got):\n%s", diff)
		}
		if s.Done() {
			t.Error("Done after an error event")
		}
	})
}
