package emulator

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestGenerateTenant: 200 groups in 6 levels under the root, whose id is the
// tenant id; every parent is a group one level up; the hierarchy is the
// same on every call; served through Get/descendants it is consistent.
func TestGenerateTenant(t *testing.T) {
	spec := ARMTenantSpec{Groups: 200, Levels: 6, SubscriptionsPerGroup: 2, EventsPerScope: 10,
		Start: armTestNow.Add(-24 * time.Hour), End: armTestNow, Seed: 42}
	tn := GenerateTenant(spec)
	if diff := cmp.Diff(tn, GenerateTenant(spec)); diff != "" {
		t.Fatalf("not deterministic:\n%s", diff)
	}
	if other := GenerateTenant(ARMTenantSpec{Groups: 200, Levels: 6, SubscriptionsPerGroup: 2, Seed: 43}); cmp.Equal(tn.Groups, other.Groups) {
		t.Error("the seed does not matter")
	}
	if len(tn.Groups) != 200 || len(tn.Subscriptions) != 400 {
		t.Fatalf("%d groups, %d subscriptions", len(tn.Groups), len(tn.Subscriptions))
	}
	level := map[string]int{"": 0}
	perLevel := map[int]int{}
	for _, g := range tn.Groups {
		pl, ok := level[g.Parent]
		if !ok {
			t.Fatalf("group %s: parent %q not defined before it", g.ID, g.Parent)
		}
		level[g.ID] = pl + 1
		perLevel[pl+1]++
	}
	for l := 1; l <= 6; l++ {
		if perLevel[l] == 0 {
			t.Errorf("level %d is empty: %v", l, perLevel)
		}
	}
	if len(perLevel) != 6 {
		t.Errorf("levels %v, want 1..6", perLevel)
	}

	a, srv := newTestARM(t, func(c *ARMConfig) { c.Tenant = tn; c.GroupPageSize = 1000 })
	if a.h.root.id != armTestTenant || len(a.h.order) != 201 {
		t.Fatalf("root %s, %d groups", a.h.root.id, len(a.h.order))
	}
	var root armGroup
	armGetJSON(t, srv.URL+armMGPath+"/"+armTestTenant+"?"+armAPIMG+"&$expand=children&$recurse=true", &root)
	if root.Name != armTestTenant || root.Properties.Details.Parent != nil {
		t.Errorf("root %s, parent %+v", root.Name, root.Properties.Details.Parent)
	}
	// Walk the served tree: each child's parent is the node it hangs under,
	// and its depth matches its generated level.
	groups, subs := 0, 0
	var walk func(parent string, depth int, cs []armChild)
	walk = func(parent string, depth int, cs []armChild) {
		for _, c := range cs {
			if c.Type == "/subscriptions" {
				subs++
				continue
			}
			groups++
			if level[c.Name] != depth {
				t.Errorf("group %s served at depth %d, generated at level %d", c.Name, depth, level[c.Name])
			}
			var g armGroup
			armGetJSON(t, srv.URL+armMGPath+"/"+c.Name+"?"+armAPIMG, &g)
			if g.Properties.Details.Parent == nil || g.Properties.Details.Parent.Name != parent {
				t.Errorf("group %s: parent %+v, want %s", c.Name, g.Properties.Details.Parent, parent)
			}
			walk(c.Name, depth+1, c.Children)
		}
	}
	walk(armTestTenant, 1, root.Properties.Children)
	if groups != 200 || subs != 400 {
		t.Errorf("served tree has %d groups and %d subscriptions", groups, subs)
	}
	var desc armDescendantList
	armGetJSON(t, srv.URL+armMGPath+"/"+armTestTenant+"/descendants?"+armAPIMG+"&$top=1000", &desc)
	if len(desc.Value) != 600 || desc.NextLink != "" {
		t.Errorf("%d descendants, nextLink %q", len(desc.Value), desc.NextLink)
	}
}

// TestARMMillionEventsPageIsLazy: a tenant of 1,000 groups and a thousand
// events in each of its 1,501 scopes (about 1.5 million events) costs
// nothing until asked, and a page from the middle of a scope's range costs
// exactly one page of generated events.
func TestARMMillionEventsPageIsLazy(t *testing.T) {
	start := armTestNow.Add(-60 * 24 * time.Hour)
	tn := GenerateTenant(ARMTenantSpec{Groups: 1000, Levels: 5, SubscriptionsPerGroup: 1, EventsPerScope: 1000,
		Start: start, End: armTestNow, Seed: 9})
	a, err := NewARM(ARMConfig{TenantID: armTestTenant, Tenant: tn, Now: func() time.Time { return armTestNow }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if total := int64(len(a.h.scopes)) * a.gen.n; total < 1_000_000 {
		t.Fatalf("only %d events in the tenant", total)
	}
	if n := a.generated.Load(); n != 0 {
		t.Fatalf("NewARM generated %d events", n)
	}
	// The middle half of one group's range: 500 events, three pages.
	group := tn.Groups[617].ID
	from, to := start.Add(15*24*time.Hour), start.Add(45*24*time.Hour)
	serve := func(target string) armPage {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "Bearer x")
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		var p armPage
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("%d %v %.300s", rec.Code, err, rec.Body)
		}
		return p
	}
	p := serve(armGroupLogURL("", group, armFilterQ(from, to, "")))
	if len(p.Value) != armDefaultPageSize || p.NextLink == nil {
		t.Fatalf("%d events, nextLink %v", len(p.Value), p.NextLink)
	}
	if n := a.generated.Load(); n != armDefaultPageSize {
		t.Errorf("serving one page generated %d events, want %d", n, armDefaultPageSize)
	}
	// The following pages cost the rest of the window, no more.
	served := len(p.Value)
	for p.NextLink != nil {
		p = serve(strings.TrimPrefix(*p.NextLink, "http://example.com"))
		served += len(p.Value)
	}
	lo, hi := a.gen.indexRange(a.h.group(group).scope, armTicks(from), armTicks(to))
	if got := a.generated.Load(); got != hi-lo || int64(served) != hi-lo || hi-lo < 400 {
		t.Errorf("paging generated %d events and served %d; the window holds %d", got, served, hi-lo)
	}
}

// TestNewARMRejectsBadTenants: hierarchies that cannot exist are refused.
func TestNewARMRejectsBadTenants(t *testing.T) {
	ev := armTestEvent("e", ARMGroupScope("a"), armTestNow, "")
	cases := map[string]ARMConfig{
		"no tenant":         {},
		"tenant not a path": {TenantID: "a/b"},
		"duplicate group":   {TenantID: armTestTenant, Tenant: ARMTenant{Groups: []ARMGroup{{ID: "a"}, {ID: "A"}}}},
		"group is the root": {TenantID: armTestTenant, Tenant: ARMTenant{Groups: []ARMGroup{{ID: armTestTenant}}}},
		"unknown parent":    {TenantID: armTestTenant, Tenant: ARMTenant{Groups: []ARMGroup{{ID: "a", Parent: "b"}}}},
		"cycle":             {TenantID: armTestTenant, Tenant: ARMTenant{Groups: []ARMGroup{{ID: "a", Parent: "b"}, {ID: "b", Parent: "a"}}}},
		"bad group id":      {TenantID: armTestTenant, Tenant: ARMTenant{Groups: []ARMGroup{{ID: "a b"}}}},
		"subscription parent": {TenantID: armTestTenant, Tenant: ARMTenant{
			Subscriptions: []ARMSubscription{{ID: armTestSubA, Parent: "nope"}}}},
		"events of an unknown scope": {TenantID: armTestTenant, Tenant: ARMTenant{
			Events: map[string][]json.RawMessage{ARMGroupScope("a"): {ev}}}},
		"event without a time": {TenantID: armTestTenant, Tenant: ARMTenant{Groups: []ARMGroup{{ID: "a"}},
			Events: map[string][]json.RawMessage{ARMGroupScope("a"): {json.RawMessage(`{"eventDataId":"x"}`)}}}},
		"event not an object": {TenantID: armTestTenant, Tenant: ARMTenant{Groups: []ARMGroup{{ID: "a"}},
			Events: map[string][]json.RawMessage{ARMGroupScope("a"): {json.RawMessage(`[1]`)}}}},
		"generated before 1970": {TenantID: armTestTenant, Tenant: ARMTenant{Generated: ARMGenerated{PerScope: 1}}},
	}
	for name, cfg := range cases {
		if _, err := NewARM(cfg, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Scope keys are case-insensitive and ignore a trailing slash.
	if _, err := NewARM(ARMConfig{TenantID: armTestTenant, Tenant: ARMTenant{Groups: []ARMGroup{{ID: "a"}},
		Events: map[string][]json.RawMessage{"/PROVIDERS/microsoft.management/MANAGEMENTGROUPS/A/": {ev}}}}, nil); err != nil {
		t.Error(err)
	}
}
