package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

// TestQueryUsageFormats reads one store's usage in each format: the same
// groups and figures, keys as strings and figures as numbers in JSON.
func TestQueryUsageFormats(t *testing.T) {
	db := filepath.Join(t.TempDir(), "t.db")
	keyCallsStore(t, db, time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC), "build-bot", "build-bot", `odd, "quoted"`)
	query := func(format string) string {
		t.Helper()
		code, out, errs := tapline(t, "query", "usage", "--store", db, "--by", "principal,deployment", "--format", format)
		if code != 0 {
			t.Fatalf("--format %s: exit %d: %s", format, code, errs)
		}
		return out
	}

	wantCSV := "principal,deployment,requests,errors,prompt_tokens,completion_tokens,total_tokens,cached_tokens,reasoning_tokens,estimated\n" +
		"key:build-bot,gpt-4o,2,0,20,10,30,0,0,0\n" +
		`"key:odd, ""quoted""",gpt-4o,1,0,10,5,15,0,0,0` + "\n"
	if got := query("csv"); got != wantCSV {
		t.Errorf("csv:\n%s\nwant:\n%s", got, wantCSV)
	}

	var rows []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(query("json")), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("json line %q: %v", l, err)
		}
		rows = append(rows, m)
	}
	wantJSON := []map[string]any{
		{"principal": "key:build-bot", "deployment": "gpt-4o", "requests": 2.0, "errors": 0.0, "prompt_tokens": 20.0,
			"completion_tokens": 10.0, "total_tokens": 30.0, "cached_tokens": 0.0, "reasoning_tokens": 0.0, "estimated": 0.0},
		{"principal": `key:odd, "quoted"`, "deployment": "gpt-4o", "requests": 1.0, "errors": 0.0, "prompt_tokens": 10.0,
			"completion_tokens": 5.0, "total_tokens": 15.0, "cached_tokens": 0.0, "reasoning_tokens": 0.0, "estimated": 0.0},
	}
	if diff := cmp.Diff(wantJSON, rows); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}

	table := strings.Split(strings.TrimSpace(query("table")), "\n")
	if len(table) != 3 || strings.Join(strings.Fields(table[0]), " ") !=
		"PRINCIPAL DEPLOYMENT REQUESTS ERRORS PROMPT_TOKENS COMPLETION_TOKENS TOTAL_TOKENS CACHED_TOKENS REASONING_TOKENS ESTIMATED" ||
		strings.Join(strings.Fields(table[1]), " ") != "key:build-bot gpt-4o 2 0 20 10 30 0 0 0" {
		t.Errorf("table:\n%s", strings.Join(table, "\n"))
	}
}

// keyCallsStore creates the store db holding one completed chat call at
// time at for each key caller in keys (ids gw-0, gw-1, ...; 10 prompt and
// 5 completion tokens each, a prompt naming the call's index).
func keyCallsStore(t *testing.T, db string, at time.Time, keys ...string) {
	t.Helper()
	st, err := store.Open(t.Context(), store.Config{Path: db}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var recs []record.Record
	for i, key := range keys {
		data, err := json.Marshal(record.GatewayRequest{State: record.StateCompleted, Start: at, Status: 200,
			Principal: record.Principal{Kind: record.PrincipalKey, KeyName: key}, Deployment: "gpt-4o",
			Operation: record.OpChatCompletions, Prompt: &record.Content{Text: fmt.Sprint("what is tapline, take ", i)},
			Usage: &record.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, Source: record.UsageReported}})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, record.Record{ID: fmt.Sprint("gw-", i), Kind: record.KindGatewayRequest,
			Version: record.GatewayRequestVersion, Time: at, Data: data})
	}
	if _, err := st.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
