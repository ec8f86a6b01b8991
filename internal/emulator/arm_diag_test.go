package emulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestARMDiagnosticSettings round-trips the SPEC example: PUT its request
// body, get back its response shape (id without a leading slash, type null,
// location global), read it again and in the list, then delete it.
func TestARMDiagnosticSettings(t *testing.T) {
	var example struct {
		Parameters struct {
			ManagementGroupID string          `json:"managementGroupId"`
			Name              string          `json:"name"`
			Parameters        json.RawMessage `json:"parameters"`
		} `json:"parameters"`
		Responses map[string]struct {
			Body json.RawMessage `json:"body"`
		} `json:"responses"`
	}
	if err := json.Unmarshal(armFixture(t, "mg-diagnostic-setting-put.spec-example.json"), &example); err != nil {
		t.Fatal(err)
	}
	p := example.Parameters
	_, srv := newTestARM(t, func(c *ARMConfig) {
		c.Tenant.Groups = append(c.Tenant.Groups, ARMGroup{ID: p.ManagementGroupID, Parent: "mg-platform"})
	})
	// The provider segment's casing varies; ARM does not care.
	base := srv.URL + "/providers/microsoft.management/managementGroups/" + p.ManagementGroupID + "/providers/microsoft.insights/diagnosticSettings"
	put := armDo(t, http.MethodPut, base+"/"+p.Name+"?"+armAPIDiag, armTestToken, string(p.Parameters))
	if put.status != http.StatusOK {
		t.Fatalf("PUT: %d %s", put.status, put.body)
	}
	var got, want map[string]json.RawMessage
	_ = json.Unmarshal(put.body, &got)
	_ = json.Unmarshal(example.Responses["200"].Body, &want)
	if diff := cmp.Diff(armKeys(want), armKeys(got)); diff != "" {
		t.Errorf("response keys (-spec +emulator):\n%s", diff)
	}
	for _, k := range []string{"id", "type", "name", "location"} {
		if string(got[k]) != string(want[k]) {
			t.Errorf("%s: %s, spec example %s", k, got[k], want[k])
		}
	}
	// Properties come back as sent; the spec's response lists the same
	// values except eventHubName, which its hand-written response drops.
	var req struct{ Properties map[string]json.RawMessage }
	_ = json.Unmarshal(p.Parameters, &req)
	var gotProps, wantProps map[string]json.RawMessage
	_ = json.Unmarshal(got["properties"], &gotProps)
	_ = json.Unmarshal(want["properties"], &wantProps)
	if diff := cmp.Diff(armKeys(req.Properties), armKeys(gotProps)); diff != "" {
		t.Errorf("property keys (-request +response):\n%s", diff)
	}
	for k, v := range wantProps {
		var a, b any
		_ = json.Unmarshal(v, &a)
		_ = json.Unmarshal(gotProps[k], &b)
		if !cmp.Equal(a, b) {
			t.Errorf("property %s: %s, spec example %s", k, gotProps[k], v)
		}
	}

	if again := armDo(t, http.MethodGet, base+"/"+p.Name+"?"+armAPIDiag, armTestToken, ""); !bytes.Equal(again.body, put.body) {
		t.Errorf("GET after PUT:\n%s\n%s", again.body, put.body)
	}
	second := strings.Replace(string(p.Parameters), `"Policy"`, `"Administrative"`, 1)
	if r := armDo(t, http.MethodPut, base+"/a-first?"+armAPIDiag, armTestToken, second); r.status != 200 {
		t.Fatalf("second PUT: %d %s", r.status, r.body)
	}
	var list struct {
		Value []armDiagSetting `json:"value"`
	}
	armGetJSON(t, base+"?"+armAPIDiag, &list)
	if len(list.Value) != 2 || list.Value[0].Name != "a-first" || list.Value[1].Name != p.Name || list.Value[1].Type != nil {
		t.Errorf("list %+v", list.Value)
	}

	if r := armDo(t, http.MethodDelete, base+"/a-first?"+armAPIDiag, armTestToken, ""); r.status != http.StatusOK {
		t.Errorf("DELETE: %d", r.status)
	}
	if r := armDo(t, http.MethodDelete, base+"/a-first?"+armAPIDiag, armTestToken, ""); r.status != http.StatusNoContent {
		t.Errorf("second DELETE: %d", r.status)
	}
	r := armDo(t, http.MethodGet, base+"/a-first?"+armAPIDiag, armTestToken, "")
	var e armErrorBody
	if r.status != http.StatusNotFound || json.Unmarshal(r.body, &e) != nil || e.Code != "ResourceNotFound" {
		t.Errorf("GET after DELETE: %d %s", r.status, r.body)
	}
}

// TestARMDiagnosticSettingsRejects: bodies the API refuses, flat 400s.
func TestARMDiagnosticSettingsRejects(t *testing.T) {
	_, srv := newTestARM(t, nil)
	u := srv.URL + armMGPath + "/mg-landing/providers/microsoft.insights/diagnosticSettings/s?" + armAPIDiag
	ws := `"workspaceId":"/subscriptions/x/resourceGroups/y/providers/Microsoft.OperationalInsights/workspaces/z"`
	for name, body := range map[string]string{
		"not JSON":         `{`,
		"no properties":    `{"name":"s"}`,
		"no destination":   `{"properties":{"logs":[{"category":"Administrative","enabled":true}]}}`,
		"unknown category": `{"properties":{` + ws + `,"logs":[{"category":"Security","enabled":true}]}}`,
		"no enabled":       `{"properties":{` + ws + `,"logs":[{"category":"Policy"}]}}`,
		"metrics":          `{"properties":{` + ws + `,"metrics":[{"category":"AllMetrics","enabled":true}]}}`,
	} {
		r := armDo(t, http.MethodPut, u, armTestToken, body)
		var e map[string]string
		if r.status != http.StatusBadRequest || json.Unmarshal(r.body, &e) != nil || e["code"] != "BadRequest" || e["message"] == "" {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
}
