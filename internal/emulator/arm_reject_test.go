package emulator

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// armForbidden is the recorded 403 wording (azure-contracts.md §1.6).
func armForbidden(client, oid, action, scope string) string {
	return "The client '" + client + "' with object id '" + oid + "' does not have authorization to perform action '" + action +
		"' over scope '" + scope + "' or the scope is invalid. If access was recently granted, please refresh your credentials."
}

// armUnsignedJWT is a token shaped like a JWT, for the 403 wording.
func armUnsignedJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc([]byte(claims)) + ".c2ln"
}

// TestARMRejections proves every rejection the stand-in makes, with the
// status, the shape (ARM envelope or the activity log's flat body) and the
// code, and the exact wording where it is recorded.
func TestARMRejections(t *testing.T) {
	jwt := armUnsignedJWT(`{"oid":"2b7c9e10-8f4d-4a6b-b3e2-7d5c1a9f0e8b","upn":"bob@contoso.com"}`)
	a, srv := newTestARM(t, func(c *ARMConfig) {
		c.Token = func(tok string) bool { return tok == armTestToken || tok == jwt }
	})
	a.Deny("mg-sandbox")
	now := armTestNow
	window := armFilterQ(now.Add(-time.Hour), now, "")
	filterOf := func(f string) string { return "$filter=" + url.QueryEscape(f) }
	t1, t2 := now.Add(-time.Hour).Format(time.RFC3339), now.Format(time.RFC3339)
	timeRange := "eventTimestamp ge '" + t1 + "' and eventTimestamp le '" + t2 + "'"
	corpLog := func(q ...string) string { return armGroupLogURL("", armTestCorpID, q...) }
	zero := armZeroID
	sandbox := ARMGroupScope("mg-sandbox")

	cases := []struct {
		name     string
		method   string
		path     string
		auth     string // the Authorization header; "" sends the test token, "-" none
		body     string
		status   int
		flat     bool   // the activity log's flat {code,message}
		code     string // the error code
		message  string // the exact message, when it is recorded or fixed here
		contains string // a substring of the message otherwise
	}{
		{name: "missing bearer", path: armMGPath + "?" + armAPIMG, auth: "-", status: 401,
			code: "AuthenticationFailed", message: "Authentication failed. The 'Authorization' header is missing."},
		{name: "missing bearer on the log", path: corpLog(window), auth: "-", status: 401,
			code: "AuthenticationFailed", message: "Authentication failed. The 'Authorization' header is missing."},
		{name: "not a bearer", path: armMGPath + "?" + armAPIMG, auth: "Basic dXNlcjpwYXNz", status: 401, code: "AuthenticationFailed"},
		{name: "empty bearer", path: armMGPath + "?" + armAPIMG, auth: "Bearer ", status: 401, code: "AuthenticationFailed"},
		{name: "rejected token", path: armMGPath + "?" + armAPIMG, auth: "Bearer nope", status: 401,
			code: "InvalidAuthenticationToken", message: "The access token is invalid."},

		{name: "denied group get", path: armMGPath + "/mg-sandbox?" + armAPIMG, status: 403, code: "AuthorizationFailed",
			message: armForbidden(zero, zero, "Microsoft.Management/managementGroups/read", sandbox)},
		{name: "denied group get names the caller", path: armMGPath + "/mg-sandbox?" + armAPIMG, auth: "Bearer " + jwt, status: 403,
			code: "AuthorizationFailed", message: armForbidden("bob@contoso.com", "2b7c9e10-8f4d-4a6b-b3e2-7d5c1a9f0e8b", "Microsoft.Management/managementGroups/read", sandbox)},
		{name: "denied group log", path: armGroupLogURL("", "mg-sandbox", window), status: 403, code: "AuthorizationFailed",
			message: armForbidden(zero, zero, "Microsoft.Insights/eventtypes/values/read", sandbox)},
		{name: "denied group descendants", path: armMGPath + "/mg-sandbox/descendants?" + armAPIMG, status: 403, code: "AuthorizationFailed",
			contains: "over scope '" + sandbox + "'"},
		{name: "denied group diagnostic settings", path: armMGPath + "/mg-sandbox/providers/microsoft.insights/diagnosticSettings?" + armAPIDiag,
			status: 403, code: "AuthorizationFailed", contains: "diagnosticSettings/read"},
		{name: "unknown group get", path: armMGPath + "/mg-nope?" + armAPIMG, status: 403, code: "AuthorizationFailed",
			message: armForbidden(zero, zero, "Microsoft.Management/managementGroups/read", ARMGroupScope("mg-nope"))},
		{name: "unknown group log", path: armGroupLogURL("", "mg-nope", window), status: 403, code: "AuthorizationFailed"},

		{name: "recurse without expand", path: armMGPath + "/mg-landing?" + armAPIMG + "&$recurse=true", status: 400,
			code: "BadRequest", message: armExpandRecurseMessage},
		{name: "recurse with expand=path", path: armMGPath + "/mg-landing?" + armAPIMG + "&$recurse=true&$expand=path", status: 400, code: "BadRequest"},
		{name: "unknown expand", path: armMGPath + "/mg-landing?" + armAPIMG + "&$expand=everything", status: 400, code: "BadRequest"},
		{name: "unknown get filter", path: armMGPath + "/mg-landing?" + armAPIMG + "&$filter=name%20eq%20'x'", status: 400, code: "BadRequest"},
		{name: "bad top", path: armMGPath + "/mg-landing/descendants?" + armAPIMG + "&$top=0", status: 400, code: "BadRequest"},
		{name: "bad list skiptoken", path: armMGPath + "?" + armAPIMG + "&$skiptoken=xyz", status: 400, code: "BadRequest"},

		{name: "missing api-version", path: armMGPath, status: 400, code: "MissingApiVersionParameter",
			message: "The api-version query parameter (?api-version=) is required for all requests."},
		{name: "wrong api-version for groups", path: armMGPath + "/mg-landing?api-version=2015-04-01", status: 400,
			code: "InvalidApiVersionParameter", message: "The api-version '2015-04-01' is invalid. The supported versions are '2020-05-01,2021-04-01,2023-04-01'."},
		{name: "wrong api-version for the MG log", path: armMGPath + "/" + armTestCorpID + armLogSuffix + "?" + armAPILog + "&" + window,
			status: 400, code: "InvalidApiVersionParameter", contains: "'2017-03-01-preview'"},
		{name: "wrong api-version for the subscription log", path: "/subscriptions/" + armTestSubA + armLogSuffix + "?" + armAPIMGLog + "&" + window,
			status: 400, code: "InvalidApiVersionParameter", contains: "'2015-04-01'"},
		{name: "wrong api-version for diagnostic settings", path: armMGPath + "/mg-landing/providers/microsoft.insights/diagnosticSettings?api-version=2021-05-01-preview",
			status: 400, code: "InvalidApiVersionParameter"},

		{name: "missing filter", path: corpLog(), status: 400, flat: true, code: "BadRequest", contains: "$filter"},
		{name: "empty filter", path: corpLog("$filter="), status: 400, flat: true, code: "BadRequest", contains: "$filter"},
		{name: "wrong field", path: corpLog(filterOf("submissionTimestamp ge '" + t1 + "' and eventTimestamp le '" + t2 + "'")),
			status: 400, flat: true, code: "BadRequest", contains: "eventTimestamp"},
		{name: "or", path: corpLog(filterOf("eventTimestamp ge '" + t1 + "' or eventTimestamp le '" + t2 + "'")),
			status: 400, flat: true, code: "BadRequest", contains: "only 'and'"},
		{name: "missing end", path: corpLog(filterOf("eventTimestamp ge '" + t1 + "'")),
			status: 400, flat: true, code: "BadRequest", contains: "end time is missing"},
		{name: "two extra clauses", path: corpLog(filterOf(timeRange + " and resourceGroupName eq 'rg' and correlationId eq 'c'")),
			status: 400, flat: true, code: "BadRequest", contains: "at most one"},
		{name: "unknown clause", path: corpLog(filterOf(timeRange + " and caller eq 'bob@contoso.com'")),
			status: 400, flat: true, code: "BadRequest", contains: "cannot be filtered on"},
		{name: "unquoted clause value", path: corpLog(filterOf(timeRange + " and resourceGroupName eq rg")),
			status: 400, flat: true, code: "BadRequest", contains: "quoted"},
		{name: "gt instead of ge", path: corpLog(filterOf("eventTimestamp gt '" + t1 + "' and eventTimestamp le '" + t2 + "'")),
			status: 400, flat: true, code: "BadRequest"},
		{name: "ends in and", path: corpLog(filterOf(timeRange + " and")), status: 400, flat: true, code: "BadRequest"},
		{name: "not a time", path: corpLog(filterOf("eventTimestamp ge 'yesterday' and eventTimestamp le '" + t2 + "'")),
			status: 400, flat: true, code: "BadRequest", contains: "ISO 8601"},
		{name: "unclosed quote", path: corpLog(filterOf("eventTimestamp ge '" + t1 + " and eventTimestamp le '" + t2 + "'")),
			status: 400, flat: true, code: "BadRequest"},
		{name: "end before start", path: corpLog(filterOf("eventTimestamp ge '" + t2 + "' and eventTimestamp le '" + t1 + "'")),
			status: 400, flat: true, code: "BadRequest", contains: "before the start"},
		{name: "eventChannels outside the tenant log", path: corpLog(filterOf(timeRange + " and eventChannels eq 'Admin, Operation'")),
			status: 400, flat: true, code: "BadRequest", contains: "tenant"},
		{name: "other eventChannels", path: armLogSuffix + "?" + armAPILog + "&" + filterOf(timeRange+" and eventChannels eq 'Admin'"),
			status: 400, flat: true, code: "BadRequest", contains: "Admin, Operation"},
		{name: "start beyond 90 days", path: corpLog(armFilterQ(now.Add(-armRetention-time.Second), now, "")),
			status: 400, flat: true, code: "BadRequest", message: "The start time cannot be more than 90 days in the past."},
		{name: "bad log skiptoken", path: corpLog(window, "$skiptoken=bm9wZQ"), status: 400, flat: true, code: "BadRequest", contains: "skiptoken"},
		{name: "unknown select field", path: corpLog(window, "$select=eventDataId,nope"), status: 400, flat: true, code: "BadRequest", contains: "nope"},

		{name: "unknown subscription", path: "/subscriptions/00000000-1111-2222-3333-444444444444" + armLogSuffix + "?" + armAPILog + "&" + window,
			status: 404, code: "SubscriptionNotFound"},
		{name: "unknown path", path: "/providers/Microsoft.Compute/virtualMachines?api-version=2024-01-01", status: 404, code: "NotFound"},
		{name: "post to list", method: http.MethodPost, path: armMGPath + "?" + armAPIMG, status: 405, code: "MethodNotAllowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			switch tc.auth {
			case "":
				req.Header.Set("Authorization", "Bearer "+armTestToken)
			case "-":
			default:
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			var raw map[string]json.RawMessage
			if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
				t.Fatal(err)
			}
			body := raw
			if !tc.flat {
				if len(raw) != 1 || raw["error"] == nil {
					t.Fatalf("want the ARM envelope, got %v", raw)
				}
				body = nil
				if err := json.Unmarshal(raw["error"], &body); err != nil {
					t.Fatal(err)
				}
			} else if raw["error"] != nil {
				t.Fatalf("want the flat shape, got the envelope %v", raw)
			}
			var e armErrorBody
			_ = json.Unmarshal(body["code"], &e.Code)
			_ = json.Unmarshal(body["message"], &e.Message)
			if e.Code != tc.code {
				t.Errorf("code %q, want %q (message %q)", e.Code, tc.code, e.Message)
			}
			if tc.message != "" && e.Message != tc.message {
				t.Errorf("message\n got %q\nwant %q", e.Message, tc.message)
			}
			if !strings.Contains(e.Message, tc.contains) {
				t.Errorf("message %q does not contain %q", e.Message, tc.contains)
			}
			if tc.status == 401 && (resp.Header.Get("WWW-Authenticate") == "" || resp.Header.Get("x-ms-failure-cause") != "gateway") {
				t.Errorf("401 headers %v", resp.Header)
			}
		})
	}
}

// TestARMStartTooOldIsRecorded compares the 90-day rejection byte for byte
// with the 2021 recording, headers included.
func TestARMStartTooOldIsRecorded(t *testing.T) {
	var rec []struct {
		Response struct {
			Body struct {
				String string `yaml:"string"`
			} `yaml:"body"`
			Headers map[string][]string `yaml:"headers"`
			Status  struct {
				Code int `yaml:"code"`
			} `yaml:"status"`
		} `yaml:"response"`
	}
	if err := yaml.Unmarshal(armFixture(t, "activity-log-error-400-start-time-too-old.recorded.yaml"), &rec); err != nil {
		t.Fatal(err)
	}
	want := rec[len(rec)-1].Response // 2021: lower-case code/message
	_, srv := newTestARM(t, nil)
	// The recorded request: a bare start far in the past, a far end.
	f := "$filter=" + url.QueryEscape("eventTimestamp ge 2018-01-01T00:00:00+00:00 and eventTimestamp le 2999-01-01T00:00:00+00:00")
	for _, u := range []string{
		srv.URL + "/subscriptions/" + armTestSubA + "/providers/Microsoft.Insights/eventtypes/management/values?" + armAPILog + "&" + f,
		srv.URL + "/subscriptions/" + armTestSubA + "/providers/microsoft.insights/eventtypes/management/values?" + armAPILog + "&" + f,
		armGroupLogURL(srv.URL, armTestCorpID, f),
		srv.URL + armLogSuffix + "?" + armAPILog + "&" + f,
	} {
		got := armDo(t, http.MethodGet, u, armTestToken, "")
		if got.status != want.Status.Code || string(got.body) != want.Body.String {
			t.Errorf("%s:\n got %d %s\nwant %d %s", u, got.status, got.body, want.Status.Code, want.Body.String)
		}
		for _, h := range []string{"content-length", "content-type", "server", "cache-control", "pragma", "expires"} {
			if g, w := got.header.Get(h), want.Headers[h][0]; g != w {
				t.Errorf("%s: %s %q, recorded %q", u, h, g, w)
			}
		}
	}
	// The boundary: exactly 90 days back is still allowed.
	r := armDo(t, http.MethodGet, armGroupLogURL(srv.URL, armTestCorpID, armFilterQ(armTestNow.Add(-armRetention), armTestNow, "")), armTestToken, "")
	if r.status != http.StatusOK {
		t.Errorf("start exactly 90 days back: %d %s", r.status, r.body)
	}
}
