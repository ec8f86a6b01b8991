package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/testenv"
)

// tapline runs the command line in-process and returns its exit code and
// output.
func tapline(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("gateway:\n  listn: x\n  audit: sometimes\n"), 0o600)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"version", []string{"version"}, 0, "tapline dev"},
		{"help", []string{"--help"}, 0, "Run a gateway in front of an emulated Azure OpenAI"},
		{"unknown flag", []string{"query", "requests", "--colour"}, 2, "unknown flag"},
		{"missing config flag", []string{"serve"}, 2, "--config is required"},
		{"missing config file", []string{"check", "--config", filepath.Join(dir, "nope.yaml")}, 2, "nope.yaml"},
		{"bad config names every field", []string{"check", "--config", bad}, 2, "gateway.listn: unknown key"},
		{"bad format", []string{"query", "requests", "--store", filepath.Join(dir, "x.db"), "--format", "xml"}, 2, "--format"},
		{"bad since", []string{"query", "usage", "--store", filepath.Join(dir, "x.db"), "--since", "yesterday"}, 2, "--since"},
		{"bad group", []string{"query", "usage", "--store", filepath.Join(dir, "x.db"), "--by", "colour"}, 2, "--by"},
		{"stray argument", []string{"version", "now"}, 2, "takes no arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := tapline(t, c.args...)
			if code != c.code || !strings.Contains(out+errs, c.want) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, c.code, out, errs)
			}
		})
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	root := newRoot(&env{stdout: io.Discard, stderr: io.Discard, lookup: os.LookupEnv})
	for _, c := range root.Commands() {
		for _, sub := range append(c.Commands(), c) {
			args := strings.Fields(strings.TrimPrefix(sub.CommandPath(), "tapline "))
			code, out, _ := tapline(t, append(args, "--help")...)
			if code != 0 || !strings.Contains(out, "Usage:") || sub.Short == "" {
				t.Errorf("%s --help: exit %d, short %q\n%s", sub.CommandPath(), code, sub.Short, out)
			}
		}
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("TAPLINE_FORMAT", "xml")
	code, _, errs := tapline(t, "query", "requests", "--store", filepath.Join(t.TempDir(), "x.db"))
	if code != 2 || !strings.Contains(errs, `"xml"`) {
		t.Errorf("TAPLINE_FORMAT was not applied: exit %d %s", code, errs)
	}
}

func TestKeysNew(t *testing.T) {
	code, out, _ := tapline(t, "keys", "new", "--name", "build-bot")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	key := lines[0]
	sum := sha256.Sum256([]byte(key))
	if !strings.HasPrefix(key, "tapline_") || !strings.Contains(lines[2], "sha256:"+hex.EncodeToString(sum[:])) ||
		!strings.Contains(lines[2], "name: build-bot") || strings.Contains(lines[2], key) {
		t.Errorf("key line %q, entry %q", key, lines[2])
	}
	if code, _, _ := tapline(t, "keys", "new", "--name", "bad name!"); code != 2 {
		t.Errorf("a bad name exits %d", code)
	}
}

func TestCheckProbesBackends(t *testing.T) {
	aoai := emulator.NewAOAI(emulator.AOAIConfig{Deployments: map[string]string{"gpt-4o": "gpt-4o"},
		APIKeys: []string{"good-upstream-key"}}, slog.New(slog.DiscardHandler))
	up := httptest.NewServer(aoai)
	defer up.Close()
	write := func(upstreamKey string) string {
		p := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(p, []byte(fmt.Sprintf(`gateway:
  auth: {keys: [{name: a, hash: "sha256:%s"}]}
  backends:
    - {name: emu, url: %s, api_key: %s}
`, strings.Repeat("ab", 32), up.URL, upstreamKey)), 0o600)
		return p
	}
	code, out, errs := tapline(t, "check", "--config", write("good-upstream-key"))
	if code != 0 || !strings.Contains(out, "emu") || !strings.Contains(out, "ok") {
		t.Errorf("good key: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = tapline(t, "check", "--config", write("wrong-upstream-key"))
	if code != 1 || !strings.Contains(out, "refused the credential") || strings.Contains(out+errs, "wrong-upstream-key") {
		t.Errorf("bad key: exit %d\n%s%s", code, out, errs)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The demo prints a curl line that works as printed, and the queries show
// what it recorded.
func TestDemo(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		testenv.Missing(t, "curl", "curl is not on PATH")
	}
	db := filepath.Join(t.TempDir(), "demo.db")
	shipped := filepath.Join(t.TempDir(), "shipped")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--listen", "127.0.0.1:0", "--dashboard", "127.0.0.1:0", "--store", db, "--ship-dir", shipped, "--quiet"}, out, io.Discard)
	}()

	var lines []string
	for deadline := time.Now().Add(20 * time.Second); len(lines) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		lines = lines[:0]
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "curl ") {
				lines = append(lines, sc.Text())
			}
		}
	}
	if len(lines) != 2 {
		t.Fatalf("want two curl lines (a key caller and an Entra caller) in:\n%s", out.String())
	}
	for _, line := range lines {
		if strings.Contains(line, "\x1b") || strings.HasSuffix(line, "\\") {
			t.Fatalf("not a plain single line: %q", line)
		}
		body, err := exec.Command("sh", "-c", strings.Replace(line, "curl ", curl+" -f ", 1)).Output()
		if err != nil {
			t.Fatalf("the printed curl failed: %v\n%s\n%s", err, line, body)
		}
		var chat struct {
			Choices []struct{ Message struct{ Content string } }
		}
		if json.Unmarshal(body, &chat) != nil || len(chat.Choices) == 0 || chat.Choices[0].Message.Content == "" {
			t.Fatalf("curl got %s", body)
		}
	}

	// The dashboard's URL comes first, and every view answers.
	first, _, _ := strings.Cut(out.String(), "\n")
	dashURL, ok := strings.CutPrefix(first, "Dashboard: ")
	if !ok || !strings.HasPrefix(dashURL, "http://127.0.0.1:") {
		t.Fatalf("the first line is not the dashboard URL: %q", first)
	}
	for _, view := range []string{"", "requests", "usage", "activity", "delivery", "limits"} {
		resp, err := http.Get(dashURL + view)
		if err != nil {
			t.Fatalf("dashboard /%s: %v", view, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("dashboard /%s: %s", view, resp.Status)
		}
	}

	// The demo's own traffic and the curl call are in the store, readable
	// while the demo runs.
	var recs []record.GatewayRequest
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		code, js, errs := tapline(t, "query", "requests", "--store", db, "--format", "json")
		if code != 0 {
			t.Fatalf("query: %d %s", code, errs)
		}
		recs = recs[:0]
		for _, l := range strings.Split(strings.TrimSpace(js), "\n") {
			var env struct{ Data record.GatewayRequest }
			if json.Unmarshal([]byte(l), &env) == nil {
				recs = append(recs, env.Data)
			}
		}
		if len(recs) >= 9 && finishedAll(recs) {
			break
		}
	}
	principals := map[string]int{}
	for _, r := range recs {
		id := r.Principal.ID()
		if r.Principal.Kind == record.PrincipalEntraApp {
			id = "app:" + r.Principal.AppID
		}
		principals[id]++
	}
	want := map[string]int{"key:demo": 1, "ana@contoso.example": 1, "key:analytics-team": 3, "app:reporting-job": 2, "key:intern": 2}
	for k, n := range want {
		if principals[k] != n {
			t.Errorf("records by principal: %v, want %v", principals, want)
			break
		}
	}
	// The collector pulled the emulated tenant's Activity Log: 13 groups
	// (the root and 12 below it) of 25 events each.
	var activity []string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, js, _ := tapline(t, "query", "activity", "--store", db, "--format", "json")
		if activity = strings.Split(strings.TrimSpace(js), "\n"); len(activity) >= 13*25 {
			break
		}
	}
	if len(activity) != 13*25 || !strings.Contains(activity[0], `"kind":"activity_log"`) {
		t.Errorf("the demo collected %d activity records, want %d", len(activity), 13*25)
	}
	code, csv, _ := tapline(t, "query", "usage", "--store", db, "--by", "principal,deployment", "--format", "csv")
	if code != 0 || !strings.HasPrefix(csv, "principal,deployment,requests,") || !strings.Contains(csv, "key:demo,gpt-4o,1,") {
		t.Errorf("usage csv:\n%s", csv)
	}
	// The dashboard's CSV download is the same bytes for the same filters.
	resp, err := http.Get(dashURL + "usage.csv?by=principal,deployment&since=all")
	if err != nil {
		t.Fatal(err)
	}
	dashCSV, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(dashCSV) != csv {
		t.Errorf("dashboard usage.csv:\n%s\nquery usage --format csv:\n%s", dashCSV, csv)
	}

	// Every record reaches the demo's file sink, and query sinks says so.
	var state string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, state, _ = tapline(t, "query", "sinks", "--store", db, "--format", "json")
		if strings.Contains(state, `"lag_records":0,`) {
			break
		}
	}
	var st struct {
		Sink         string `json:"sink"`
		ConfirmedSeq int64  `json:"confirmed_seq"`
		LagRecords   int64  `json:"lag_records"`
	}
	if err := json.Unmarshal([]byte(state), &st); err != nil || st.Sink != "local-files" || st.LagRecords != 0 {
		t.Fatalf("query sinks: %v\n%s", err, state)
	}
	files, _ := filepath.Glob(filepath.Join(shipped, "*.jsonl"))
	ids := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var r record.Record
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("shipped line %q: %v", l, err)
			}
			ids[r.ID] = true
		}
	}
	if int64(len(ids)) != st.ConfirmedSeq || len(ids) < 13*25+7 {
		t.Errorf("the file sink holds %d distinct records; the store released %d", len(ids), st.ConfirmedSeq)
	}

	// Every view of the dashboard has something to show: rows of content,
	// and the demo's callers, deployments, events and sink in them.
	for _, v := range []struct {
		path    string
		minRows int
		want    []string
	}{
		{"", 4, []string{"key:analytics-team", "gpt-4o-mini"}},       // top principals and deployments
		{"requests", 9, []string{"key:demo", "ana@contoso.example"}}, // the calls
		{"usage", 4, []string{"key:analytics-team", "gpt-4o"}},
		{"activity", 25, []string{"Microsoft.Authorization/roleAssignments/write"}},
		{"delivery", 1, []string{"local-files"}},
		{"limits", 2, []string{"key:intern", "tokens_per_day"}},
	} {
		resp, err := http.Get(dashURL + v.path)
		if err != nil {
			t.Fatalf("dashboard /%s: %v", v.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		rows, text := contentRows(t, string(body))
		if resp.StatusCode != http.StatusOK || rows < v.minRows {
			t.Errorf("dashboard /%s: %s with %d rows of content, want %d or more", v.path, resp.Status, rows, v.minRows)
		}
		for _, w := range v.want {
			if !strings.Contains(text, w) {
				t.Errorf("dashboard /%s does not show %q", v.path, w)
			}
		}
	}

	// The demo key's small limit: repeating its curl soon gets a 429, as
	// the demo says. Windows are fixed minutes, so one boundary may let
	// up to 2*demoRPM calls through; 2*demoRPM+1 calls always meet a 429.
	if !strings.Contains(out.String(), fmt.Sprintf("run the curl above %d times to see a 429", demoRPM+1)) {
		t.Errorf("the demo does not say how to see a 429:\n%s", out.String())
	}
	throttled := ""
	for i := 0; i < 2*demoRPM && throttled == ""; i++ {
		b, err := exec.Command("sh", "-c", strings.Replace(lines[0], "curl ", curl+" -i ", 1)).Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		if strings.HasPrefix(string(b), "HTTP/1.1 429") {
			throttled = string(b)
		}
	}
	if !strings.Contains(throttled, "requests_per_minute of 5") || !strings.Contains(strings.ToLower(throttled), "retry-after:") {
		t.Fatalf("no 429 with Retry-After after %d calls of the demo key; last answer:\n%s", 2*demoRPM+1, throttled)
	}
	var thr string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, thr, _ = tapline(t, "query", "throttles", "--store", db, "--format", "csv"); strings.Count(thr, "\n") >= 3 {
			break
		}
	}
	// The demo key's 429, and the intern's quota refusal from the demo's
	// own traffic (so the dashboard's Limits view is never empty).
	if rows := strings.Split(strings.TrimSpace(thr), "\n"); len(rows) != 3 ||
		!strings.Contains(thr, ",key:demo,127.0.0.1,gpt-4o,429,requests_per_minute,") ||
		!strings.Contains(thr, ",key:intern,127.0.0.1,gpt-4o-mini,403,tokens_per_day,") {
		t.Errorf("query throttles:\n%s", thr)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("demo exited %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop on cancel")
	}
}

// contentRows parses a dashboard page and returns how many rows of data it
// shows (rows of its tables' bodies, events of a timeline) and its text.
func contentRows(t *testing.T, body string) (int, string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse page: %v", err)
	}
	n := 0
	var text strings.Builder
	var walk func(*html.Node, bool)
	walk = func(nd *html.Node, inBody bool) {
		switch {
		case nd.Type == html.TextNode:
			text.WriteString(nd.Data)
		case nd.Type == html.ElementNode && nd.Data == "tbody":
			inBody = true
		case nd.Type == html.ElementNode && nd.Data == "tr" && inBody:
			n++
		case nd.Type == html.ElementNode && nd.Data == "li":
			for _, a := range nd.Attr {
				if a.Key == "class" && strings.HasPrefix(a.Val, "event") {
					n++
				}
			}
		}
		for c := nd.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inBody)
		}
	}
	walk(doc, false)
	return n, text.String()
}

func finishedAll(recs []record.GatewayRequest) bool {
	for _, r := range recs {
		if r.State == record.StateStarted {
			return false
		}
	}
	return true
}
