package dashboard

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

// now is the fixture's clock: every view computes its windows from it.
var now = time.Date(2026, 11, 20, 12, 30, 0, 0, time.UTC)

// xss is the hostile record's prompt: a script, an onerror attribute and a
// javascript: link. Every view must show it, or hostile(field), as text,
// never as markup, a script or a link.
const xss = `<script>alert(1)</script><img src=x onerror=alert(2)><a href="javascript:alert(3)">x</a>`

// hostile is the text of one field of the hostile record (principal,
// deployment, activity fields, sink state): xss named after the field, so
// that a test tells which field came out as markup.
func hostile(field string) string { return field + ":" + xss }

func gw(id string, at time.Time, g record.GatewayRequest) record.Record {
	data, err := json.Marshal(g)
	if err != nil {
		panic(err)
	}
	return record.Record{ID: id, Kind: record.KindGatewayRequest, Version: 1, Time: at, Data: data}
}

func activityRec(id string, at time.Time, scope, op, caller, status string) record.Record {
	data, err := record.MarshalActivityLog(record.ActivityLog{
		Scope: record.Scope{Kind: record.ScopeManagementGroup, ID: scope}, EventDataID: id,
		OperationName: op, Caller: caller, Status: status, Level: "Informational", Category: "Administrative",
		EventTimestamp: at, Event: json.RawMessage(fmt.Sprintf(`{"eventDataId":%q,"caller":%q}`, id, caller)),
	})
	if err != nil {
		panic(err)
	}
	return record.Record{ID: id, Kind: record.KindActivityLog, Version: 1, Time: at, Data: data}
}

// fixtureStore is a store with gateway calls of three principals over the
// last two days, throttled and refused calls, activity events (a role
// assignment, a policy assignment, a failure), a sink with an error, 3
// retries and a dead letter, and hostile text (the record "xss", the event
// "al-xss", a sink's name, error and dead letter) everywhere.
func fixtureStore(t testing.TB) *store.Store {
	t.Helper()
	return fixtureStoreAt(t, filepath.Join(t.TempDir(), "tapline.db"))
}

// fixtureStoreAt is fixtureStore at path, for a test that opens it from
// another process too.
func fixtureStoreAt(t testing.TB, path string) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), store.Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var recs []record.Record
	principals := []record.Principal{
		{Kind: record.PrincipalKey, KeyName: "build-bot"},
		{Kind: record.PrincipalEntraUser, UPN: "ana@contoso.example", OID: "oid-ana"},
		{Kind: record.PrincipalEntraApp, OID: "oid-app", AppID: "reporting-job"},
	}
	deps := []string{"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"}
	ttft := 120.0
	for i := range 120 {
		at := now.Add(-time.Duration(i) * 23 * time.Minute)
		g := record.GatewayRequest{State: record.StateCompleted, RequestID: fmt.Sprintf("req-%03d", i), Start: at,
			DurationMS: 300 + float64(i), TTFTMS: &ttft, Principal: principals[i%3], ClientIP: "10.0.0.7",
			Method: "POST", Path: "/openai/deployments/" + deps[i%3] + "/chat/completions",
			Operation: record.OpChatCompletions, Deployment: deps[i%3], ModelReturned: deps[i%3] + "-2024",
			Status: 200, UpstreamStatus: 200, Backend: "eastus",
			Upstream: record.UpstreamIDs{APIMRequestID: fmt.Sprintf("apim-%03d", i), Region: "East US"},
			Usage:    &record.Usage{PromptTokens: 10 + i, CompletionTokens: 5 + i, TotalTokens: 15 + 2*i, Source: record.UsageReported},
			Prompt:   &record.Content{Text: fmt.Sprintf("question number %d", i), Bytes: 20},
			Response: &record.Content{Text: "an answer", Bytes: 9}}
		switch {
		case i%17 == 5:
			g.Status, g.State, g.Usage = 429, record.StateDenied, nil
			g.Limit = &record.Limit{Name: "rpm", Throttled: true}
			g.Error = &record.Error{Code: "rate_limited", Message: "rate limit rpm exceeded"}
		case i%29 == 7:
			g.Status, g.State, g.Usage = 403, record.StateDenied, nil
			g.Limit = &record.Limit{Name: "tokens_per_day", Throttled: true}
			g.Error = &record.Error{Code: "quota_exceeded", Message: "daily token quota used up"}
		case i%13 == 3:
			g.Status, g.UpstreamStatus = 500, 500
			g.Error = &record.Error{Message: "upstream failed"}
		}
		if i == 2 {
			g.Prompt = &record.Content{Text: "mail it to [REDACTED] please", Bytes: 40, Redactions: 1}
		}
		recs = append(recs, gw(fmt.Sprintf("gw-%03d", i), at, g))
	}
	recs = append(recs, gw("xss", now.Add(-3*time.Minute), record.GatewayRequest{
		State: record.StateDenied, RequestID: hostile("request id"), Start: now,
		Principal: record.Principal{Kind: record.PrincipalKey, KeyName: hostile("principal")},
		ClientIP:  "10.0.0.9", UserAgent: hostile("user agent"), Method: "POST", Path: "/x", Operation: record.OpChatCompletions,
		Deployment: hostile("deployment"), Status: 429, Limit: &record.Limit{Name: hostile("limit"), Throttled: true},
		Usage:  &record.Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2, Source: record.UsageEstimated},
		Prompt: &record.Content{Text: xss, Bytes: int64(len(xss))}, Response: &record.Content{Text: hostile("response")},
		Error: &record.Error{Message: hostile("error")},
	}))
	ops := []string{"Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/policyAssignments/write",
		"Microsoft.Resources/deployments/write", "Microsoft.Management/managementGroups/write"}
	for i := range 40 {
		at := now.Add(-time.Duration(i) * 71 * time.Minute)
		status := "Succeeded"
		if i%9 == 4 {
			status = "Failed"
		}
		recs = append(recs, activityRec(fmt.Sprintf("al-%03d", i), at, fmt.Sprintf("mg-%d", i%4), ops[i%4],
			[]string{"ana@contoso.example", "bob@contoso.example"}[i%2], status))
	}
	recs = append(recs, activityRec("al-xss", now.Add(-5*time.Minute), hostile("scope"), hostile("operation"),
		hostile("caller"), "Succeeded"))
	if _, err := st.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	bad, err := st.Record(t.Context(), "xss")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Confirm(t.Context(), "archive", 50, []store.DeadLetter{{Sink: "archive", Seq: 7, Record: bad, Reason: hostile("reason")}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SinkFailed(t.Context(), "siem", hostile("last error"), 3); err != nil {
		t.Fatal(err)
	}
	if err := st.SinkFailed(t.Context(), hostile("sink"), "503 service unavailable", 1); err != nil {
		t.Fatal(err)
	}
	return st
}

// newTestHandler is the dashboard over st at the fixture's clock.
func newTestHandler(t testing.TB, st *store.Store, cfg Config) http.Handler {
	t.Helper()
	cfg.Now = func() time.Time { return now }
	cfg.Sinks = append(cfg.Sinks, "archive", "never-ran")
	h, err := New(cfg, st, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}
