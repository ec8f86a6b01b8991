package store

import (
	"cmp"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/tapline/tapline/internal/record"
)

// scoped is an activity_log record of the given scope, minute and id.
func scoped(id, scopeKind, scope string, minute int) record.Record {
	return rec(id, t0.Add(time.Duration(minute)*time.Minute), fmt.Sprintf(
		`{"scope":{"kind":%q,"id":%q},"event_data_id":%q,"event":{"n":%d}}`, scopeKind, scope, id, minute))
}

// activityFixture stores 60 events of three scopes whose times interleave,
// with ties on time across and within scopes, appended in random order, and
// a gateway call among them. It returns the events' ids in (time, id)
// order.
func activityFixture(t *testing.T) (*Store, []record.Record) {
	t.Helper()
	s := openStore(t, Config{})
	var recs []record.Record
	scopes := [][2]string{{"management_group", "mg-a"}, {"management_group", "mg-b"}, {"tenant", ""}}
	for i := range 60 {
		sc := scopes[i%3]
		recs = append(recs, scoped(fmt.Sprintf("al-%02d", 59-i), sc[0], sc[1], i/4))
	}
	shuffled := slices.Clone(recs)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	mustAppend(t, s, append(shuffled, gwRec(t, "g", t0.Add(5*time.Minute), record.GatewayRequest{Status: 200}))...)
	slices.SortFunc(recs, func(a, b record.Record) int {
		return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.ID, b.ID))
	})
	return s, recs
}

// TestActivityMergesScopes: activity_log records have no index by time
// alone (migration 8), so the queries merge each scope's run; they must
// come out in the order one index would give.
func TestActivityMergesScopes(t *testing.T) {
	s, want := activityFixture(t)
	t.Run("records oldest first", func(t *testing.T) {
		got := allRecords(t, s, Filter{Kind: record.KindActivityLog})
		if diff := gocmp.Diff(ids(want), ids(got)); diff != "" {
			t.Errorf("ids (-want +got):\n%s", diff)
		}
		for i := range got {
			if !got[i].Time.Equal(want[i].Time) || string(got[i].Data) != string(want[i].Data) {
				t.Fatalf("record %s = %s at %s, want %s at %s", got[i].ID, got[i].Data, got[i].Time, want[i].Data, want[i].Time)
			}
		}
	})
	t.Run("records in a window, limited", func(t *testing.T) {
		f := Filter{Kind: record.KindActivityLog, Since: t0.Add(3 * time.Minute), Until: t0.Add(9 * time.Minute), Limit: 10}
		var in []record.Record
		for _, r := range want {
			if !r.Time.Before(f.Since) && r.Time.Before(f.Until) {
				in = append(in, r)
			}
		}
		if diff := gocmp.Diff(ids(in[:10]), ids(allRecords(t, s, f))); diff != "" {
			t.Errorf("ids (-want +got):\n%s", diff)
		}
	})
	t.Run("pages newest first", func(t *testing.T) {
		var got []record.Record
		var after Cursor
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("more than 20 pages of 7")
			}
			recs, next, err := s.Page(t.Context(), Filter{Kind: record.KindActivityLog}, after, 7)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, recs...)
			if next.IsZero() {
				break
			}
			after = next
		}
		rev := slices.Clone(want)
		slices.Reverse(rev)
		if diff := gocmp.Diff(ids(rev), ids(got)); diff != "" {
			t.Errorf("ids (-want +got):\n%s", diff)
		}
	})
	t.Run("one scope", func(t *testing.T) {
		recs, _, err := s.ActivityPage(t.Context(), ActivityFilter{Scope: "MG-B"}, Cursor{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		var mgb []string
		for _, r := range slices.Backward(want) {
			if strings.Contains(string(r.Data), `"mg-b"`) {
				mgb = append(mgb, r.ID)
			}
		}
		if diff := gocmp.Diff(mgb, ids(recs)); diff != "" {
			t.Errorf("ids (-want +got):\n%s", diff)
		}
	})
	t.Run("records of one scope", func(t *testing.T) {
		for _, sc := range []struct{ filter, data string }{{"MG-A", `"mg-a"`}, {"tenant", `"tenant"`}} {
			var in []record.Record
			for _, r := range want {
				if strings.Contains(string(r.Data), sc.data) {
					in = append(in, r)
				}
			}
			got := allRecords(t, s, Filter{Kind: record.KindActivityLog, Scope: sc.filter})
			if len(in) == 0 || len(in) == len(want) {
				t.Fatalf("fixture: %d of %d records in %s", len(in), len(want), sc.filter)
			}
			if diff := gocmp.Diff(ids(in), ids(got)); diff != "" {
				t.Errorf("scope %s: ids (-want +got):\n%s", sc.filter, diff)
			}
		}
	})
	t.Run("by id", func(t *testing.T) {
		r, err := s.Record(t.Context(), want[7].ID)
		if err != nil || r.ID != want[7].ID || string(r.Data) != string(want[7].Data) {
			t.Errorf("Record(%s) = %v, %v", want[7].ID, r, err)
		}
	})
}

// TestActivityDeduplicatesPerScope: an activity_log record is the same one
// when its scope, time and id are; the same event id read again (an
// overlapping window, a re-run) is skipped.
func TestActivityDeduplicatesPerScope(t *testing.T) {
	s := openStore(t, Config{})
	if n := mustAppend(t, s, scoped("al-1", "management_group", "mg-a", 1), scoped("al-2", "management_group", "mg-a", 1)); n != 2 {
		t.Fatalf("added %d, want 2", n)
	}
	if n := mustAppend(t, s, scoped("al-1", "management_group", "mg-a", 1), scoped("al-3", "management_group", "mg-a", 2)); n != 1 {
		t.Errorf("added %d with one known, want 1", n)
	}
	// Scope ids are compared as stored: ARM names one group one way.
	if n := mustAppend(t, s, scoped("al-1", "management_group", "mg-a", 1)); n != 0 {
		t.Errorf("added %d of a known event, want 0", n)
	}
	if got := len(allRecords(t, s, Filter{Kind: record.KindActivityLog})); got != 3 {
		t.Errorf("%d records, want 3", got)
	}
}

// TestActivityQueriesUseTheScopeIndex checks the plans of the statements
// that keep a collector's inserts and reads cheap.
func TestActivityQueriesUseTheScopeIndex(t *testing.T) {
	s, _ := activityFixture(t)
	tests := []struct {
		name, q string
		args    []any
		want    string
	}{
		{"a scope's keys", `SELECT time, id, rowid FROM records WHERE ` + activityKind +
			` AND scope = ? AND (time, id) < (?, ?) ORDER BY time DESC, id DESC LIMIT 5`,
			[]any{"tenant:", 1, "x"}, "COVERING INDEX records_kind_scope_time (kind=? AND scope=? AND (time,id)<(?,?))"},
		{"the next scope", `SELECT min(scope) FROM records WHERE ` + activityKind + ` AND scope > ?`,
			[]any{"tenant:"}, "COVERING INDEX records_kind_scope_time (kind=? AND scope>?)"},
		{"gateway calls by time", `SELECT id FROM ` + everyRecord + ` WHERE ` + gatewayKind +
			` AND scope IS NULL AND time >= ? ORDER BY time, id`,
			[]any{1}, "INDEX records_kind_scope_time (kind=? AND scope=? AND time>?)"},
		{"a call by id", `SELECT id FROM records WHERE id = ? AND ` + notActivity, []any{"g"}, "INDEX records_id (id=?)"},
	}
	for _, tt := range tests {
		if plan := queryPlan(t, s, tt.q, tt.args...); !strings.Contains(plan, tt.want) {
			t.Errorf("%s: plan does not say %q:\n%s", tt.name, tt.want, plan)
		}
	}
	// Filter.where says what the gateway's time index needs.
	where, args := Filter{Kind: record.KindGatewayRequest, Since: t0}.where()
	if plan := queryPlan(t, s, `SELECT id FROM records`+where+` ORDER BY time`, args...); !strings.Contains(plan,
		"records_kind_scope_time (kind=? AND scope=? AND time>?)") {
		t.Errorf("gateway Filter plan:\n%s", plan)
	}
}

// TestMigration8 opens a database of schema version 7 holding released
// records of both kinds and a started call: the rebuilt records table keeps
// every row as it was, with its seq, and the keys of migration 8 hold.
func TestMigration8(t *testing.T) {
	cfg := testConfig(t)
	db, err := sql.Open("sqlite", dsn(cfg.Path, writeParams))
	if err != nil {
		t.Fatal(err)
	}
	for v := range 7 {
		if err := applyMigration(t.Context(), db, v); err != nil {
			t.Fatal(err)
		}
	}
	gw := gwRec(t, "g1", t0, record.GatewayRequest{Status: 200, Deployment: "gpt-4o",
		Usage: &record.Usage{PromptTokens: 3, TotalTokens: 5}, State: record.StateCompleted})
	started := gwRec(t, "g2", t0.Add(time.Minute), record.GatewayRequest{Status: 0, State: record.StateStarted})
	old := []record.Record{gw, scoped("al-a", "management_group", "mg-a", 2), scoped("al-t", "tenant", "", 3)}
	for i, r := range old {
		if _, err := db.Exec(`INSERT INTO records (id, seq, kind, version, time, state, size, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, i+10, string(r.Kind), r.Version, r.Time.UnixNano(), nil, len(r.Data), string(r.Data)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO started (id, seq, kind, version, time, state, size, data) VALUES (?, NULL, ?, 1, ?, 'started', ?, ?)`,
		started.ID, string(started.Kind), started.Time.UnixNano(), len(started.Data), string(started.Data)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openStore(t, cfg)
	if got := s.Recovered(); got != 1 {
		t.Errorf("recovered %d started calls, want 1", got)
	}
	want := []released{{10, "g1", ""}, {11, "al-a", ""}, {12, "al-t", ""}, {13, "g2", record.StateInterrupted}}
	got := readReleased(t, s)
	for i := range got {
		if got[i].ID == "g1" {
			got[i].State = "" // g1's payload state is its own
		}
	}
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Errorf("released (-want +got):\n%s", diff)
	}
	for _, r := range old {
		back, err := s.Record(t.Context(), r.ID)
		if err != nil || string(back.Data) != string(r.Data) || !back.Time.Equal(r.Time) {
			t.Errorf("Record(%s) = %s at %s, %v; want %s at %s", r.ID, back.Data, back.Time, err, r.Data, r.Time)
		}
	}
	scopes := map[string]string{}
	rows, err := s.rdb.QueryContext(t.Context(), `SELECT id, coalesce(scope, 'NULL') FROM records`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, scope string
		if err := rows.Scan(&id, &scope); err != nil {
			t.Fatal(err)
		}
		scopes[id] = scope
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	wantScopes := map[string]string{"g1": "NULL", "g2": "NULL", "al-a": "management_group:mg-a", "al-t": "tenant:"}
	if diff := gocmp.Diff(wantScopes, scopes); diff != "" {
		t.Errorf("scope column (-want +got):\n%s", diff)
	}
	var dep string
	var status int
	if err := s.rdb.QueryRowContext(t.Context(), `SELECT deployment, status FROM records WHERE id = 'g1'`).Scan(&dep, &status); err != nil ||
		dep != "gpt-4o" || status != 200 {
		t.Errorf("g1's deployment and status columns = %q, %d, %v; want gpt-4o, 200", dep, status, err)
	}
	if got := allRecords(t, s, Filter{Kind: record.KindGatewayRequest, Deployment: "gpt-4o", Status: 200}); len(got) != 1 || got[0].ID != "g1" {
		t.Errorf("Filter on the migrated columns found %v, want g1", ids(got))
	}
	// The keys: the events and the call again add nothing.
	if n := mustAppend(t, s, append(old, gw)...); n != 0 {
		t.Errorf("re-appending the migrated records added %d", n)
	}
	var objects []string
	rows, err = s.rdb.QueryContext(t.Context(), `SELECT type || ' ' || name FROM sqlite_schema WHERE tbl_name = 'records' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			t.Fatal(err)
		}
		objects = append(objects, o)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	wantObjects := []string{"index records_deployment_time", "index records_id", "index records_kind_scope_time",
		"index records_principal_time", "index records_status_time", "index records_throttled_time",
		"table records", "trigger usage_hourly_delete"}
	if diff := gocmp.Diff(wantObjects, objects); diff != "" {
		t.Errorf("records' indexes and triggers (-want +got):\n%s", diff)
	}
}

// TestGatewayColumnsMatchSQL: the writer fills a gateway call's principal,
// deployment and status columns in Go; the filters compare them with what
// migration 8 computed in SQL for the records before it, so both must agree.
func TestGatewayColumnsMatchSQL(t *testing.T) {
	s := openStore(t, Config{})
	for _, data := range []string{
		`{"principal":{"kind":"key","key_name":"bot","upn":"shadow"},"deployment":"gpt-4o","status":200}`,
		`{"principal":{"upn":"bob@contoso.com","oid":"o"},"status":429,"deployment":"a\"b"}`,
		`{"principal":{"oid":"o-1"},"status":200.5}`,
		`{"principal":{"key_name":""},"deployment":5,"status":true}`,
		`{"principal":{},"deployment":null,"status":{"a":[1,2]}}`,
		`{"status":500,"status":200,"deployment":"first","deployment":"second"}`,
		`{"state":"denied"}`,
	} {
		var want [3]any
		if err := s.rdb.QueryRowContext(t.Context(), `SELECT `+principalSQL+`, json_extract(data, '$.deployment'),
			json_extract(data, '$.status') FROM (SELECT ? AS data)`, data).Scan(&want[0], &want[1], &want[2]); err != nil {
			t.Fatal(err)
		}
		r := row{kind: string(record.KindGatewayRequest), data: data}.withColumns()
		// Through the driver, as the values are stored.
		var got [3]any
		if err := s.rdb.QueryRowContext(t.Context(), `SELECT ?, ?, ?`, r.principal, r.deployment, r.status).Scan(&got[0], &got[1], &got[2]); err != nil {
			t.Fatal(err)
		}
		if diff := gocmp.Diff(want, got); diff != "" {
			t.Errorf("%s: columns (-SQL +Go):\n%s", data, diff)
		}
	}
}
