package usage

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"

	"github.com/tapline/tapline/internal/record"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		op      string
		body    string
		want    Request
		wantErr string // a substring of the error; "" for none
	}{
		{
			name: "chat max_tokens",
			op:   record.OpChatCompletions,
			body: `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1024,"model":"gpt-4o"}`,
			want: Request{Model: "gpt-4o", MaxTokens: 1024, N: 1},
		},
		{
			name: "chat max_completion_tokens wins",
			op:   record.OpChatCompletions,
			body: `{"max_tokens":10,"max_completion_tokens":20,"n":3}`,
			want: Request{MaxTokens: 20, N: 3},
		},
		{
			name: "stream with include_usage",
			op:   record.OpChatCompletions,
			body: `{"stream":true,"stream_options":{"include_usage":true}}`,
			want: Request{Stream: true, IncludeUsage: true, N: 1},
		},
		{
			name: "stream without include_usage",
			op:   record.OpChatCompletions,
			body: `{"stream":true,"stream_options":{"include_usage":false}}`,
			want: Request{Stream: true, N: 1},
		},
		{
			name: "stream not a boolean",
			op:   record.OpChatCompletions,
			body: `{"stream":"yes"}`,
			want: Request{N: 1},
		},
		{
			name: "completions",
			op:   record.OpCompletions,
			body: `{"prompt":"x","max_tokens":5,"max_completion_tokens":7}`,
			want: Request{MaxTokens: 5, N: 1},
		},
		{
			name: "responses",
			op:   record.OpResponses,
			body: `{"model":"gpt-4.1-nano","input":"hi","max_output_tokens":300,"stream":true}`,
			want: Request{Model: "gpt-4.1-nano", Stream: true, MaxTokens: 300, N: 1},
		},
		{
			name:    "syntax error",
			op:      record.OpChatCompletions,
			body:    `{"messages": [}`,
			wantErr: "invalid character '}' looking for beginning of value at byte 15",
		},
		{name: "empty", op: record.OpEmbeddings, body: " ", wantErr: "the body is empty"},
		{name: "array", op: record.OpResponses, body: `[1]`, wantErr: "the body is a JSON array"},
		{name: "string", op: record.OpCompletions, body: `"x"`, wantErr: "the body is a JSON string"},
		{
			name: "audio multipart",
			op:   record.OpAudio,
			body: "--boundary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n...",
			want: Request{N: 1},
		},
		{
			name: "images JSON",
			op:   record.OpImages,
			body: `{"prompt":"a cat","model":"dall-e-3","n":1}`,
			want: Request{Model: "dall-e-3", N: 1},
		},
		{name: "models, no body", op: record.OpModels, body: ``, want: Request{N: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.op, []byte(tt.body))
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidJSON) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrInvalidJSON with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRequest (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRequestFixtures(t *testing.T) {
	tests := []struct {
		file string
		want Request
	}{
		{fixtureChat, Request{Model: "gpt-4-0613", MaxTokens: 1024, N: 1}},
		{fixtureStreamUsageX, Request{Model: "gpt-4o-0806", Stream: true, IncludeUsage: true, MaxTokens: 512, N: 1}},
		{fixture400, Request{Model: "gpt-4", MaxTokens: 1921, N: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseRequest(record.OpChatCompletions, recorded(t, tt.file, "RequestBody"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRequest (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInjectIncludeUsage(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "no stream_options",
			in:   `{"model":"gpt-4o","stream":true}`,
			want: `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}`,
		},
		{
			name: "no stream_options, pretty",
			in:   "{\n  \"stream\": true,\n  \"messages\": [ {\"role\": \"user\"} ]\n}\n",
			want: "{\n  \"stream\": true,\n  \"messages\": [ {\"role\": \"user\"} ],\"stream_options\":{\"include_usage\":true}\n}\n",
		},
		{
			name: "empty object",
			in:   `{ }`,
			want: `{"stream_options":{"include_usage":true} }`,
		},
		{
			name: "stream_options with other members",
			in:   `{"stream":true,"stream_options":{"chunk_size":5, "x":[1]},"n":1}`,
			want: `{"stream":true,"stream_options":{"chunk_size":5, "x":[1],"include_usage":true},"n":1}`,
		},
		{
			name: "empty stream_options",
			in:   `{"stream_options":{},"stream":true}`,
			want: `{"stream_options":{"include_usage":true},"stream":true}`,
		},
		{
			name: "include_usage false",
			in:   `{"stream_options": {"include_usage" : false, "y":2}}`,
			want: `{"stream_options": {"include_usage" : true, "y":2}}`,
		},
		{
			name: "include_usage null",
			in:   `{"stream_options":{"include_usage":null}}`,
			want: `{"stream_options":{"include_usage":true}}`,
		},
		{
			name: "stream_options null",
			in:   `{"stream":true,"stream_options":null}`,
			want: `{"stream":true,"stream_options":{"include_usage":true}}`,
		},
		{
			name: "already true",
			in:   `{"stream":true,"stream_options":{"include_usage":true}}`,
			want: `{"stream":true,"stream_options":{"include_usage":true}}`,
		},
		{
			name: "escapes and unicode kept",
			in:   `{"messages":[{"content":"caf\u00e9 \"q\" é"}],"stream":true}`,
			want: `{"messages":[{"content":"caf\u00e9 \"q\" é"}],"stream":true,"stream_options":{"include_usage":true}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			got, err := InjectIncludeUsage(in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("InjectIncludeUsage (-want +got):\n%s", diff)
			}
			if string(in) != tt.in {
				t.Error("the input was modified")
			}
			if !gjson.ValidBytes(got) {
				t.Error("result is not valid JSON")
			}
			if r, err := ParseRequest(record.OpChatCompletions, got); err != nil || !r.IncludeUsage {
				t.Errorf("ParseRequest(result) = %+v, %v, want IncludeUsage", r, err)
			}
		})
	}
	t.Run("fixture request", func(t *testing.T) {
		body := recorded(t, fixtureChat, "RequestBody")
		got, err := InjectIncludeUsage(body)
		if err != nil {
			t.Fatal(err)
		}
		// The recorded body is indented: the member goes right after the
		// last value, before the newline and indentation of the brace.
		i := strings.LastIndex(string(body), "\n")
		want := string(body[:i]) + `,"stream_options":{"include_usage":true}` + string(body[i:])
		if diff := cmp.Diff(want, string(got)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	for _, bad := range []string{``, `{"a":`, `[]`, `null`} {
		t.Run("invalid "+bad, func(t *testing.T) {
			if _, err := InjectIncludeUsage([]byte(bad)); !errors.Is(err, ErrInvalidJSON) {
				t.Errorf("err = %v, want ErrInvalidJSON", err)
			}
		})
	}
}
