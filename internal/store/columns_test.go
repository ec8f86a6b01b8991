package store

import (
	"testing"

	"github.com/tapline/tapline/internal/record"
)

// FuzzWithValueMatchesPayload holds the columns and usage sums a row gets
// from the gateway's value (withValue) to those read back from its
// encoding (withColumns), which TestUsageFastMatchesUsage holds to SQL.
func FuzzWithValueMatchesPayload(f *testing.F) {
	f.Add("completed", "bench", "", "", "gpt-4o", "", "gpt-4o-2024-08-06", "chat.completions", "east", 200, true, 24, 20, 44, 0, 0, false)
	f.Add("started", "", "ann@contoso.com", "oid-1", "", "gpt-4o-mini", "", "responses", "", 0, false, 0, 0, 0, 0, 0, false)
	f.Add("denied", "", "", "oid-2", "dep\"\\\u00e9\n", "", "", "other", "b", 429, true, 7, 0, 7, 3, 2, true)
	f.Add("interrupted", "", "", "", "d\xff", "", "", "", "", 502, true, 1, 1, 2, 0, 0, true)
	f.Fuzz(func(t *testing.T, state, keyName, upn, oid, deployment, modelRequested, modelReturned, operation, backend string,
		status int, hasUsage bool, prompt, completion, total, cached, reasoning int, estimated bool) {
		g := &record.GatewayRequest{State: state, Principal: record.Principal{KeyName: keyName, UPN: upn, OID: oid},
			Deployment: deployment, ModelRequested: modelRequested, ModelReturned: modelReturned,
			Operation: operation, Backend: backend, Status: status}
		if hasUsage {
			g.Usage = &record.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: total,
				CachedTokens: cached, ReasoningTokens: reasoning, Source: record.UsageReported}
			if estimated {
				g.Usage.Source = record.UsageEstimated
			}
		}
		rec := record.Record{ID: "id", Kind: record.KindGatewayRequest, Version: 1, Time: t0.Add(90 * 60e9),
			Data: record.AppendGatewayRequest(nil, g), Encoded: true}
		parsed, err := newRow(0, rec)
		if err != nil {
			t.Fatal(err)
		}
		rec.Gateway = g
		valued, err := newRow(0, rec)
		if err != nil {
			t.Fatal(err)
		}
		if parsed.state != valued.state || parsed.principal != valued.principal || parsed.deployment != valued.deployment ||
			parsed.status != valued.status || parsed.group != valued.group || parsed.sums != valued.sums {
			t.Errorf("from the value:\n%#v\nfrom the payload:\n%#v", valued, parsed)
		}
	})
}
