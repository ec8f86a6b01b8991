package chargeback

import (
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/store"
)

func TestWriteCSV(t *testing.T) {
	tests := []struct {
		name string
		by   []string
		rows []store.UsageRow
		want string
	}{
		{"empty result is the header alone", []string{"principal"}, nil,
			"principal,requests,errors,prompt_tokens,completion_tokens,total_tokens,cached_tokens,reasoning_tokens,estimated\n"},
		{"keys then figures in Columns order", []string{"principal", "deployment"},
			[]store.UsageRow{{Keys: []string{"key:build-bot", "gpt-4o"}, Requests: 1, Errors: 2, PromptTokens: 3,
				CompletionTokens: 4, TotalTokens: 5, CachedTokens: 6, ReasoningTokens: 7, Estimated: 8}},
			"principal,deployment,requests,errors,prompt_tokens,completion_tokens,total_tokens,cached_tokens,reasoning_tokens,estimated\n" +
				"key:build-bot,gpt-4o,1,2,3,4,5,6,7,8\n"},
		{"keys quoted as RFC 4180 says", []string{"principal"},
			[]store.UsageRow{{Keys: []string{`a "b", c`}, Requests: 1}},
			"principal,requests,errors,prompt_tokens,completion_tokens,total_tokens,cached_tokens,reasoning_tokens,estimated\n" +
				`"a ""b"", c",1,0,0,0,0,0,0,0` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := WriteCSV(&b, tt.by, tt.rows); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("WriteCSV:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
	if Columns[Total] != "total_tokens" {
		t.Errorf("Columns[Total] = %q", Columns[Total])
	}
}
