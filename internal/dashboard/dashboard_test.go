package dashboard

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tapline/tapline/internal/chargeback"
	"github.com/tapline/tapline/internal/store"
)

// views are the dashboard's pages, each with the text its data must show
// and the hostile texts (fixture_test.go) it must show as text.
var views = []struct {
	name, path string
	want       []string
	hostile    []string
}{
	{"overview", "/", []string{"Requests", "Top principals", "build-bot", "gpt-4o-mini"},
		[]string{hostile("principal"), hostile("deployment")}},
	{"requests", "/requests", []string{"gw-000", "ana@contoso.example", "question number 0"},
		[]string{hostile("principal"), hostile("deployment")}},
	{"request", "/requests/xss", []string{"apim", "Prompt", "Response"},
		[]string{xss, hostile("response"), hostile("principal"), hostile("deployment"), hostile("user agent"),
			hostile("request id"), hostile("limit"), hostile("error")}},
	{"usage", "/usage", []string{"key:build-bot", "total_tokens", "Download CSV"},
		[]string{hostile("principal"), hostile("deployment")}},
	{"activity", "/activity", []string{"roleAssignments/write", "policyAssignments/write", "mg-1"},
		[]string{hostile("scope"), hostile("operation"), hostile("caller")}},
	{"delivery", "/delivery", []string{"archive", "never-ran", "siem", "Dead letters"},
		[]string{hostile("sink"), hostile("last error"), hostile("reason")}},
	{"limits", "/limits", []string{"rpm", "tokens_per_day", "key:build-bot"},
		[]string{hostile("principal"), hostile("deployment"), hostile("limit"), hostile("error")}},
}

func get(t *testing.T, h http.Handler, path string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestViewsRender(t *testing.T) {
	h := newTestHandler(t, fixtureStore(t), Config{Loopback: true})
	for _, v := range views {
		t.Run(v.name, func(t *testing.T) {
			rec := get(t, h, v.path)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", v.path, rec.Code, rec.Body)
			}
			body := rec.Body.String()
			for _, w := range v.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s: no %q in the page", v.path, w)
				}
			}
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
				if rec.Header().Get(h) == "" {
					t.Errorf("GET %s: no %s header", v.path, h)
				}
			}
			if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") ||
				!strings.Contains(csp, "default-src 'self'") {
				t.Errorf("CSP = %q", csp)
			}
		})
	}
}

func TestRequestFiltersAndPaging(t *testing.T) {
	h := newTestHandler(t, fixtureStore(t), Config{Loopback: true})
	body := get(t, h, "/requests?principal=key:build-bot").Body.String()
	if strings.Contains(body, "ana@contoso.example") || !strings.Contains(body, "build-bot") {
		t.Errorf("principal filter shows other principals or none")
	}
	body = get(t, h, "/requests?status=403").Body.String()
	if n := strings.Count(body, `href="/requests/gw-`); n != 4 {
		t.Errorf("status=403 lists %d calls, want 4", n)
	}
	if body := get(t, h, "/requests?text=number+42").Body.String(); !strings.Contains(body, "gw-042") || strings.Contains(body, "gw-041") {
		t.Errorf("text filter: want gw-042 alone")
	}
	// A text search covers the last day unless a period is given: gw-100
	// is 38 hours old.
	if body := get(t, h, "/requests?text=number+100").Body.String(); strings.Contains(body, "gw-100") {
		t.Errorf("a text search without since went past the last 24 hours")
	}
	for _, since := range []string{"all", "48h"} {
		if body := get(t, h, "/requests?since="+since+"&text=number+100").Body.String(); !strings.Contains(body, "gw-100") {
			t.Errorf("since=%s: text search does not find gw-100", since)
		}
	}
	// Walk the pages: every call once, newest first.
	seen := map[string]bool{}
	next := "/requests"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("too many pages")
		}
		body := get(t, h, next).Body.String()
		for _, part := range strings.Split(body, `href="/requests/`)[1:] {
			id := part[:strings.IndexByte(part, '"')]
			if seen[id] {
				t.Errorf("%s listed twice", id)
			}
			seen[id] = true
		}
		next = ""
		if i := strings.Index(body, `rel="next"`); i >= 0 {
			start := strings.LastIndex(body[:i], `href="`) + len(`href="`)
			next = strings.ReplaceAll(body[start:strings.Index(body[start:], `"`)+start], "&amp;", "&")
		}
	}
	if len(seen) != 121 {
		t.Errorf("pages listed %d calls, want 121", len(seen))
	}
	// deployment= matches the name exactly: gpt-4o, not gpt-4o-mini.
	rows := tableRows(t, get(t, h, "/requests?deployment=gpt-4o").Body.String())
	col := slices.Index(rows[0], "Deployment")
	if len(rows) != 41 {
		t.Errorf("deployment=gpt-4o lists %d calls, want 40", len(rows)-1)
	}
	for _, r := range rows[1:] {
		if r[col] != "gpt-4o" {
			t.Errorf("deployment=gpt-4o lists a call to %q", r[col])
		}
	}
	// until= ends the listing: newest first from the last call before it.
	rows = tableRows(t, get(t, h, "/requests?until=2026-11-20T06:00:00Z").Body.String())
	if len(rows) < 2 || rows[1][0] != "2026-11-20 05:59:00" {
		t.Errorf("until=06:00 starts at %q, want the call of 05:59", rows[1:2])
	}
	for _, r := range rows[1:] {
		if r[0] > "2026-11-20 06:00:00" {
			t.Errorf("until=06:00 lists a call of %s", r[0])
		}
	}
	if rec := get(t, h, "/requests?status=abc"); rec.Code != http.StatusBadRequest {
		t.Errorf("status=abc: %d, want 400", rec.Code)
	}
	if rec := get(t, h, "/requests/nope"); rec.Code != http.StatusNotFound {
		t.Errorf("unknown id: %d, want 404", rec.Code)
	}
	if body := get(t, h, "/requests/gw-002").Body.String(); !strings.Contains(body, "<mark>[REDACTED]</mark>") {
		t.Errorf("redaction mark not highlighted")
	}
}

// TestOverviewRange checks that range= sets the overview's period: the
// request total of its chart and the figures of its top principals.
func TestOverviewRange(t *testing.T) {
	h := newTestHandler(t, fixtureStore(t), Config{Loopback: true})
	total := regexp.MustCompile(`Requests <span class="hint">total (\d+),`)
	tests := []struct {
		rng             string
		total, buildBot string // build-bot calls every 69 minutes
	}{
		{"1h", "4", "1"},
		{"", "63", "21"}, // 24h
		{"24h", "63", "21"},
		{"7d", "121", "40"},
	}
	for _, tt := range tests {
		t.Run("range="+tt.rng, func(t *testing.T) {
			rec := get(t, h, "/?range="+tt.rng)
			body := rec.Body.String()
			m := total.FindStringSubmatch(body)
			if rec.Code != http.StatusOK || m == nil || m[1] != tt.total {
				t.Fatalf("GET /?range=%s: %d, requests total %v, want %s", tt.rng, rec.Code, m, tt.total)
			}
			rows := tableRows(t, body) // Top principals
			col := slices.Index(rows[0], "Requests")
			i := slices.IndexFunc(rows, func(r []string) bool { return r[0] == "key:build-bot" })
			if col < 0 || i < 0 || rows[i][col] != tt.buildBot {
				t.Errorf("GET /?range=%s: top principals %q, want key:build-bot with %s requests", tt.rng, rows, tt.buildBot)
			}
		})
	}
	if rec := get(t, h, "/?range=2h"); rec.Code != http.StatusBadRequest {
		t.Errorf("range=2h: %d, want 400", rec.Code)
	}
}

// eventRE finds each event of the Activity timeline and its classes.
var eventRE = regexp.MustCompile(`<li id="ev-[^"]*" class="([^"]*)">`)

// eventClasses returns the class attribute of each event on an Activity
// page, top to bottom.
func eventClasses(body string) []string {
	var out []string
	for _, m := range eventRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestActivityFilters(t *testing.T) {
	h := newTestHandler(t, fixtureStore(t), Config{Loopback: true})
	body := get(t, h, "/activity?operation=roleassignments&caller=ana@contoso.example").Body.String()
	if !strings.Contains(body, "roleAssignments/write") || strings.Contains(body, "policyAssignments/write") ||
		strings.Contains(body, "bob@contoso.example</a>") {
		t.Errorf("activity filter shows the wrong events")
	}
	// Role and policy changes stand out: their events are marked, with a
	// badge each (the legend holds one of each too).
	for _, c := range []struct{ op, change string }{{"roleassignments", "role"}, {"policyAssignments", "policy"}} {
		body := get(t, h, "/activity?operation="+c.op).Body.String()
		classes := eventClasses(body)
		if len(classes) == 0 {
			t.Fatalf("operation=%s: no event", c.op)
		}
		for _, cl := range classes {
			if !strings.HasPrefix(cl, "event change "+c.change) {
				t.Errorf("operation=%s: an event of class %q, want it marked %s", c.op, cl, c.change)
			}
		}
		badge := `<span class="badge ` + c.change + `">` + c.change + `</span>`
		if n := strings.Count(body, badge); n != len(classes)+1 {
			t.Errorf("operation=%s: %d %s badges for %d events", c.op, n-1, c.change, len(classes))
		}
	}
	// Other operations do not.
	for _, cl := range eventClasses(get(t, h, "/activity?operation=deployments/write").Body.String()) {
		if strings.Contains(cl, "change") {
			t.Errorf("operation=deployments/write: an event of class %q", cl)
		}
	}
	body = get(t, h, "/activity?status=failed").Body.String()
	if strings.Contains(body, "<span class=\"status\">Succeeded") {
		t.Errorf("status=failed shows succeeded events")
	}
}

// TestDeliveryShowsRetries reads the sinks table: each sink's retries as
// the store counts them (fixture: siem 3, the hostile sink 1, none else).
func TestDeliveryShowsRetries(t *testing.T) {
	h := newTestHandler(t, fixtureStore(t), Config{Loopback: true})
	rows := tableRows(t, get(t, h, "/delivery").Body.String())
	col := slices.Index(rows[0], "Retries")
	if col < 0 {
		t.Fatalf("no Retries column in %q", rows[0])
	}
	got := map[string]string{}
	for _, r := range rows[1:] {
		got[r[0]] = r[col]
	}
	want := map[string]string{"archive": "0", "never-ran": "0", "siem": "3", hostile("sink"): "1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("retries by sink (-want +got):\n%s", diff)
	}
}

func TestUsageCSV(t *testing.T) {
	st := fixtureStore(t)
	h := newTestHandler(t, st, Config{Loopback: true})
	rec := get(t, h, "/usage.csv?by=principal,deployment&since=all")
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type = %q", ct)
	}
	rows, err := st.Usage(t.Context(), store.UsageQuery{By: []string{"principal", "deployment"}})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := chargeback.WriteCSV(&want, []string{"principal", "deployment"}, rows); err != nil {
		t.Fatal(err)
	}
	if rec.Body.String() != want.String() {
		t.Errorf("CSV:\n%s\nwant:\n%s", rec.Body, want.String())
	}
	if !strings.HasPrefix(want.String(), "principal,deployment,requests,errors,prompt_tokens,") {
		t.Errorf("header: %q", strings.SplitN(want.String(), "\n", 2)[0])
	}
	// The page's link carries the page's filters.
	body := get(t, h, "/usage?by=day&since=2026-11-19").Body.String()
	if !strings.Contains(body, `href="/usage.csv?by=day&amp;since=2026-11-19"`) {
		t.Errorf("CSV link does not carry the filters")
	}
	if rec := get(t, h, "/usage?by=nonsense"); rec.Code != http.StatusBadRequest {
		t.Errorf("by=nonsense: %d, want 400", rec.Code)
	}
}

func TestReadOnly(t *testing.T) {
	h := newTestHandler(t, fixtureStore(t), Config{Loopback: true})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(m, "/requests", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s /requests: %d, want 405", m, rec.Code)
		}
	}
}

func TestNewRefusesNoTokenOffLoopback(t *testing.T) {
	if _, err := New(Config{}, nil, nil); err != ErrNoToken {
		t.Errorf("New without token off loopback: %v, want ErrNoToken", err)
	}
}

const testToken = "correct-horse-battery-staple"

// signinForm gets the sign-in page and returns its CSRF cookie and value.
func signinForm(t *testing.T, h http.Handler) (*http.Cookie, string) {
	t.Helper()
	rec := get(t, h, "/signin")
	var c *http.Cookie
	for _, x := range rec.Result().Cookies() {
		if x.Name == csrfCookie {
			c = x
		}
	}
	if c == nil {
		t.Fatal("no CSRF cookie")
	}
	body := rec.Body.String()
	i := strings.Index(body, `name="csrf" value="`)
	if i < 0 {
		t.Fatal("no CSRF field")
	}
	v := body[i+len(`name="csrf" value="`):]
	return c, v[:strings.IndexByte(v, '"')]
}

func postSignin(h http.Handler, token string, csrf *http.Cookie, field, origin string) *httptest.ResponseRecorder {
	form := url.Values{"token": {token}, "csrf": {field}}
	req := httptest.NewRequest(http.MethodPost, "/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if csrf != nil {
		req.AddCookie(csrf)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestSignin(t *testing.T) {
	h := newTestHandler(t, fixtureStore(t), Config{Token: testToken})
	// Without the cookie every page sends to the sign-in page.
	for _, v := range views {
		rec := get(t, h, v.path)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/signin" {
			t.Errorf("GET %s without sign-in: %d to %q", v.path, rec.Code, rec.Header().Get("Location"))
		}
		if strings.Contains(rec.Body.String(), "question number") {
			t.Errorf("GET %s without sign-in shows data", v.path)
		}
	}
	if rec := get(t, h, "/usage.csv?since=all"); rec.Code != http.StatusSeeOther {
		t.Errorf("CSV without sign-in: %d", rec.Code)
	}
	csrf, field := signinForm(t, h)
	if rec := postSignin(h, "wrong-token-wrong-token", csrf, field, ""); rec.Code != http.StatusUnauthorized || hasSession(rec) {
		t.Errorf("wrong token: %d, session set %v", rec.Code, hasSession(rec))
	}
	if rec := postSignin(h, testToken, csrf, "forged", ""); rec.Code != http.StatusForbidden || hasSession(rec) {
		t.Errorf("forged CSRF field: %d", rec.Code)
	}
	if rec := postSignin(h, testToken, nil, field, ""); rec.Code != http.StatusForbidden || hasSession(rec) {
		t.Errorf("no CSRF cookie: %d", rec.Code)
	}
	if rec := postSignin(h, testToken, csrf, field, "https://evil.example"); rec.Code != http.StatusForbidden || hasSession(rec) {
		t.Errorf("cross-origin post: %d", rec.Code)
	}
	rec := postSignin(h, testToken, csrf, field, "http://example.com")
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("right token: %d %s", rec.Code, rec.Body)
	}
	var session *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	if !session.HttpOnly || !session.Secure || session.SameSite != http.SameSiteStrictMode || session.Path != "/" {
		t.Errorf("cookie flags: HttpOnly %v Secure %v SameSite %v Path %q", session.HttpOnly, session.Secure, session.SameSite, session.Path)
	}
	if strings.Contains(session.Value, testToken) {
		t.Error("the cookie holds the token")
	}
	for _, v := range views {
		if rec := get(t, h, v.path, session); rec.Code != http.StatusOK {
			t.Errorf("GET %s signed in: %d", v.path, rec.Code)
		}
	}
	forged := &http.Cookie{Name: sessionCookie, Value: strings.Repeat("0", len(session.Value))}
	if rec := get(t, h, "/requests", forged); rec.Code != http.StatusSeeOther {
		t.Errorf("forged session: %d", rec.Code)
	}
	// A session of another token does not open this dashboard.
	other := newTestHandler(t, fixtureStore(t), Config{Token: testToken + "-rotated"})
	if rec := get(t, other, "/requests", session); rec.Code != http.StatusSeeOther {
		t.Errorf("session of the old token: %d", rec.Code)
	}
}

func hasSession(rec *httptest.ResponseRecorder) bool {
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return true
		}
	}
	return false
}

func TestStaticServed(t *testing.T) {
	h := newTestHandler(t, fixtureStore(t), Config{Token: testToken})
	rec := get(t, h, "/static/style.css")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/css") {
		t.Errorf("style.css: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	b, _ := io.ReadAll(rec.Body)
	if bytes.Contains(b, []byte("http")) {
		t.Error("style.css refers to a remote resource")
	}
}

var _ = time.Second

func TestLimitsView(t *testing.T) {
	h := newTestHandler(t, fixtureStore(t), Config{Loopback: true})
	body := get(t, h, "/limits?principal=key:build-bot&since=all").Body.String()
	if !strings.Contains(body, "tokens_per_day") || strings.Contains(body, "ana@contoso.example") {
		t.Errorf("principal filter of the limits view shows other principals")
	}
	// Refused calls only: none of the 200s or the upstream 500s.
	if strings.Contains(body, "upstream failed") || strings.Contains(body, "question number") {
		t.Errorf("the limits view lists calls no limit refused")
	}
	if body := get(t, h, "/limits?since=2m").Body.String(); !strings.Contains(body, "No call was refused by a limit since 2m") {
		t.Errorf("no empty state for a period without refused calls")
	}
}
