package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	armTestTenant = "9f3c1b2a-7d4e-4c6f-8a1b-2c3d4e5f6a7b"
	armTestToken  = "arm-test-token"
	armTestCorpID = "mg-corp"
	armTestSubA   = "5a1d7c3e-2b4f-4e6a-9c8d-1f2e3a4b5c6d" // under mg-corp
	armTestSubB   = "0c9b8a7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d" // under the root
	armAPIMG      = "api-version=2021-04-01"
	armAPIMGLog   = "api-version=2017-03-01-preview"
	armAPILog     = "api-version=2015-04-01"
	armAPIDiag    = "api-version=2020-01-01-preview"
	armMGPath     = "/providers/Microsoft.Management/managementGroups"
	armLogSuffix  = "/providers/Microsoft.Insights/eventtypes/management/values"
)

// armTestNow is the emulator's clock in tests that do not drive time.
var armTestNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// armSmallTenant is an explicit landing-zone-like hierarchy:
//
//	root
//	├── mg-platform ── mg-identity, mg-connectivity
//	├── mg-landing  ── mg-corp (subscription A), mg-online
//	├── mg-sandbox
//	└── subscription B
func armSmallTenant() ARMTenant {
	return ARMTenant{
		Groups: []ARMGroup{
			{ID: "mg-platform", DisplayName: "Platform"},
			{ID: "mg-identity", DisplayName: "Identity", Parent: "mg-platform"},
			{ID: "mg-connectivity", DisplayName: "Connectivity", Parent: "mg-platform"},
			{ID: "mg-landing", DisplayName: "Landing Zones"},
			{ID: armTestCorpID, DisplayName: "Corp", Parent: "mg-landing"},
			{ID: "mg-online", DisplayName: "Online", Parent: "mg-landing"},
			{ID: "mg-sandbox", DisplayName: "Sandbox"},
		},
		Subscriptions: []ARMSubscription{
			{ID: armTestSubA, DisplayName: "Corp Production", Parent: armTestCorpID},
			{ID: armTestSubB, DisplayName: "Pay-As-You-Go"},
		},
	}
}

// newTestARM serves the small tenant at armTestNow, accepting armTestToken;
// edit adjusts the config first.
func newTestARM(t *testing.T, edit func(*ARMConfig)) (*ARM, *httptest.Server) {
	t.Helper()
	cfg := ARMConfig{
		TenantID: armTestTenant,
		Tenant:   armSmallTenant(),
		Token:    func(tok string) bool { return tok == armTestToken },
		Now:      func() time.Time { return armTestNow },
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := NewARM(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv
}

// armResp is one response, body read.
type armResp struct {
	status int
	header http.Header
	body   []byte
}

// armDo sends one request with the test token ("" sends no Authorization).
func armDo(t *testing.T, method, u, token, body string) armResp {
	t.Helper()
	header := map[string]string{}
	if token != "" {
		header["Authorization"] = "Bearer " + token
	}
	resp, b := send(t, method, u, body, header)
	return armResp{status: resp.StatusCode, header: resp.Header, body: b}
}

// armGetJSON GETs u with the test token, wants 200 and decodes into v.
func armGetJSON(t *testing.T, u string, v any) armResp {
	t.Helper()
	r := armDo(t, http.MethodGet, u, armTestToken, "")
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", u, r.status, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("GET %s: decode: %v\n%s", u, err, r.body)
		}
	}
	return r
}

// armFilterQ renders an activity-log $filter query parameter for [from, to]
// with quoted times, plus any extra clause text.
func armFilterQ(from, to time.Time, extra string) string {
	f := fmt.Sprintf("eventTimestamp ge '%s' and eventTimestamp le '%s'", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
	if extra != "" {
		f += " and " + extra
	}
	return "$filter=" + url.QueryEscape(f)
}

// armGroupLogURL is the MG activity-log URL for group id and query parts.
func armGroupLogURL(base, id string, query ...string) string {
	return base + armMGPath + "/" + id + armLogSuffix + "?" + strings.Join(append([]string{armAPIMGLog}, query...), "&")
}

// armTestEvent builds an explicit EventData-shaped event.
func armTestEvent(id, scope string, ts time.Time, rg string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"authorization":{"action":"Microsoft.Authorization/roleAssignments/write","scope":%q},`+
		`"caller":"alice@contoso.com","channels":"Operation","claims":{"ver":"1.0"},"correlationId":"corr-%s","description":"",`+
		`"eventDataId":%q,"eventName":{"value":"EndRequest","localizedValue":"End request"},`+
		`"category":{"value":"Administrative","localizedValue":"Administrative"},"eventTimestamp":%q,"id":%q,"level":"Informational",`+
		`"operationId":"op-%s","operationName":{"value":"Microsoft.Authorization/roleAssignments/write","localizedValue":"Create role assignment"},`+
		`"properties":{"statusCode":"Created"},"resourceGroupName":%q,`+
		`"resourceProviderName":{"value":"Microsoft.Authorization","localizedValue":"Microsoft.Authorization"},`+
		`"resourceId":%q,"status":{"value":"Succeeded","localizedValue":"Succeeded"},"subStatus":{"value":"","localizedValue":""},`+
		`"submissionTimestamp":%q,"subscriptionId":"","tenantId":%q}`,
		scope, id, id, ts.Format("2006-01-02T15:04:05.0000000Z07:00"), scope+"/events/"+id, id, rg, scope,
		ts.Add(10*time.Second).Format("2006-01-02T15:04:05.0000000Z07:00"), armTestTenant))
}

// armPage is an activity-log page with its events kept raw.
type armPage struct {
	Value    []json.RawMessage `json:"value"`
	NextLink *string           `json:"nextLink"`
}

// armFollow reads every page starting at u, following nextLink, and
// returns the events in order and the number of pages.
func armFollow(t *testing.T, u string) (events []json.RawMessage, pages int) {
	t.Helper()
	for u != "" {
		var p armPage
		armGetJSON(t, u, &p)
		pages++
		events = append(events, p.Value...)
		u = ""
		if p.NextLink != nil {
			if *p.NextLink == "" {
				t.Fatal("nextLink is an empty string")
			}
			u = *p.NextLink
		}
		if pages > 10000 {
			t.Fatal("too many pages")
		}
	}
	return events, pages
}

// armHead is the part of an event the tests look at.
type armHead struct {
	EventDataID    string `json:"eventDataId"`
	EventTimestamp string `json:"eventTimestamp"`
	ID             string `json:"id"`
	ResourceID     string `json:"resourceId"`
}

func armHeadOf(t *testing.T, raw json.RawMessage) armHead {
	t.Helper()
	var h armHead
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("decode event: %v\n%s", err, raw)
	}
	return h
}

func armFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "arm", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
