package emulator

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestARMListPaging follows "@nextLink" across pages: every readable group
// comes back exactly once, denied groups never, and the last page carries
// "@nextLink": null, as recorded (mg-list.recorded.json).
func TestARMListPaging(t *testing.T) {
	a, srv := newTestARM(t, func(c *ARMConfig) { c.GroupPageSize = 3 })
	a.Deny("mg-identity")
	a.Deny("MG-SANDBOX") // ids compare case-insensitively

	want := []string{armTestTenant, "mg-platform", "mg-connectivity", "mg-landing", armTestCorpID, "mg-online"}
	var got []string
	pages := 0
	for u := srv.URL + armMGPath + "?" + armAPIMG; u != ""; pages++ {
		var raw map[string]json.RawMessage
		armGetJSON(t, u, &raw)
		next, ok := raw["@nextLink"]
		if !ok {
			t.Fatalf("page %d has no @nextLink key: %v", pages, raw)
		}
		if _, bad := raw["nextLink"]; bad {
			t.Fatal("List pages with @nextLink, not nextLink")
		}
		var list armGroupList
		armGetJSON(t, u, &list)
		for _, g := range list.Value {
			if g.Type != armGroupType || g.ID != ARMGroupScope(g.Name) || g.Properties.TenantID != armTestTenant {
				t.Errorf("entry %+v", g)
			}
			got = append(got, g.Name)
		}
		u = ""
		if string(next) != "null" {
			if err := json.Unmarshal(next, &u); err != nil || !strings.Contains(u, "$skiptoken=") {
				t.Fatalf("@nextLink %s", next)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("groups across pages (-want +got):\n%s", diff)
	}
	if pages != 2 {
		t.Errorf("%d pages, want 2 (6 groups, 3 a page)", pages)
	}
}

func TestARMGet(t *testing.T) {
	_, srv := newTestARM(t, nil)
	var g armGroup
	armGetJSON(t, srv.URL+armMGPath+"/"+armTestCorpID+"?"+armAPIMG, &g)
	if g.Name != armTestCorpID || g.Properties.DisplayName != "Corp" || g.Properties.TenantID != armTestTenant {
		t.Errorf("group %+v", g)
	}
	wantParent := &armParentInfo{ID: ARMGroupScope("mg-landing"), Name: "mg-landing", DisplayName: "Landing Zones"}
	if diff := cmp.Diff(wantParent, g.Properties.Details.Parent); diff != "" {
		t.Errorf("parent (-want +got):\n%s", diff)
	}
	if g.Properties.Children != nil {
		t.Error("children without $expand")
	}

	// The root group's id and name are the tenant id; it has no parent.
	var root map[string]any
	armGetJSON(t, srv.URL+armMGPath+"/"+armTestTenant+"?api-version=2023-04-01", &root)
	if root["name"] != armTestTenant {
		t.Errorf("root name %v", root["name"])
	}
	details := root["properties"].(map[string]any)["details"].(map[string]any)
	if p, ok := details["parent"]; !ok || p != nil {
		t.Errorf("root parent %v (present %v), want null", p, ok)
	}

	// $expand=ancestors: nearest first (SPEC GetManagementGroupWithAncestors);
	// $expand=path: root to the group.
	armGetJSON(t, srv.URL+armMGPath+"/"+armTestCorpID+"?"+armAPIMG+"&$expand=ancestors", &g)
	wantChain := []armPathElement{{"mg-landing", "Landing Zones"}, {armTestTenant, "Tenant Root Group"}}
	if diff := cmp.Diff(wantChain, g.Properties.Details.AncestorsChain); diff != "" {
		t.Errorf("ancestors chain (-want +got):\n%s", diff)
	}
	g = armGroup{}
	armGetJSON(t, srv.URL+armMGPath+"/"+armTestCorpID+"?"+armAPIMG+"&$expand=path", &g)
	wantPath := []armPathElement{{armTestTenant, "Tenant Root Group"}, {"mg-landing", "Landing Zones"}, {armTestCorpID, "Corp"}}
	if diff := cmp.Diff(wantPath, g.Properties.Details.Path); diff != "" {
		t.Errorf("path (-want +got):\n%s", diff)
	}
}

// TestARMGetExpandRecurse: children nest with displayName at the top level
// of each child (SPEC mg-get-expand-recurse); without $recurse only direct
// children come back; the spec's $filter leaves subscriptions out.
func TestARMGetExpandRecurse(t *testing.T) {
	_, srv := newTestARM(t, nil)
	base := srv.URL + armMGPath + "/" + armTestTenant + "?" + armAPIMG

	var g armGroup
	armGetJSON(t, base+"&$expand=children&$recurse=true", &g)
	type node struct {
		Name, Type, DisplayName string
		Children                []node
	}
	var conv func([]armChild) []node
	conv = func(cs []armChild) []node {
		var out []node
		for _, c := range cs {
			out = append(out, node{c.Name, c.Type, c.DisplayName, conv(c.Children)})
		}
		return out
	}
	mg := armGroupType
	want := []node{
		{"mg-platform", mg, "Platform", []node{{"mg-identity", mg, "Identity", nil}, {"mg-connectivity", mg, "Connectivity", nil}}},
		{"mg-landing", mg, "Landing Zones", []node{
			{armTestCorpID, mg, "Corp", []node{{armTestSubA, "/subscriptions", "Corp Production", nil}}},
			{"mg-online", mg, "Online", nil},
		}},
		{"mg-sandbox", mg, "Sandbox", nil},
		{armTestSubB, "/subscriptions", "Pay-As-You-Go", nil},
	}
	if diff := cmp.Diff(want, conv(g.Properties.Children)); diff != "" {
		t.Errorf("recursive children (-want +got):\n%s", diff)
	}

	// Child objects carry exactly the SPEC example's keys.
	var raw struct {
		Properties struct {
			Children []map[string]json.RawMessage `json:"children"`
		} `json:"properties"`
	}
	armGetJSON(t, base+"&$expand=children&$recurse=true", &raw)
	if keys := armKeys(raw.Properties.Children[0]); !slices.Equal(keys, []string{"children", "displayName", "id", "name", "type"}) {
		t.Errorf("child keys %v", keys)
	}

	g = armGroup{}
	armGetJSON(t, base+"&$expand=children", &g)
	for _, c := range g.Properties.Children {
		if c.Children != nil {
			t.Errorf("child %s has children without $recurse", c.Name)
		}
	}
	if len(g.Properties.Children) != 4 {
		t.Errorf("%d direct children, want 4", len(g.Properties.Children))
	}

	g = armGroup{}
	armGetJSON(t, base+"&$expand=children&$recurse=true&$filter=children.childType%20ne%20Subscription", &g)
	var walk func([]armChild)
	walk = func(cs []armChild) {
		for _, c := range cs {
			if c.Type != armGroupType {
				t.Errorf("filtered children hold %s %s", c.Type, c.Name)
			}
			walk(c.Children)
		}
	}
	walk(g.Properties.Children)
}

// TestARMDescendantsPaging: "nextLink" (no @) until the last page, where it
// is absent (REC mg-descendants); $top sets the page size; every group and
// subscription below the group comes back once.
func TestARMDescendantsPaging(t *testing.T) {
	_, srv := newTestARM(t, nil)
	want := []string{"mg-platform", "mg-identity", "mg-connectivity", "mg-landing", armTestCorpID, armTestSubA, "mg-online", "mg-sandbox", armTestSubB}
	for _, top := range []string{"", "&$top=1", "&$top=2", "&$top=4", "&$top=100"} {
		t.Run("top"+top, func(t *testing.T) {
			var got []string
			pages := 0
			for u := srv.URL + armMGPath + "/" + armTestTenant + "/descendants?" + armAPIMG + top; u != ""; pages++ {
				var raw map[string]json.RawMessage
				armGetJSON(t, u, &raw)
				var page armDescendantList
				armGetJSON(t, u, &page)
				for _, d := range page.Value {
					got = append(got, d.Name)
					if d.Properties.Parent.ID == "" || d.Properties.DisplayName == "" {
						t.Errorf("descendant %+v", d)
					}
				}
				u = page.NextLink
				if _, ok := raw["nextLink"]; ok != (u != "") {
					t.Errorf("page %d: nextLink key present %v with link %q", pages, ok, u)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("descendants (-want +got):\n%s", diff)
			}
		})
	}

	var leaf map[string]json.RawMessage
	armGetJSON(t, srv.URL+armMGPath+"/mg-online/descendants?"+armAPIMG, &leaf)
	if string(leaf["value"]) != "[]" || len(leaf) != 1 {
		t.Errorf("leaf descendants %v, want {\"value\":[]} as recorded", leaf)
	}
	var sub armDescendantList
	armGetJSON(t, srv.URL+armMGPath+"/"+armTestCorpID+"/descendants?"+armAPIMG, &sub)
	wantSub := armDescendant{ID: "/subscriptions/" + armTestSubA, Type: "Microsoft.Management/managementGroups/subscriptions", Name: armTestSubA,
		Properties: armDescendantProps{DisplayName: "Corp Production", Parent: armIDRef{ARMGroupScope(armTestCorpID)}}}
	if diff := cmp.Diff([]armDescendant{wantSub}, sub.Value); diff != "" {
		t.Errorf("subscription descendant (-want +got):\n%s", diff)
	}
}

// armKeys returns a map's keys, sorted.
func armKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
