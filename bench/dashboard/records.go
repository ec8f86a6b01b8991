package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

// span is how far back the generated records reach: the store of a busy
// gateway after a month.
const span = 30 * 24 * time.Hour

// fill appends n records spread evenly over the span before end, in
// transactions of 5000, and returns how long it took.
func fill(path string, n int, end time.Time) (time.Duration, error) {
	begin := time.Now()
	st, err := store.Open(context.Background(), store.Config{Path: path, MaxBytes: 1 << 40},
		slog.New(slog.DiscardHandler))
	if err != nil {
		return 0, err
	}
	defer st.Close()
	step := span / time.Duration(n)
	base := end.Add(-span)
	const chunk = 5000
	recs := make([]record.Record, 0, chunk)
	for i := 0; i < n; i++ {
		recs = append(recs, benchRecord(i, base.Add(time.Duration(i)*step)))
		if len(recs) == chunk || i == n-1 {
			if _, err := st.Append(context.Background(), recs); err != nil {
				return 0, fmt.Errorf("fill store: %w", err)
			}
			recs = recs[:0]
		}
	}
	// Two sinks, one behind with an error and a dead letter, for the
	// delivery page.
	if err := st.Confirm(context.Background(), "archive", int64(n), nil); err != nil {
		return 0, err
	}
	last, err := st.Record(context.Background(), fmt.Sprintf("gw-%09d", n-2))
	if err != nil {
		return 0, err
	}
	if err := st.Confirm(context.Background(), "siem", int64(n-5000), []store.DeadLetter{{Seq: int64(n - 5001), Record: last, Reason: "400 Bad Request: field too long"}}); err != nil {
		return 0, err
	}
	if err := st.SinkFailed(context.Background(), "siem", "503 Service Unavailable", 1); err != nil {
		return 0, err
	}
	// What tapline serve does every few seconds: sum the released calls
	// into usage_hourly.
	if _, err := st.RollUp(context.Background()); err != nil {
		return 0, err
	}
	return time.Since(begin), nil
}

// The shape of bench/ship/records.go: three gateway calls for each
// Activity Log event, with 17 keys and 40 users calling three deployments;
// 2% of the calls are refused by a limit and 1% fail upstream.
var deployments = []string{"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"}

var operations = []string{"Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/policyAssignments/write",
	"Microsoft.Resources/deployments/write", "Microsoft.Management/managementGroups/write", "Microsoft.Resources/tags/write"}

func benchRecord(i int, at time.Time) record.Record {
	if i%4 == 3 {
		ev := fmt.Sprintf(`{"caller":"ana@contoso.example","correlationId":"c0ffee00-%09d","eventDataId":"ev-%09d","eventTimestamp":"%s","level":"Informational","operationName":{"value":%q},"status":{"value":"Succeeded"}}`,
			i, i, at.Format(time.RFC3339Nano), operations[i%len(operations)])
		status := "Succeeded"
		if i%51 == 3 {
			status = "Failed"
		}
		data, err := record.MarshalActivityLog(record.ActivityLog{
			Scope: record.Scope{Kind: record.ScopeManagementGroup, ID: fmt.Sprintf("mg-%02d", i%13)}, EventDataID: fmt.Sprintf("ev-%09d", i),
			CorrelationID: fmt.Sprintf("c0ffee00-%09d", i), OperationName: operations[i%len(operations)], Category: "Administrative",
			Level: "Informational", Status: status, Caller: []string{"ana@contoso.example", "bob@contoso.example", "ops-pipeline"}[i%3],
			EventTimestamp: at, Event: json.RawMessage(ev),
		})
		if err != nil {
			panic(err)
		}
		return record.Record{ID: fmt.Sprintf("al-%09d", i), Kind: record.KindActivityLog, Version: 1, Time: at, Data: data}
	}
	p := record.Principal{Kind: record.PrincipalKey, KeyName: fmt.Sprintf("team-%d", i%17)}
	if i%5 == 0 {
		p = record.Principal{Kind: record.PrincipalEntraUser, UPN: fmt.Sprintf("user%02d@contoso.example", i%40), OID: fmt.Sprintf("oid-%02d", i%40)}
	}
	ttft := 240.0
	dep := deployments[i%3]
	g := record.GatewayRequest{State: record.StateCompleted, RequestID: fmt.Sprintf("req-%09d", i), Start: at,
		DurationMS: 812, TTFTMS: &ttft, Principal: p, ClientIP: fmt.Sprintf("10.1.%d.%d", i%250, i%200),
		UserAgent: "AzureOpenAI/JS 7.57.0", Method: "POST", Path: "/openai/deployments/" + dep + "/chat/completions",
		Operation: record.OpChatCompletions, APIVersion: "2024-10-21", Deployment: dep, ModelReturned: dep + "-2024-08-06",
		Stream: i%3 == 0, Backend: "eastus", UpstreamStatus: 200, Status: 200,
		Upstream:      record.UpstreamIDs{APIMRequestID: fmt.Sprintf("b1c2d3e4-%09d", i), Region: "East US"},
		Usage:         &record.Usage{PromptTokens: 40 + i%60, CompletionTokens: 30 + i%90, TotalTokens: 70 + i%60 + i%90, Source: record.UsageReported},
		FinishReasons: []string{"stop"}, RequestBytes: 412, ResponseBytes: int64(600 + i%400),
		Prompt:   &record.Content{Text: fmt.Sprintf(`{"messages":[{"role":"system","content":"You are a helpful assistant for the finance team."},{"role":"user","content":"Summarise the attached quarterly variance report in three bullet points, call %d."}]}`, i), Bytes: 180},
		Response: &record.Content{Text: "Revenue rose 4% on higher subscription renewals; operating costs fell 2% after the data-centre consolidation; the forecast for the next quarter is unchanged.", Bytes: 160},
	}
	switch {
	case i%50 == 1:
		g.State, g.Status, g.UpstreamStatus, g.Usage, g.Prompt, g.Response = record.StateDenied, 429, 0, nil, nil, nil
		g.Limit = &record.Limit{Name: "requests_per_minute", Throttled: true}
		g.Error = &record.Error{Code: "429", Message: "requests_per_minute of 60 reached", RetryAfterMS: 12000}
	case i%100 == 2:
		g.Status, g.UpstreamStatus = 500, 500
		g.Error = &record.Error{Message: "upstream failed"}
	}
	data, err := json.Marshal(g)
	if err != nil {
		panic(err)
	}
	return record.Record{ID: fmt.Sprintf("gw-%09d", i), Kind: record.KindGatewayRequest, Version: 1, Time: at, Data: data}
}
