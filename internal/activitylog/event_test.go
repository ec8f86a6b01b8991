package activitylog

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tapline/tapline/internal/azure"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordedBody returns the ResponseBody of an azure-sdk-assets recording
// entry, as the bytes the service sent (re-marshalled by the recorder).
func recordedBody(t *testing.T, name string) []byte {
	var e struct {
		ResponseBody json.RawMessage
	}
	if err := json.Unmarshal(readFixture(t, name), &e); err != nil {
		t.Fatal(err)
	}
	return e.ResponseBody
}

// TestFixturesParse proves the Azure SDK's recorded responses and the spec
// examples parse with the types the collector uses: List with a null
// "@nextLink", descendants without nextLink and with both subscription type
// spellings, and the spec's activity-log page with its claims.
func TestFixturesParse(t *testing.T) {
	var l groupList
	if err := json.Unmarshal(recordedBody(t, "mg-list.recorded.json"), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Value) != 1 || l.Value[0].Name != "groupidjAAOpd" || l.NextLink != nil ||
		l.Value[0].Properties.TenantID != "00000000-0000-0000-0000-000000000000" {
		t.Errorf("mg-list = %+v", l)
	}
	var d descendantList
	if err := json.Unmarshal(recordedBody(t, "mg-descendants.recorded.json"), &d); err != nil || len(d.Value) != 0 || d.NextLink != nil {
		t.Errorf("mg-descendants recorded = %+v, %v", d, err)
	}
	var spec struct {
		Responses struct {
			OK struct {
				Body json.RawMessage `json:"body"`
			} `json:"200"`
		} `json:"responses"`
	}
	if err := json.Unmarshal(readFixture(t, "mg-descendants.spec-example.json"), &spec); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(spec.Responses.OK.Body, &d); err != nil || len(d.Value) == 0 {
		t.Fatalf("mg-descendants spec = %+v, %v", d, err)
	}
	for _, v := range d.Value {
		if v.Type == "" {
			t.Errorf("descendant %s has no type", v.Name)
		}
	}
	if err := json.Unmarshal(readFixture(t, "subscription-activity-log.spec-example.json"), &spec); err != nil {
		t.Fatal(err)
	}
	events, next, err := decodePage(spec.Responses.OK.Body)
	if err != nil || len(events) != 1 || next == "" {
		t.Fatalf("spec page: %d events, next %q, err %v", len(events), next, err)
	}
	rec, err := NewRecord(Scope{Kind: record.ScopeSubscription, ID: "089bd33f-d4ec-47fe-8ba5-0753aa5c5b33"}, events[0], time.Time{}, "2026-11-20T12:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	var p record.ActivityLog
	if err := json.Unmarshal(rec.Data, &p); err != nil {
		t.Fatal(err)
	}
	want := record.Identity{OID: "2468adf0-8211-44e3-95xq-85137af64708", AppID: "c44b4083-3bq0-49c1-b47d-974e53cbdf3c", UPN: "admin@contoso.com"}
	if d := cmp.Diff(want, p.Identity); d != "" {
		t.Errorf("identity (-want +got):\n%s", d)
	}
	if p.CollectionRun != "2026-11-20T12:00:00Z" {
		t.Errorf("collection_run = %q, want the run given", p.CollectionRun)
	}
	if p.Caller != "admin@contoso.com" || p.OperationName != "microsoft.support/supporttickets/write" || p.Level != "Informational" {
		t.Errorf("payload = %+v", p)
	}
	if !bytes.Equal(p.Event, events[0]) || rec.ID != "al-"+strings.ToLower(p.EventDataID) {
		t.Errorf("event or id changed: id %s", rec.ID)
	}
}

// TestErrorShapes proves both ARM error shapes parse, whatever the key
// casing: the recorded flat 400 (2019 Code/Message, 2021 code/message) and
// the ARM envelope.
func TestErrorShapes(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"flat 2019", `{"Code":"BadRequest","Message":"The start time cannot be more than 90 days in the past."}`},
		{"flat 2021", `{"code":"BadRequest","message":"The start time cannot be more than 90 days in the past."}`},
		{"envelope", `{"error":{"code":"BadRequest","message":"The start time cannot be more than 90 days in the past."}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := azure.ParseARMError(400, []byte(tc.body))
			want := &azure.ARMError{StatusCode: 400, Code: "BadRequest", Message: "The start time cannot be more than 90 days in the past."}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	// The recorded bodies are in the YAML fixture, verbatim.
	y := string(readFixture(t, "activity-log-error-400-start-time-too-old.recorded.yaml"))
	if !strings.Contains(y, `'{"Code":"BadRequest","Message":"The start time cannot be more than`) ||
		!strings.Contains(y, `'{"code":"BadRequest","message":"The start time cannot be more than`) {
		t.Error("fixture no longer holds both recorded casings")
	}
}

// TestEventBytesSurvive collects hand-written events through the emulator
// and proves each is stored byte for byte: nested objects, JSON inside
// strings (Policy properties), HTML characters that encoding/json would
// escape, numbers beyond 2^53, odd spacing and key order.
func TestEventBytesSurvive(t *testing.T) {
	evs := []string{
		string(readFixture(t, "activity-log-event-administrative.docs-sample.json")),
		`{"eventDataId":"b2","eventTimestamp":"2026-11-19T10:00:00.1234567Z","properties":{"policies":"[{\"policyDefinitionId\":\"/p/<x>&y\",\"n\":1}]","ancestors":"mg-a,mg-b"},"big":12345678901234567890,"z":1,  "a" : [ 1.50, {"k":null} ]}`,
		`{"eventTimestamp":"2026-11-19T11:00:00Z","description":"no eventDataId \u00e9 <b>"}`,
	}
	// The docs sample is pretty-printed with its own times: give it one in
	// the window by replacing only its eventTimestamp value.
	var ts struct{ EventTimestamp string }
	if err := json.Unmarshal([]byte(evs[0]), &ts); err != nil {
		t.Fatal(err)
	}
	evs[0] = strings.TrimSpace(strings.Replace(evs[0], ts.EventTimestamp, "2026-11-19T09:00:00.5Z", 1))
	raws := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		raws[i] = json.RawMessage(e)
	}
	tenant := emulator.ARMTenant{Events: map[string][]json.RawMessage{emulator.ARMGroupScope(testTenant): raws}}
	clk := &clock{t: t0}
	arm := newEmulator(t, tenant, 2, clk)
	st := openStore(t, "")
	sum, err := New(testConfig(clk), newARMClient(t, serve(t, arm)), st, nil).Run(t.Context(), RunOptions{})
	if err != nil || sum.Failed() != 0 {
		t.Fatalf("run: %v %+v", err, sum)
	}
	got := activity(t, st)
	if len(got) != len(evs) {
		t.Fatalf("stored %d, want %d", len(got), len(evs))
	}
	stored := map[string]bool{}
	for id, p := range got {
		stored[string(p.Event)] = true
		if p.EventDataID == "" && !strings.HasPrefix(id, "al-sha256-") {
			t.Errorf("event without eventDataId has id %s", id)
		}
	}
	for i, e := range evs {
		if !stored[e] {
			t.Errorf("event %d not stored byte for byte", i)
		}
	}
}

// TestDeniedGroupReported denies one group: List hides it, descendants
// show it, its log answers 403. It proves the group is reported as a failed
// scope with the 403 and every other group is collected.
func TestDeniedGroupReported(t *testing.T) {
	clk := &clock{t: t0}
	arm := newEmulator(t, bigTenant(), 200, clk)
	arm.Deny("mg-4-00100")
	st := openStore(t, "")
	sum, err := New(testConfig(clk), newARMClient(t, serve(t, arm)), st, nil).Run(t.Context(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Scopes) != bigGroups+1 || sum.Failed() != 1 {
		t.Fatalf("%d scopes, %d failed; want %d, 1", len(sum.Scopes), sum.Failed(), bigGroups+1)
	}
	r := byScope(sum)[Scope{Kind: record.ScopeManagementGroup, ID: "mg-4-00100"}.Key()]
	if !azure.IsStatus(r.Err, http.StatusForbidden) {
		t.Errorf("denied group err = %v, want a 403", r.Err)
	}
	if got := len(activity(t, st)); got != bigGroups*bigPerScope {
		t.Errorf("stored %d, want %d", got, bigGroups*bigPerScope)
	}
}

// TestWindow proves the window arithmetic: backfill without checkpoint,
// checkpoint less overlap, --since, and the clamp to 90 days.
func TestWindow(t *testing.T) {
	clk := &clock{t: t0}
	st := openStore(t, "")
	cfg := testConfig(clk)
	sc := Scope{Kind: record.ScopeTenant}
	cp := t0.Add(-2 * time.Hour)
	for _, tc := range []struct {
		name        string
		backfill    time.Duration
		since       time.Duration
		checkpoint  bool
		wantFrom    time.Time
		wantClamped bool
	}{
		{name: "backfill", backfill: 24 * time.Hour, wantFrom: t0.Add(-24 * time.Hour)},
		{name: "checkpoint less overlap", backfill: 24 * time.Hour, checkpoint: true, wantFrom: cp.Add(-30 * time.Minute)},
		{name: "since wins", backfill: 24 * time.Hour, since: 72 * time.Hour, checkpoint: true, wantFrom: t0.Add(-72 * time.Hour)},
		{name: "clamped", backfill: 100 * 24 * time.Hour, wantFrom: t0.Add(-Retention + retentionMargin), wantClamped: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := st
			if !tc.checkpoint {
				st = openStore(t, "")
			} else if _, err := st.AppendWithCheckpoint(t.Context(), nil, sc.Key(), cp); err != nil {
				t.Fatal(err)
			}
			cfg.Backfill = tc.backfill
			c := New(cfg, nil, st, nil)
			from, to, clamped, err := c.window(t.Context(), sc, t0, tc.since)
			if err != nil || !from.Equal(tc.wantFrom) || !to.Equal(t0.Add(-5*time.Minute)) || clamped != tc.wantClamped {
				t.Errorf("window = %v, %v, %v, %v; want from %v clamped %v", from, to, clamped, err, tc.wantFrom, tc.wantClamped)
			}
		})
	}
	if got := filter(t0, t0.Add(time.Hour), false); got != "eventTimestamp ge '2026-11-20T12:00:00Z' and eventTimestamp le '2026-11-20T13:00:00Z'" {
		t.Errorf("filter = %s", got)
	}
	if got := filter(t0, t0.Add(time.Hour), true); got != "eventTimestamp ge '2026-11-20T12:00:00Z' and eventTimestamp le '2026-11-20T13:00:00Z' and eventChannels eq 'Admin, Operation'" {
		t.Errorf("tenant filter = %s", got)
	}
}

// TestDryRunWritesNothing proves --dry-run reads every page and writes
// neither records nor checkpoints.
func TestDryRunWritesNothing(t *testing.T) {
	clk := &clock{t: t0}
	arm := newEmulator(t, emulator.GenerateTenant(emulator.ARMTenantSpec{Groups: 5, Levels: 2, EventsPerScope: 9,
		Start: t0.Add(-48 * time.Hour), End: t0.Add(-time.Hour)}), 4, clk)
	st := openStore(t, "")
	sum, err := New(testConfig(clk), newARMClient(t, serve(t, arm)), st, nil).Run(t.Context(), RunOptions{DryRun: true})
	if err != nil || sum.Failed() != 0 {
		t.Fatal(err)
	}
	if events, added, _, pages := totals(sum); events != 6*9 || added != 0 || pages != 6*3 {
		t.Errorf("dry run: events %d new %d pages %d", events, added, pages)
	}
	if n := len(activity(t, st)); n != 0 {
		t.Errorf("dry run stored %d records", n)
	}
	if _, ok, _ := st.Checkpoint(t.Context(), Scope{Kind: record.ScopeManagementGroup, ID: testTenant}.Key()); ok {
		t.Error("dry run set a checkpoint")
	}
}

// TestTenantAndSubscriptionScopes proves a configured list of groups, the
// tenant-level log and named subscriptions are each pulled from their own
// endpoint and api-version, with records naming their scope.
func TestTenantAndSubscriptionScopes(t *testing.T) {
	tenant := emulator.GenerateTenant(emulator.ARMTenantSpec{Groups: 4, Levels: 2, SubscriptionsPerGroup: 1, EventsPerScope: 6,
		Start: t0.Add(-48 * time.Hour), End: t0.Add(-time.Hour), Seed: 11})
	clk := &clock{t: t0}
	arm := newEmulator(t, tenant, 4, clk)
	sub := tenant.Subscriptions[0].ID
	cfg := testConfig(clk)
	cfg.Scopes = ScopeSelection{Groups: []string{tenant.Groups[1].ID}, Tenant: true, Subscriptions: []string{sub}}
	st := openStore(t, "")
	sum, err := New(cfg, newARMClient(t, serve(t, arm)), st, nil).Run(t.Context(), RunOptions{})
	if err != nil || sum.Failed() != 0 || len(sum.Scopes) != 3 {
		t.Fatalf("run: %v, %+v", err, sum)
	}
	kinds := map[string]int{}
	for _, p := range activity(t, st) {
		kinds[p.Scope.Kind+":"+p.Scope.ID]++
	}
	want := map[string]int{
		record.ScopeManagementGroup + ":" + tenant.Groups[1].ID: 6,
		record.ScopeTenant + ":":                                6,
		record.ScopeSubscription + ":" + sub:                    6,
	}
	if d := cmp.Diff(want, kinds); d != "" {
		t.Errorf("records per scope (-want +got):\n%s", d)
	}
	for _, r := range arm.Requests() {
		if strings.Contains(r.Path, "/eventtypes/") && r.Status != http.StatusOK {
			t.Errorf("%s?%s answered %d", r.Path, r.Query, r.Status)
		}
	}
}

// TestDiagnosticSettingsAuditApply proves audit lists the groups without a
// covering setting (and reports a denied one), and apply creates a setting
// that audit then finds covering.
func TestDiagnosticSettingsAuditApply(t *testing.T) {
	clk := &clock{t: t0}
	arm := newEmulator(t, emulator.GenerateTenant(emulator.ARMTenantSpec{Groups: 3, Levels: 1}), 0, clk)
	arm.Deny("mg-1-00002")
	c := newARMClient(t, serve(t, arm))
	groups := []string{testTenant, "mg-1-00000", "mg-1-00002"}
	st := AuditDiagnosticSettings(t.Context(), c, groups)
	if st[0].Covered || st[1].Covered || !azure.IsStatus(st[2].Err, http.StatusForbidden) {
		t.Fatalf("audit before = %+v", st)
	}
	const ws = "/subscriptions/9cf7cc0a-0ba1-4624-bc82-97e1ee25dc45/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/ws"
	if err := ApplyDiagnosticSetting(t.Context(), c, "mg-1-00000", "tapline", ws); err != nil {
		t.Fatal(err)
	}
	st = AuditDiagnosticSettings(t.Context(), c, groups)
	if st[0].Covered || !st[1].Covered || !cmp.Equal(st[1].Settings, []string{"tapline"}) {
		t.Errorf("audit after = %+v", st)
	}
	if err := ApplyDiagnosticSetting(t.Context(), c, "mg-1-00002", "tapline", ws); !azure.IsStatus(err, http.StatusForbidden) {
		t.Errorf("apply on a denied group = %v", err)
	}
}
