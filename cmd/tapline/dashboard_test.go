package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var dashboardRE = regexp.MustCompile(`msg="dashboard listening" addr=(\S+)`)

// serveDashboard runs `tapline serve` with config (YAML, the store's path
// filled in) over a store holding three gateway calls, and returns the
// dashboard's address; the test's end stops serve and checks it exited 0.
func serveDashboard(t *testing.T, config string) string {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "t.db")
	keyCallsStore(t, db, time.Now().Add(-time.Minute).UTC(), "build-bot", "build-bot", "build-bot")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("store: {path: "+db+"}\n"+config), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d:\n%s", code, logs.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := dashboardRE.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no dashboard listener in:\n%s", logs.String())
	return ""
}

// fetch gets url without following redirects.
func fetch(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// serve with a dashboard section on loopback serves the views of its
// store, with no sign-in, and knows the configured sinks.
func TestServeServesDashboardOnLoopback(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	addr := serveDashboard(t, "sinks:\n  - {name: local, file: {dir: "+out+"}}\ndashboard: {listen: 127.0.0.1:0}\n")
	code, body, _ := fetch(t, "http://"+addr+"/requests")
	if code != http.StatusOK || strings.Count(body, "what is tapline, take ") != 3 || !strings.Contains(body, "key:build-bot") {
		t.Errorf("GET /requests: %d\n%.3000s", code, body)
	}
	code, body, _ = fetch(t, "http://"+addr+"/delivery")
	if code != http.StatusOK || !strings.Contains(body, "<td class=\"wrap\">local</td>") {
		t.Errorf("GET /delivery: %d, no row of the sink local\n%.3000s", code, body)
	}
}

// serve refuses a dashboard off loopback without a token as bad
// configuration, and with one serves nothing but the sign-in page.
func TestServeDashboardOffLoopback(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("store: {path: "+filepath.Join(t.TempDir(), "t.db")+"}\ndashboard: {listen: 0.0.0.0:0}\n"), 0o600)
	if code, _, errs := tapline(t, "serve", "--config", cfg); code != 2 || !strings.Contains(errs, "dashboard.token: required") {
		t.Errorf("no token off loopback: exit %d, want 2:\n%s", code, errs)
	}

	addr := serveDashboard(t, "dashboard: {listen: 0.0.0.0:0, token: correct-horse-battery-staple}\n")
	_, port, _ := strings.Cut(addr, "]:")
	if port == "" {
		_, port, _ = strings.Cut(addr, ":")
	}
	for _, path := range []string{"/", "/requests", "/requests/gw-0", "/usage", "/usage.csv", "/activity", "/delivery", "/limits"} {
		code, body, h := fetch(t, "http://127.0.0.1:"+port+path)
		if code != http.StatusSeeOther || h.Get("Location") != "/signin" || strings.Contains(body, "what is tapline") {
			t.Errorf("GET %s without sign-in: %d to %q", path, code, h.Get("Location"))
		}
	}
	if code, body, _ := fetch(t, "http://127.0.0.1:"+port+"/signin"); code != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Errorf("GET /signin: %d", code)
	}
}
