package emulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// armGenTenant is the small tenant with PerScope generated events a scope
// over the 30 days before armTestNow.
func armGenTenant(perScope int) ARMTenant {
	t := armSmallTenant()
	t.Generated = ARMGenerated{PerScope: perScope, Start: armTestNow.Add(-30 * 24 * time.Hour), Step: 30 * 24 * time.Hour / time.Duration(perScope), Seed: 7}
	return t
}

// armExpectedIDs lists the eventDataIds of the generated events of scope in
// [from, to], computed from the generator, not through HTTP.
func armExpectedIDs(a *ARM, scope string, from, to time.Time) []string {
	sc := a.h.scopes[armScopeKey(scope)]
	lo, hi := a.gen.indexRange(sc, armTicks(from), armTicks(to))
	var ids []string
	for i := lo; i < hi; i++ {
		e := a.gen.event(sc, i)
		ids = append(ids, armUUID(e.dataID[0], e.dataID[1]))
	}
	return ids
}

var armTimestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$`)

// TestARMActivityLogPaging: a window's events come back newest first, each
// exactly once across pages of PageSize, nextLink on every page but the
// last, where the key is absent; timestamps carry 7 fractional digits.
func TestARMActivityLogPaging(t *testing.T) {
	const pageSize = 37
	a, srv := newTestARM(t, func(c *ARMConfig) { c.Tenant = armGenTenant(5000); c.PageSize = pageSize })
	from, to := armTestNow.Add(-3*24*time.Hour), armTestNow.Add(-24*time.Hour)
	scope := ARMGroupScope(armTestCorpID)
	want := armExpectedIDs(a, scope, from, to)
	// Explicit events in the window, one at the very time of a generated one.
	sc := a.h.scopes[armScopeKey(scope)]
	lo, _ := a.gen.indexRange(sc, armTicks(from), armTicks(to))
	tie := armTime(a.gen.ticksAt(sc, lo+5))
	a.AddEvents(scope,
		armTestEvent("explicit-tie", scope, tie, ""),
		armTestEvent("explicit-first", scope, from, ""),
		armTestEvent("explicit-last", scope, to, ""),
		armTestEvent("explicit-outside", scope, to.Add(time.Millisecond), ""),
	)
	want = append(want, "explicit-tie", "explicit-first", "explicit-last")

	var got []string
	var prev time.Time
	pages := 0
	for u := armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(from, to, "")); u != ""; pages++ {
		var raw map[string]json.RawMessage
		armGetJSON(t, u, &raw)
		var page armPage
		armGetJSON(t, u, &page)
		u = ""
		if page.NextLink != nil {
			u = *page.NextLink
			if len(page.Value) != pageSize {
				t.Errorf("page %d has %d events and a nextLink, want %d", pages, len(page.Value), pageSize)
			}
		} else if _, ok := raw["nextLink"]; ok {
			t.Errorf("last page carries a nextLink key: %s", raw["nextLink"])
		}
		for _, ev := range page.Value {
			h := armHeadOf(t, ev)
			if !armTimestampRE.MatchString(h.EventTimestamp) {
				t.Errorf("eventTimestamp %q lacks 7 fractional digits", h.EventTimestamp)
			}
			ts, err := time.Parse(time.RFC3339Nano, h.EventTimestamp)
			if err != nil {
				t.Fatal(err)
			}
			if ts.Before(from) || ts.After(to) {
				t.Errorf("event %s at %v outside [%v, %v]", h.EventDataID, ts, from, to)
			}
			if !prev.IsZero() && ts.After(prev) {
				t.Errorf("event %s at %v after its predecessor at %v: not newest first", h.EventDataID, ts, prev)
			}
			prev = ts
			got = append(got, h.EventDataID)
		}
	}
	if pages < 5 {
		t.Errorf("%d pages for %d events", pages, len(want))
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events across pages (-want +got):\n%s", diff)
	}
}

// TestARMActivityLogSameBytes: an event has the same bytes on every read,
// whatever page it falls on and whichever instance serves it.
func TestARMActivityLogSameBytes(t *testing.T) {
	from, to := armTestNow.Add(-2*24*time.Hour), armTestNow
	seen := map[string][]byte{}
	for _, size := range []int{50, 7, 50, 13} {
		_, srv := newTestARM(t, func(c *ARMConfig) { c.Tenant = armGenTenant(3000); c.PageSize = size })
		for _, scope := range []string{armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(from, to, "")),
			srv.URL + "/subscriptions/" + armTestSubA + armLogSuffix + "?" + armAPILog + "&" + armFilterQ(from, to, "")} {
			evs, _ := armFollow(t, scope)
			if len(evs) < 100 {
				t.Fatalf("%d events", len(evs))
			}
			for _, ev := range evs {
				id := armHeadOf(t, ev).EventDataID
				if prev, ok := seen[id]; ok && !bytes.Equal(prev, ev) {
					t.Fatalf("event %s changed between reads:\n%s\n%s", id, prev, ev)
				}
				seen[id] = ev
			}
		}
	}
}

// TestARMActivityLogKeepsBytes: explicit events are served in exactly the
// bytes given, odd whitespace and escapes included, and generated events
// include one with a description full of escapes.
func TestARMActivityLogKeepsBytes(t *testing.T) {
	scope := ARMGroupScope(armTestCorpID)
	odd := json.RawMessage("{\n  \"eventDataId\" :  \"odd-1\",\t\"eventTimestamp\":\"2026-03-01T10:00:00.1234567Z\",\r\n" +
		"  \"description\": \"tab\\there \\u00e9 \\\"q\\\" \\u2028 \\/ \\ud83d\\ude00\" , \"resourceId\" : \"" + scope + "\",\n" +
		"  \"properties\": {\"policies\": \"[{\\\"policyDefinitionEffect\\\" : \\\"Deny\\\"}]\"} }")
	_, srv := newTestARM(t, func(c *ARMConfig) {
		c.Tenant = armGenTenant(30 * 24 * 60) // one a minute
		c.Tenant.Events = map[string][]json.RawMessage{scope: {odd}}
	})
	from, to := armTestNow.Add(-4*time.Hour), armTestNow
	for range 2 {
		r := armDo(t, http.MethodGet, armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(from, to, "")), armTestToken, "")
		if !bytes.Contains(r.body, odd) {
			t.Fatalf("the explicit event is not served verbatim:\n%s", r.body)
		}
		if !bytes.Contains(r.body, []byte(armOddDescription)) {
			t.Fatal("no generated event carries the escaped description")
		}
		if !json.Valid(r.body) {
			t.Fatal("page is not valid JSON")
		}
	}
}

// TestARMActivityLogClauses: each optional clause selects what it names,
// case-insensitively, also when few events match and pages must skip.
func TestARMActivityLogClauses(t *testing.T) {
	a, srv := newTestARM(t, func(c *ARMConfig) { c.Tenant = armGenTenant(2000); c.PageSize = 5 })
	from, to := armTestNow.Add(-3*24*time.Hour), armTestNow
	subLog := func(extra string) string {
		return srv.URL + "/subscriptions/" + armTestSubA + armLogSuffix + "?" + armAPILog + "&" + armFilterQ(from, to, extra)
	}
	all, _ := armFollow(t, subLog(""))
	type ev struct {
		EventDataID          string `json:"eventDataId"`
		CorrelationID        string `json:"correlationId"`
		ResourceID           string `json:"resourceId"`
		ResourceGroupName    string `json:"resourceGroupName"`
		ResourceProviderName struct {
			Value string `json:"value"`
		} `json:"resourceProviderName"`
	}
	decode := func(raws []json.RawMessage) []ev {
		out := make([]ev, len(raws))
		for i, r := range raws {
			if err := json.Unmarshal(r, &out[i]); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	evs := decode(all)
	ids := func(keep func(ev) bool) []string {
		var out []string
		for _, e := range evs {
			if keep(e) {
				out = append(out, e.EventDataID)
			}
		}
		return out
	}
	pick := evs[len(evs)/3]
	cases := []struct {
		clause string
		keep   func(ev) bool
	}{
		{"resourceGroupName eq 'RG-DATA'", func(e ev) bool { return e.ResourceGroupName == "rg-data" }},
		{"resourceProvider eq 'microsoft.storage'", func(e ev) bool { return e.ResourceProviderName.Value == "Microsoft.Storage" }},
		{"correlationId eq '" + pick.CorrelationID + "'", func(e ev) bool { return e.CorrelationID == pick.CorrelationID }},
		{"resourceUri eq '" + strings.ToUpper(pick.ResourceID) + "'", func(e ev) bool { return strings.EqualFold(e.ResourceID, pick.ResourceID) }},
		{"resourceGroupName eq 'no-such-group'", func(ev) bool { return false }},
	}
	for _, tc := range cases {
		t.Run(tc.clause, func(t *testing.T) {
			got, _ := armFollow(t, subLog(tc.clause))
			var gotIDs []string
			for _, e := range decode(got) {
				gotIDs = append(gotIDs, e.EventDataID)
			}
			want := ids(tc.keep)
			if diff := cmp.Diff(want, gotIDs); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if tc.clause != cases[len(cases)-1].clause && len(want) == 0 {
				t.Error("the clause matches nothing: a weak test")
			}
		})
	}

	// The tenant log takes eventChannels, then one clause; its events are
	// management-group writes and root-scope role assignments.
	tenantLog := srv.URL + "/providers/microsoft.insights/eventtypes/management/values?" + armAPILog + "&" +
		armFilterQ(from, to, "eventChannels eq 'Admin, Operation' and resourceProvider eq 'Microsoft.Management'")
	got, _ := armFollow(t, tenantLog)
	if len(got) == 0 {
		t.Fatal("no management group writes in the tenant log")
	}
	for _, e := range decode(got) {
		if e.ResourceProviderName.Value != "Microsoft.Management" || a.h.group(strings.TrimPrefix(e.ResourceID, armMGPath+"/")) == nil {
			t.Errorf("tenant event %+v", e)
		}
	}
}

// TestARMSelect: $select keeps only the named fields, their bytes unchanged.
func TestARMSelect(t *testing.T) {
	_, srv := newTestARM(t, func(c *ARMConfig) { c.Tenant = armGenTenant(1000) })
	from, to := armTestNow.Add(-5*24*time.Hour), armTestNow
	full, _ := armFollow(t, armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(from, to, "")))
	sel, _ := armFollow(t, armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(from, to, ""), "$select=eventDataId,%20Properties,resourceUri"))
	if len(full) != len(sel) || len(sel) == 0 {
		t.Fatalf("%d events with $select, %d without", len(sel), len(full))
	}
	for i := range sel {
		var s, f map[string]json.RawMessage
		_ = json.Unmarshal(sel[i], &s)
		_ = json.Unmarshal(full[i], &f)
		if keys := armKeys(s); !slices.Equal(keys, []string{"eventDataId", "properties", "resourceId"}) {
			t.Fatalf("selected keys %v", keys)
		}
		for k, v := range s {
			if !bytes.Equal(v, f[k]) {
				t.Errorf("%s: %s, full read %s", k, v, f[k])
			}
		}
	}
}

// TestARMAddEvents: a late event shows up in any window that covers its
// timestamp, in time order, and not in others; events added while a client
// pages are neither repeated nor do they shift the pages.
func TestARMAddEvents(t *testing.T) {
	a, srv := newTestARM(t, func(c *ARMConfig) { c.Tenant = armGenTenant(30 * 24 * 60); c.PageSize = 20 })
	scope := ARMGroupScope(armTestCorpID)
	from, to := armTestNow.Add(-2*time.Hour), armTestNow
	before, _ := armFollow(t, armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(from, to, "")))

	late := armTestNow.Add(-90*time.Minute + 123456700*time.Nanosecond)
	a.AddEvents(scope, armTestEvent("late-1", scope, late, ""))
	after, _ := armFollow(t, armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(from, to, "")))
	if len(after) != len(before)+1 {
		t.Fatalf("%d events after AddEvents, %d before", len(after), len(before))
	}
	at := slices.IndexFunc(after, func(r json.RawMessage) bool { return armHeadOf(t, r).EventDataID == "late-1" })
	if at < 0 {
		t.Fatal("late event missing")
	}
	ts := func(r json.RawMessage) time.Time {
		v, _ := time.Parse(time.RFC3339Nano, armHeadOf(t, r).EventTimestamp)
		return v
	}
	if at == 0 || at == len(after)-1 || ts(after[at-1]).Before(late) || ts(after[at+1]).After(late) {
		t.Errorf("late event at position %d of %d is out of time order", at, len(after))
	}
	other, _ := armFollow(t, armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(late.Add(time.Second), to, "")))
	for _, r := range other {
		if armHeadOf(t, r).EventDataID == "late-1" {
			t.Error("late event in a window that does not cover it")
		}
	}

	// Add events mid-paging: one older than what was served (ahead of the
	// reader: it must appear) and one newer (behind: it must not repeat
	// anything nor shift the pages).
	var seen []string
	u := armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(from, to, ""))
	for page := 0; u != ""; page++ {
		var p armPage
		armGetJSON(t, u, &p)
		for _, r := range p.Value {
			seen = append(seen, armHeadOf(t, r).EventDataID)
		}
		if page == 1 {
			a.AddEvents(scope, armTestEvent("ahead", scope, from.Add(time.Minute+time.Millisecond), ""),
				armTestEvent("behind", scope, to.Add(-time.Second), ""))
		}
		u = ""
		if p.NextLink != nil {
			u = *p.NextLink
		}
	}
	if !slices.Contains(seen, "ahead") || slices.Contains(seen, "behind") {
		t.Errorf("ahead seen %v, behind seen %v", slices.Contains(seen, "ahead"), slices.Contains(seen, "behind"))
	}
	sorted := slices.Clone(seen)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(seen) {
		t.Error("an event was served twice while events were added")
	}
	if len(seen) != len(after)+1 {
		t.Errorf("%d events served while adding, want %d", len(seen), len(after)+1)
	}
}

// TestARMEventsAppearAsTimePasses: events whose time has not come are not
// served; they appear as the clock passes them; the read quota resets
// hourly. Time is synctest's.
func TestARMEventsAppearAsTimePasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		tn := GenerateTenant(ARMTenantSpec{Groups: 2, Levels: 1, EventsPerScope: 120, Start: start, End: start.Add(2 * time.Hour), Seed: 3})
		a, err := NewARM(ARMConfig{TenantID: armTestTenant, Tenant: tn}, nil)
		if err != nil {
			t.Fatal(err)
		}
		get := func() (n int, reads string) {
			req := httptest.NewRequest(http.MethodGet, armGroupLogURL("", "mg-1-00000", armFilterQ(start, start.Add(3*time.Hour), "")), nil)
			req.Header.Set("Authorization", "Bearer x")
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, req)
			var p armPage
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			return len(p.Value), rec.Header().Get("x-ms-ratelimit-remaining-tenant-reads")
		}
		n0, r0 := get()
		time.Sleep(30 * time.Minute)
		n1, r1 := get()
		if n1-n0 != 30 {
			t.Errorf("%d events at the start, %d half an hour later: want 30 more (one a minute)", n0, n1)
		}
		if r0 != "11999" || r1 != "11998" {
			t.Errorf("remaining reads %s then %s", r0, r1)
		}
		time.Sleep(2 * time.Hour)
		if n2, r2 := get(); n2 != 120 || r2 != "11999" {
			t.Errorf("after 150 minutes: %d events (want all 120), remaining reads %s (want a fresh hour)", n2, r2)
		}
	})
}

// TestARMEventShape checks generated events against the EventData schema
// (azure-contracts.md §2.5): string claims with long URI keys, properties
// whose values are strings with JSON inside, the id built from resourceId,
// eventDataId and .NET ticks, MG-scoped resources in MG logs, and the mix of
// operations.
func TestARMEventShape(t *testing.T) {
	_, srv := newTestARM(t, func(c *ARMConfig) { c.Tenant = armGenTenant(3000) })
	evs, _ := armFollow(t, armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(armTestNow.Add(-20*24*time.Hour), armTestNow, "")))
	ops := map[string]int{}
	categories := map[string]int{}
	for _, raw := range evs {
		var e struct {
			Authorization struct{ Action, Role, Scope string }
			Claims        map[string]any
			Properties    map[string]any
			EventDataID   string
			ID            string
			ResourceID    string
			OperationName struct{ Value string }
			Category      struct{ Value string }
			Level         string
			EventTS       string `json:"eventTimestamp"`
			SubmissionTS  string `json:"submissionTimestamp"`
			TenantID      string
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		ops[e.OperationName.Value]++
		categories[e.Category.Value]++
		if !strings.HasPrefix(e.ResourceID, ARMGroupScope(armTestCorpID)+"/providers/") || e.Authorization.Scope != e.ResourceID {
			t.Errorf("resourceId %q, authorization.scope %q: want MG-scoped", e.ResourceID, e.Authorization.Scope)
		}
		ts, _ := time.Parse(time.RFC3339Nano, e.EventTS)
		sub, _ := time.Parse(time.RFC3339Nano, e.SubmissionTS)
		if !armTimestampRE.MatchString(e.SubmissionTS) || !sub.After(ts) {
			t.Errorf("submissionTimestamp %s for event at %s", e.SubmissionTS, e.EventTS)
		}
		wantID := e.ResourceID + "/events/" + e.EventDataID + "/ticks/" + strconv.FormatInt(armTicks(ts)+armEpochTicks, 10)
		if e.ID != wantID {
			t.Errorf("id %q, want %q", e.ID, wantID)
		}
		if e.Claims["http://schemas.microsoft.com/identity/claims/tenantid"] != armTestTenant || e.TenantID != armTestTenant {
			t.Errorf("tenant in claims %v / tenantId %v", e.Claims["http://schemas.microsoft.com/identity/claims/tenantid"], e.TenantID)
		}
		for k, v := range e.Claims {
			if _, ok := v.(string); !ok {
				t.Errorf("claim %s is %T, want string", k, v)
			}
		}
		for k, v := range e.Properties {
			s, ok := v.(string)
			if !ok {
				t.Errorf("property %s is %T, want string", k, v)
				continue
			}
			switch k {
			case "policies":
				var pol []map[string]any
				if err := json.Unmarshal([]byte(s), &pol); err != nil || len(pol) == 0 || pol[0]["policyDefinitionEffect"] == nil {
					t.Errorf("policies %q is not a JSON array of policies: %v", s, err)
				}
			case "requestbody", "responseBody":
				if !json.Valid([]byte(s)) {
					t.Errorf("%s %q is not JSON", k, s)
				}
			case "ancestors":
				if !strings.HasPrefix(s, armTestCorpID+",mg-landing,"+armTestTenant) {
					t.Errorf("ancestors %q", s)
				}
			}
		}
		if e.Category.Value == "Policy" && e.Level == "Informational" {
			t.Errorf("Policy event at level %s", e.Level)
		}
	}
	for _, op := range []string{"Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/policyAssignments/write",
		"Microsoft.Authorization/policies/audit/action", "Microsoft.Authorization/policies/deny/action"} {
		if ops[op] == 0 {
			t.Errorf("no %s events among %d: %v", op, len(evs), ops)
		}
	}
	if categories["Policy"] == 0 || categories["Administrative"] == 0 {
		t.Errorf("categories %v", categories)
	}
}

// TestARMConcurrentReadsAndAdds pages through a log from several clients
// while events are added and groups denied (run with -race).
func TestARMConcurrentReadsAndAdds(t *testing.T) {
	a, srv := newTestARM(t, func(c *ARMConfig) { c.Tenant = armGenTenant(30 * 24 * 60); c.PageSize = 50 })
	scope := ARMGroupScope(armTestCorpID)
	from, to := armTestNow.Add(-6*time.Hour), armTestNow
	first := armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(from, to, ""))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			n := 0
			for u := first; u != ""; {
				req, _ := http.NewRequest(http.MethodGet, u, nil)
				req.Header.Set("Authorization", "Bearer "+armTestToken)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var p armPage
				err = json.NewDecoder(resp.Body).Decode(&p)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
					return
				}
				n += len(p.Value)
				u = ""
				if p.NextLink != nil {
					u = *p.NextLink
				}
			}
			if n < 6*60 {
				t.Errorf("a client read %d events, want at least %d", n, 6*60)
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			a.AddEvents(scope, armTestEvent("c-"+strconv.Itoa(i), scope, from.Add(time.Duration(i)*time.Minute), ""))
			a.Deny("mg-sandbox")
			a.Inject(ARMFault{Path: "/no-such-path"})
		}
	})
	wg.Wait()
	evs, _ := armFollow(t, first)
	if n := len(evs); n < 6*60+50 || n > 6*60+51 {
		t.Errorf("%d events after the adds, want %d (+1 at the window's edge)", n, 6*60+50)
	}
}
