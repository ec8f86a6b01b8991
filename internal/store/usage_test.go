package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

// usageFixture stores six gateway calls over two days and one activity
// record, which Usage must ignore.
func usageFixture(t *testing.T) *Store {
	t.Helper()
	s := openStore(t, Config{})
	day1, day2 := t0, t0.Add(24*time.Hour)
	bot := record.Principal{Kind: record.PrincipalKey, KeyName: "bot"}
	alice := record.Principal{Kind: record.PrincipalEntraUser, UPN: "alice@contoso.com", OID: "oid-alice"}
	calls := []struct {
		id string
		at time.Time
		g  record.GatewayRequest
	}{
		{"r1", day1, record.GatewayRequest{
			Principal: bot, Deployment: "gpt-4o", Operation: record.OpChatCompletions, Backend: "eastus",
			ModelRequested: "gpt-4o", ModelReturned: "gpt-4o-2024-11-20", Status: 200, State: record.StateCompleted,
			Usage: &record.Usage{PromptTokens: 10, CompletionTokens: 20, TotalTokens: 30, CachedTokens: 5, Source: record.UsageReported},
		}},
		{"r2", day2, record.GatewayRequest{
			Principal: bot, Deployment: "gpt-4o", Operation: record.OpChatCompletions, Backend: "westus",
			ModelRequested: "gpt-4o", Status: 200, State: record.StateInterrupted,
			Usage: &record.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3, Source: record.UsageEstimated},
		}},
		{"r3", day1.Add(time.Hour), record.GatewayRequest{
			Principal: bot, Deployment: "embed", Operation: record.OpEmbeddings, Backend: "eastus",
			ModelRequested: "text-embedding-3-small", Status: 200, State: record.StateCompleted,
			Usage: &record.Usage{PromptTokens: 7, TotalTokens: 7, Source: record.UsageReported},
		}},
		{"r4", day1.Add(2 * time.Hour), record.GatewayRequest{
			Principal: alice, Deployment: "gpt-4o", Operation: record.OpResponses, Backend: "eastus",
			ModelRequested: "o3", Status: 200, State: record.StateCompleted,
			Usage: &record.Usage{PromptTokens: 100, CompletionTokens: 50, TotalTokens: 150, ReasoningTokens: 40, Source: record.UsageReported},
		}},
		{"r5", day2.Add(time.Hour), record.GatewayRequest{
			Principal: alice, Deployment: "gpt-4o", Operation: record.OpChatCompletions,
			ModelRequested: "gpt-4o", Status: 429, State: record.StateDenied,
		}},
		{"r6", day2.Add(2 * time.Hour), record.GatewayRequest{
			Principal: alice, Deployment: "gpt-4o", Operation: record.OpChatCompletions, Backend: "eastus",
			ModelRequested: "gpt-4o", ModelReturned: "gpt-4o-2024-11-20", Status: 500, State: record.StateCompleted,
			Usage: &record.Usage{PromptTokens: 5, CompletionTokens: 5, TotalTokens: 10, Source: record.UsageEstimated},
		}},
	}
	for _, c := range calls {
		mustAppend(t, s, gwRec(t, c.id, c.at, c.g))
	}
	mustAppend(t, s, rec("act", day1, `{"status":500,"usage":{"total_tokens":999}}`))
	return s
}

func TestUsage(t *testing.T) {
	s := usageFixture(t)
	day2 := t0.Add(24 * time.Hour)
	tests := []struct {
		name string
		q    UsageQuery
		want []UsageRow
	}{
		{
			name: "by principal and deployment",
			q:    UsageQuery{By: []string{"principal", "deployment"}},
			want: []UsageRow{
				{Keys: []string{"alice@contoso.com", "gpt-4o"}, Requests: 3, Errors: 2, PromptTokens: 105,
					CompletionTokens: 55, TotalTokens: 160, ReasoningTokens: 40, Estimated: 1},
				{Keys: []string{"key:bot", "embed"}, Requests: 1, PromptTokens: 7, TotalTokens: 7},
				{Keys: []string{"key:bot", "gpt-4o"}, Requests: 2, PromptTokens: 11, CompletionTokens: 22,
					TotalTokens: 33, CachedTokens: 5, Estimated: 1},
			},
		},
		{
			name: "by day",
			q:    UsageQuery{By: []string{"day"}},
			want: []UsageRow{
				{Keys: []string{"2026-03-01"}, Requests: 3, PromptTokens: 117, CompletionTokens: 70,
					TotalTokens: 187, CachedTokens: 5, ReasoningTokens: 40},
				{Keys: []string{"2026-03-02"}, Requests: 3, Errors: 2, PromptTokens: 6, CompletionTokens: 7,
					TotalTokens: 13, Estimated: 2},
			},
		},
		{
			name: "by model: returned, else requested",
			q:    UsageQuery{By: []string{"model"}},
			want: []UsageRow{
				{Keys: []string{"gpt-4o"}, Requests: 2, Errors: 1, PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3, Estimated: 1},
				{Keys: []string{"gpt-4o-2024-11-20"}, Requests: 2, Errors: 1, PromptTokens: 15, CompletionTokens: 25,
					TotalTokens: 40, CachedTokens: 5, Estimated: 1},
				{Keys: []string{"o3"}, Requests: 1, PromptTokens: 100, CompletionTokens: 50, TotalTokens: 150, ReasoningTokens: 40},
				{Keys: []string{"text-embedding-3-small"}, Requests: 1, PromptTokens: 7, TotalTokens: 7},
			},
		},
		{
			name: "by operation and backend",
			q:    UsageQuery{By: []string{"operation", "backend"}},
			want: []UsageRow{
				{Keys: []string{"chat.completions", ""}, Requests: 1, Errors: 1},
				{Keys: []string{"chat.completions", "eastus"}, Requests: 2, Errors: 1, PromptTokens: 15,
					CompletionTokens: 25, TotalTokens: 40, CachedTokens: 5, Estimated: 1},
				{Keys: []string{"chat.completions", "westus"}, Requests: 1, PromptTokens: 1, CompletionTokens: 2,
					TotalTokens: 3, Estimated: 1},
				{Keys: []string{"embeddings", "eastus"}, Requests: 1, PromptTokens: 7, TotalTokens: 7},
				{Keys: []string{"responses", "eastus"}, Requests: 1, PromptTokens: 100, CompletionTokens: 50,
					TotalTokens: 150, ReasoningTokens: 40},
			},
		},
		{
			name: "no grouping is one total",
			q:    UsageQuery{},
			want: []UsageRow{{Keys: []string{}, Requests: 6, Errors: 2, PromptTokens: 123, CompletionTokens: 77,
				TotalTokens: 200, CachedTokens: 5, ReasoningTokens: 40, Estimated: 2}},
		},
		{
			name: "since and until",
			q:    UsageQuery{By: []string{"principal"}, Since: day2, Until: day2.Add(90 * time.Minute)},
			want: []UsageRow{
				{Keys: []string{"alice@contoso.com"}, Requests: 1, Errors: 1},
				{Keys: []string{"key:bot"}, Requests: 1, PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3, Estimated: 1},
			},
		},
		{
			name: "an empty window has no rows",
			q:    UsageQuery{Since: day2.Add(48 * time.Hour)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Usage(t.Context(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Usage(%+v) (-want +got):\n%s", tt.q, diff)
			}
		})
	}
	if _, err := s.Usage(t.Context(), UsageQuery{By: []string{"tenant"}}); err == nil {
		t.Error("Usage by an unknown group: no error")
	}
}
