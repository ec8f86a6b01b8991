package store

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

// queryFixture stores gateway and activity records out of time order; g3 is
// left pending.
func queryFixture(t *testing.T) *Store {
	t.Helper()
	s := openStore(t, Config{})
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	bot := record.Principal{Kind: record.PrincipalKey, KeyName: "build-bot"}
	g1 := gwRec(t, "g1", at(1), record.GatewayRequest{
		Principal: bot, Deployment: "gpt-4o", Operation: record.OpChatCompletions, Status: 200,
		State:  record.StateCompleted,
		Prompt: &record.Content{Text: "Hello World"}, Response: &record.Content{Text: "hi there"},
	})
	g2 := gwRec(t, "g2", at(2), record.GatewayRequest{
		Principal:  record.Principal{Kind: record.PrincipalEntraUser, UPN: "alice@contoso.com", OID: "oid-alice"},
		Deployment: "gpt-4o-mini", Operation: record.OpEmbeddings, Status: 429, State: record.StateDenied,
	})
	g3 := gwRec(t, "g3", at(3), record.GatewayRequest{
		Principal:  record.Principal{Kind: record.PrincipalEntraApp, OID: "oid-app", AppID: "app-1"},
		Deployment: "gpt-4o", Operation: record.OpChatCompletions, State: record.StateStarted,
		Prompt: &record.Content{Text: "the SECRET plan"},
	})
	same := gwRec(t, "a-same", at(3), record.GatewayRequest{
		Principal: bot, Operation: record.OpResponses, Status: 500, State: record.StateInterrupted,
		Response: &record.Content{Text: "Secret sauce"},
	})
	act1 := rec("act1", at(0), `{"operation_name":"Microsoft.Authorization/roleAssignments/write"}`)
	act2 := rec("act2", at(5), `{"operation_name":"Microsoft.Authorization/policyAssignments/write"}`)
	mustAppend(t, s, act2, g2, same)
	if err := s.Begin(t.Context(), g3); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, g1, act1)
	return s
}

func TestRecords(t *testing.T) {
	s := queryFixture(t)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	tests := []struct {
		name string
		f    Filter
		want []string
	}{
		{"everything, oldest first, ties by id", Filter{}, []string{"act1", "g1", "g2", "a-same", "g3", "act2"}},
		{"kind gateway_request", Filter{Kind: record.KindGatewayRequest}, []string{"g1", "g2", "a-same", "g3"}},
		{"kind activity_log", Filter{Kind: record.KindActivityLog}, []string{"act1", "act2"}},
		{"since, inclusive", Filter{Since: at(2)}, []string{"g2", "a-same", "g3", "act2"}},
		{"until, exclusive", Filter{Until: at(3)}, []string{"act1", "g1", "g2"}},
		{"window", Filter{Since: at(1), Until: at(2)}, []string{"g1"}},
		{"principal by key name", Filter{Principal: "key:build-bot"}, []string{"g1", "a-same"}},
		{"principal by upn", Filter{Principal: "alice@contoso.com"}, []string{"g2"}},
		{"principal by oid", Filter{Principal: "oid-app"}, []string{"g3"}},
		{"principal needs the key: prefix", Filter{Principal: "build-bot"}, nil},
		{"principal upn wins over oid", Filter{Principal: "oid-alice"}, nil},
		{"deployment", Filter{Deployment: "gpt-4o"}, []string{"g1", "g3"}},
		{"operation", Filter{Operation: record.OpChatCompletions}, []string{"g1", "g3"}},
		{"status", Filter{Status: 429}, []string{"g2"}},
		{"state started (pending)", Filter{State: record.StateStarted}, []string{"g3"}},
		{"state interrupted", Filter{State: record.StateInterrupted}, []string{"a-same"}},
		{"text in prompt or response, any case", Filter{Text: "secret"}, []string{"a-same", "g3"}},
		{"text in prompt", Filter{Text: "WORLD"}, []string{"g1"}},
		{"text in response", Filter{Text: "hi there"}, []string{"g1"}},
		{"text nowhere", Filter{Text: "roleAssignments"}, nil},
		{"limit takes the oldest", Filter{Limit: 2}, []string{"act1", "g1"}},
		{"combined", Filter{Kind: record.KindGatewayRequest, Principal: "key:build-bot", Status: 500}, []string{"a-same"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range allRecords(t, s, tt.f) {
				got = append(got, r.ID)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Records(%+v) (-want +got):\n%s", tt.f, diff)
			}
		})
	}
}

func TestRecordsStops(t *testing.T) {
	s := queryFixture(t)
	stop := errors.New("enough")
	calls := 0
	err := s.Records(t.Context(), Filter{}, func(record.Record) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Records returned %v after %d calls, want the callback's error after 1", err, calls)
	}
}

// TestPrincipalSQL checks that principalSQL is record.Principal.ID.
func TestPrincipalSQL(t *testing.T) {
	principals := []record.Principal{
		{Kind: record.PrincipalKey, KeyName: "bot"},
		{KeyName: "both", UPN: "shadowed@contoso.com", OID: "oid-shadowed"},
		{Kind: record.PrincipalEntraUser, UPN: "bob@contoso.com", OID: "oid-bob"},
		{Kind: record.PrincipalEntraApp, OID: "oid-app", AppID: "appid"},
		{Kind: record.PrincipalEntraApp, AppID: "appid-only"},
		{},
	}
	s := openStore(t, Config{})
	var want []string
	for i, p := range principals {
		mustAppend(t, s, gwRec(t, fmt.Sprint("p", i), t0, record.GatewayRequest{Principal: p, Status: 200}))
		want = append(want, p.ID())
		if p.ID() == "" {
			continue
		}
		got := allRecords(t, s, Filter{Principal: p.ID()})
		if len(got) != 1 || got[0].ID != fmt.Sprint("p", i) {
			t.Errorf("Filter{Principal: %q} matched %d records, want p%d alone", p.ID(), len(got), i)
		}
	}
	slices.Sort(want)
	want = slices.Compact(want) // principals without an id group together
	rows, err := s.Usage(t.Context(), UsageQuery{By: []string{"principal"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Keys[0])
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("usage principals (-Principal.ID +SQL):\n%s", diff)
	}
}
