package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

func ids(recs []record.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func TestPageWalksNewestFirstWithCursor(t *testing.T) {
	s := queryFixture(t)
	var got []string
	var after Cursor
	pages := 0
	for {
		recs, next, err := s.Page(t.Context(), Filter{Kind: record.KindGatewayRequest}, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, ids(recs)...)
		if next.IsZero() {
			break
		}
		after = next
	}
	// g3 and a-same share a time: ties go by id, descending.
	if diff := cmp.Diff([]string{"g3", "a-same", "g2", "g1"}, got); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	if pages != 2 {
		t.Errorf("pages = %d, want 2", pages)
	}
	recs, _, err := s.Page(t.Context(), Filter{Principal: "key:build-bot"}, Cursor{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a-same", "g1"}, ids(recs)); diff != "" {
		t.Errorf("principal filter (-want +got):\n%s", diff)
	}
}

func TestRecordByID(t *testing.T) {
	s := queryFixture(t)
	r, err := s.Record(t.Context(), "g2")
	if err != nil || r.ID != "g2" || r.Kind != record.KindGatewayRequest || !r.Time.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("Record(g2) = %v, %v", r, err)
	}
	if _, err := s.Record(t.Context(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Record(nope) error = %v, want ErrNotFound", err)
	}
}

func TestSeries(t *testing.T) {
	s := openStore(t, Config{})
	u := &record.Usage{TotalTokens: 10}
	mustAppend(t, s,
		gwRec(t, "a", t0.Add(1*time.Minute), record.GatewayRequest{Status: 200, Usage: u}),
		gwRec(t, "b", t0.Add(2*time.Minute), record.GatewayRequest{Status: 429}),
		gwRec(t, "c", t0.Add(11*time.Minute), record.GatewayRequest{Status: 500, Usage: u}),
		gwRec(t, "d", t0.Add(40*time.Minute), record.GatewayRequest{Status: 200}), // outside
		rec("act", t0.Add(3*time.Minute), `{}`),
	)
	got, err := s.Series(t.Context(), t0, t0.Add(30*time.Minute), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []Bucket{
		{Start: t0, Requests: 2, Tokens: 10, Errors: 1, Throttles: 1},
		{Start: t0.Add(10 * time.Minute), Requests: 1, Tokens: 10, Errors: 1},
		{Start: t0.Add(20 * time.Minute)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Series (-want +got):\n%s", diff)
	}
}

func TestActivityPageFilters(t *testing.T) {
	s := openStore(t, Config{})
	ev := func(id string, m int, scopeKind, scope, op, caller, status string) record.Record {
		return rec(id, t0.Add(time.Duration(m)*time.Minute), fmt.Sprintf(
			`{"scope":{"kind":%q,"id":%q},"operation_name":%q,"caller":%q,"status":%q,"identity":{"oid":"oid-%s"},"event":{}}`,
			scopeKind, scope, op, caller, status, id))
	}
	mustAppend(t, s,
		ev("e1", 1, "management_group", "mg-Corp", "Microsoft.Authorization/roleAssignments/write", "ana@contoso.com", "Succeeded"),
		ev("e2", 2, "tenant", "", "Microsoft.Authorization/policyAssignments/write", "bob@contoso.com", "Failed"),
		ev("e3", 3, "subscription", "sub-1", "Microsoft.Resources/deployments/write", "ana@contoso.com", "Succeeded"),
		gwRec(t, "g", t0, record.GatewayRequest{Status: 200}),
	)
	tests := []struct {
		name string
		f    ActivityFilter
		want []string
	}{
		{"all, newest first", ActivityFilter{}, []string{"e3", "e2", "e1"}},
		{"scope ignores case", ActivityFilter{Scope: "MG-CORP"}, []string{"e1"}},
		{"tenant scope", ActivityFilter{Scope: "tenant"}, []string{"e2"}},
		{"operation substring", ActivityFilter{Operation: "ASSIGNMENTS/write"}, []string{"e2", "e1"}},
		{"caller", ActivityFilter{Caller: "Ana@Contoso.com"}, []string{"e3", "e1"}},
		{"caller by oid", ActivityFilter{Caller: "oid-e2"}, []string{"e2"}},
		{"status", ActivityFilter{Status: "failed"}, []string{"e2"}},
		{"since", ActivityFilter{Since: t0.Add(2 * time.Minute)}, []string{"e3", "e2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, _, err := s.ActivityPage(t.Context(), tt.f, Cursor{}, 10)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, ids(recs)); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLimited(t *testing.T) {
	s := openStore(t, Config{})
	bot := record.Principal{Kind: record.PrincipalKey, KeyName: "bot"}
	lim := func(name string) *record.Limit { return &record.Limit{Name: name, Throttled: true} }
	mustAppend(t, s,
		gwRec(t, "a", t0.Add(1*time.Minute), record.GatewayRequest{Principal: bot, State: "denied", Status: 429, Limit: lim("rpm")}),
		gwRec(t, "b", t0.Add(2*time.Minute), record.GatewayRequest{Principal: bot, State: "denied", Status: 429, Limit: lim("rpm")}),
		gwRec(t, "c", t0.Add(3*time.Minute), record.GatewayRequest{Principal: bot, State: "denied", Status: 403, Limit: lim("tokens_per_day")}),
		// An upstream 429 (no limit of the gateway's), a denied call with
		// bad credentials, and a call the limit let through.
		gwRec(t, "d", t0.Add(4*time.Minute), record.GatewayRequest{Principal: bot, State: "completed", Status: 429}),
		gwRec(t, "e", t0.Add(5*time.Minute), record.GatewayRequest{Principal: bot, State: "denied", Status: 401}),
		gwRec(t, "f", t0.Add(6*time.Minute), record.GatewayRequest{Principal: bot, State: "completed", Status: 200,
			Limit: &record.Limit{Name: "rpm", Remaining: 3}}),
		gwRec(t, "g", t0.Add(7*time.Minute), record.GatewayRequest{Principal: record.Principal{Kind: "key", KeyName: "other"},
			State: "denied", Status: 429, Limit: lim("tpm")}),
	)
	recs, _, err := s.LimitedPage(t.Context(), Filter{Principal: "key:bot"}, Cursor{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"c", "b", "a"}, ids(recs)); diff != "" {
		t.Errorf("LimitedPage (-want +got):\n%s", diff)
	}
	got, err := s.LimitedByPrincipal(t.Context(), Filter{Until: t0.Add(7 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	want := []LimitedCount{
		{Principal: "key:bot", Limit: "rpm", Status: 429, Count: 2, Last: t0.Add(2 * time.Minute)},
		{Principal: "key:bot", Limit: "tokens_per_day", Status: 403, Count: 1, Last: t0.Add(3 * time.Minute)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LimitedByPrincipal (-want +got):\n%s", diff)
	}
}

// TestDashboardIndexesUsed checks that the filters the dashboard pages by
// are answered through migration 4's expression indexes.
func TestDashboardIndexesUsed(t *testing.T) {
	s := queryFixture(t)
	tests := []struct {
		f     Filter
		index string
	}{
		{Filter{Kind: record.KindGatewayRequest, Principal: "key:build-bot"}, "records_principal_time"},
		{Filter{Kind: record.KindGatewayRequest, Deployment: "gpt-4o"}, "records_deployment_time"},
		{Filter{Kind: record.KindGatewayRequest, Status: 429}, "records_status_time"},
		{Filter{State: "denied"}, "records_throttled_time"},
	}
	for _, tt := range tests {
		where, args := tt.f.where()
		if tt.f.State == "denied" {
			where, args = limitedFilter(tt.f)
		}
		plan := queryPlan(t, s, `SELECT id FROM `+everyRecord+where+` ORDER BY time DESC, id DESC LIMIT 51`, args...)
		if !strings.Contains(plan, tt.index) {
			t.Errorf("plan for %+v does not use %s:\n%s", tt.f, tt.index, plan)
		}
	}
}

// Every index that reads the payload is partial: a full one would parse each
// activity_log event (4 KB) on insert for entries no query reads.
func TestPayloadIndexesArePartial(t *testing.T) {
	s := queryFixture(t)
	rows, err := s.rdb.QueryContext(t.Context(),
		`SELECT name, partial, coalesce(sql, '') FROM pragma_index_list('records') JOIN sqlite_schema USING (name)`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var name, sql string
		var partial bool
		if err := rows.Scan(&name, &partial, &sql); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(sql, "json_extract") {
			seen++
			if !partial {
				t.Errorf("index %s reads the payload of every record:\n%s", name, sql)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != 1 {
		t.Errorf("found %d payload indexes, want records_throttled_time alone (migration 8 made columns of the others)", seen)
	}
}

// The records usage_hourly does not hold are found in started (calls in
// flight) and by seq (the rowid, migration 8), never by scanning the period.
func TestUnrolledSourceUsesIndexes(t *testing.T) {
	s := queryFixture(t)
	src, args := gatewaySource(t0.Add(-30*24*time.Hour), t0.Add(time.Hour), true)
	p := queryPlan(t, s, `SELECT count(*) FROM `+src, args...)
	if !strings.Contains(p, "SCAN started") || !strings.Contains(p, "USING INTEGER PRIMARY KEY (rowid>?)") ||
		strings.Contains(p, "records_kind_scope_time") {
		t.Errorf("plan of the records after the rollup:\n%s", p)
	}
}

// RollUp finds its batch by seq (the rowid): through the kind's index it
// would read every record for every batch.
func TestRollUpBatchUsesTheSeq(t *testing.T) {
	s := queryFixture(t)
	p := queryPlan(t, s, rollupBatchSQL, 0, 1000)
	if !strings.Contains(p, "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)") || strings.Contains(p, "records_kind_scope_time") {
		t.Errorf("plan of a rollup batch:\n%s", p)
	}
}

// queryPlan returns SQLite's plan for q, one step a line.
func queryPlan(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	rows, err := s.rdb.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "\n")
}
