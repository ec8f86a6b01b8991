package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestARMFaults: injected 429 (with Retry-After), 5xx and malformed pages
// hit the next Count matching requests only, after authentication.
func TestARMFaults(t *testing.T) {
	a, srv := newTestARM(t, func(c *ARMConfig) { c.Tenant = armGenTenant(2000); c.PageSize = 20 })
	list := srv.URL + armMGPath + "?" + armAPIMG
	desc := srv.URL + armMGPath + "/mg-landing/descendants?" + armAPIMG
	logURL := armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(armTestNow.Add(-24*time.Hour), armTestNow, ""))
	code := func(r armResp) string {
		var e armError
		if err := json.Unmarshal(r.body, &e); err != nil {
			t.Fatalf("%d %s: %v", r.status, r.body, err)
		}
		return e.Error.Code
	}

	a.Inject(ARMFault{Path: "/descendants", Status: http.StatusTooManyRequests, RetryAfter: 3 * time.Second, Count: 2})
	if r := armDo(t, http.MethodGet, list, armTestToken, ""); r.status != http.StatusOK {
		t.Fatalf("a fault for another path hit the list: %d", r.status)
	}
	if r := armDo(t, http.MethodGet, desc, "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("unauthenticated request: %d, want 401 before any fault", r.status)
	}
	for i := range 2 {
		r := armDo(t, http.MethodGet, desc, armTestToken, "")
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "3" || code(r) != "TooManyRequests" {
			t.Fatalf("throttled request %d: %d Retry-After %q %s", i, r.status, r.header.Get("Retry-After"), r.body)
		}
	}
	if r := armDo(t, http.MethodGet, desc, armTestToken, ""); r.status != http.StatusOK {
		t.Fatalf("after the fault's count: %d", r.status)
	}

	a.Inject(ARMFault{Status: http.StatusTooManyRequests})
	if r := armDo(t, http.MethodGet, list, armTestToken, ""); r.status != 429 || r.header.Get("Retry-After") != "1" {
		t.Errorf("429 without a RetryAfter: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	a.Inject(ARMFault{Status: http.StatusServiceUnavailable})
	if r := armDo(t, http.MethodGet, logURL, armTestToken, ""); r.status != 503 || code(r) != "ServiceUnavailable" || r.header.Get("Retry-After") != "" {
		t.Errorf("503: %d %s, Retry-After %q", r.status, r.body, r.header.Get("Retry-After"))
	}
	a.Inject(ARMFault{Status: http.StatusInternalServerError, RetryAfter: 1500 * time.Millisecond})
	if r := armDo(t, http.MethodGet, logURL, armTestToken, ""); r.status != 500 || code(r) != "InternalServerError" || r.header.Get("Retry-After") != "2" {
		t.Errorf("500: %d %s, Retry-After %q", r.status, r.body, r.header.Get("Retry-After"))
	}

	// A malformed page: 200, the page's first half, a matching length.
	whole := armDo(t, http.MethodGet, logURL, armTestToken, "")
	a.Inject(ARMFault{Path: "/eventtypes/management/values", Malformed: true})
	cut := armDo(t, http.MethodGet, logURL, armTestToken, "")
	if cut.status != http.StatusOK || json.Valid(cut.body) || len(cut.body) == 0 || !bytes.HasPrefix(whole.body, cut.body) {
		t.Errorf("malformed page: %d, %d of %d bytes, valid %v", cut.status, len(cut.body), len(whole.body), json.Valid(cut.body))
	}
	if cl := cut.header.Get("Content-Length"); cl != strconv.Itoa(len(cut.body)) {
		t.Errorf("Content-Length %s for %d bytes", cl, len(cut.body))
	}
	if again := armDo(t, http.MethodGet, logURL, armTestToken, ""); !bytes.Equal(again.body, whole.body) {
		t.Error("the page after the malformed one differs")
	}

	var statuses []int
	for _, r := range a.Requests() {
		statuses = append(statuses, r.Status)
	}
	want := []int{200, 401, 429, 429, 200, 429, 503, 500, 200, 200, 200}
	if !slices.Equal(statuses, want) {
		t.Errorf("logged statuses %v, want %v", statuses, want)
	}
}

// TestARMHeaders: the §1.5 headers, the remaining-reads counter counting
// down, and the request log.
func TestARMHeaders(t *testing.T) {
	a, srv := newTestARM(t, nil)
	list := srv.URL + armMGPath + "?" + armAPIMG
	r1 := armDo(t, http.MethodGet, list, armTestToken, "")
	r2 := armDo(t, http.MethodGet, list, armTestToken, "")
	if a, b := r1.header.Get("x-ms-ratelimit-remaining-tenant-reads"), r2.header.Get("x-ms-ratelimit-remaining-tenant-reads"); a != "11999" || b != "11998" {
		t.Errorf("remaining tenant reads %q then %q", a, b)
	}
	guid := `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`
	for h, re := range map[string]string{
		"x-ms-request-id":             "^southeastasia:" + guid + "$",
		"x-ms-correlation-request-id": "^" + guid + "$",
		"x-ms-routing-request-id":     "^SOUTHEASTASIA:20260301T120000Z:" + guid + "$",
		"Cache-Control":               "^no-cache$",
		"Expires":                     "^-1$",
	} {
		if v := r1.header.Get(h); !regexp.MustCompile(re).MatchString(v) {
			t.Errorf("%s %q does not match %s", h, v, re)
		}
	}

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet,
		srv.URL+"/subscriptions/"+armTestSubA+armLogSuffix+"?"+armAPILog+"&"+armFilterQ(armTestNow.Add(-time.Hour), armTestNow, ""), nil)
	req.Header.Set("Authorization", "Bearer "+armTestToken)
	req.Header.Set("x-ms-correlation-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("x-ms-correlation-request-id") != "0f8fad5b-d9cb-469f-a165-70867728950e" ||
		resp.Header.Get("x-ms-ratelimit-remaining-subscription-reads") != "11999" {
		t.Errorf("subscription log: %d %v", resp.StatusCode, resp.Header)
	}
	put := armDo(t, http.MethodPut, srv.URL+armMGPath+"/mg-landing/providers/microsoft.insights/diagnosticSettings/s1?"+armAPIDiag, armTestToken,
		`{"properties":{"workspaceId":"/subscriptions/x/resourceGroups/y/providers/Microsoft.OperationalInsights/workspaces/z","logs":[{"category":"Administrative","enabled":true}]}}`)
	if put.status != 200 || put.header.Get("x-ms-ratelimit-remaining-tenant-writes") != "1199" {
		t.Errorf("put: %d %v", put.status, put.header)
	}

	reqs := a.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests logged", len(reqs))
	}
	if r := reqs[2]; r.Method != http.MethodGet || !strings.HasPrefix(r.Path, "/subscriptions/") || !strings.Contains(r.Query, "%24filter=") && !strings.Contains(r.Query, "$filter=") ||
		r.Status != 200 || !r.Time.Equal(armTestNow) {
		t.Errorf("logged %+v", r)
	}
}

// TestListenARM serves on loopback only and stops cleanly, more than once.
func TestListenARM(t *testing.T) {
	cfg := ARMConfig{TenantID: armTestTenant, Tenant: armSmallTenant()}
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:0", "example.com:0", "nonsense"} {
		if _, _, _, err := ListenARM(t.Context(), addr, cfg, nil); err == nil {
			t.Errorf("listened on %q", addr)
		}
	}
	if _, _, _, err := ListenARM(t.Context(), "", ARMConfig{}, nil); err == nil {
		t.Error("listened without a tenant")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	u, a, stop, err := ListenARM(ctx, "localhost:0", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, "http://127.0.0.1:") || a == nil {
		t.Fatalf("url %q", u)
	}
	var list armGroupList
	armGetJSON(t, u+armMGPath+"?"+armAPIMG, &list)
	if len(list.Value) != 8 {
		t.Errorf("%d groups", len(list.Value))
	}
	stop()
	stop()
	if _, err := http.Get(u + armMGPath); err == nil {
		t.Error("still serving after stop")
	}

	ctx2, cancel2 := context.WithCancel(t.Context())
	u2, _, stop2, err := ListenARM(ctx2, "127.0.0.1:0", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	cancel2()
	stop2() // waits for the shutdown the cancellation started
	if _, err := http.Get(u2 + armMGPath); err == nil {
		t.Error("still serving after the context ended")
	}
}
