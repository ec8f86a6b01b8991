package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

const collectTenant = "9f3c1b2a-7d4e-4c6f-8a1b-2c3d4e5f6a7b"

// collectARM is an ARM stand-in with groups management groups (plus the
// root), perScope events each over the last three days, pages of 5.
func collectARM(t *testing.T, groups, perScope int) *emulator.ARM {
	t.Helper()
	now := time.Now()
	a, err := emulator.NewARM(emulator.ARMConfig{TenantID: collectTenant, PageSize: 5,
		Tenant: emulator.GenerateTenant(emulator.ARMTenantSpec{Groups: groups, Levels: 3, EventsPerScope: perScope,
			Start: now.Add(-72 * time.Hour), End: now.Add(-time.Hour), Seed: 3})}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// collectConfig writes a config collecting every group from armURL.
func collectConfig(t *testing.T, dir, armURL string) string {
	t.Helper()
	y := fmt.Sprintf(`store:
  path: %s
azure:
  tenant_id: %s
  arm_endpoint: %s
  credential: token
  access_token: test-token
collector:
  backfill: 7d
  concurrency: 3
`, filepath.Join(dir, "tapline.db"), collectTenant, armURL)
	p := filepath.Join(dir, "tapline.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCollectOnceAndQuery runs `collect --once` twice and `query activity`:
// the summary table, exit 0, nothing new the second time, and JSON Lines
// holding every event; then a denied group makes collect exit 1 and name
// the scope.
func TestCollectOnceAndQuery(t *testing.T) {
	arm := collectARM(t, 12, 8)
	srv := httptest.NewServer(arm)
	defer srv.Close()
	dir := t.TempDir()
	cfg := collectConfig(t, dir, srv.URL)

	code, out, errs := tapline(t, "collect", "--config", cfg, "--once")
	if code != 0 || !strings.Contains(out, "TOTAL 13 scopes, 0 failed") || !strings.Contains(out, "DUPLICATES") {
		t.Fatalf("collect: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if got := totalNew(t, out); got != "104" {
		t.Errorf("first collect stored %s new, want 104", got)
	}
	if !strings.Contains(errs, "[13/13]") {
		t.Errorf("no plain progress lines on a non-terminal stderr:\n%s", errs)
	}
	code, out, _ = tapline(t, "collect", "--config", cfg, "--once")
	if code != 0 || totalNew(t, out) != "0" {
		t.Fatalf("second collect: exit %d, want 0 new:\n%s", code, out)
	}
	code, out, errs = tapline(t, "query", "activity", "--config", cfg, "--format", "json")
	if code != 0 {
		t.Fatalf("query: exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 13*8 {
		t.Fatalf("query returned %d lines, want %d", len(lines), 13*8)
	}
	// Every record names the pass that stored it: one run for all scopes.
	runs := map[string]int{}
	for _, l := range lines {
		var r record.Record
		var p record.ActivityLog
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Kind != record.KindActivityLog {
			t.Fatalf("line %s: %v", l, err)
		}
		if err := json.Unmarshal(r.Data, &p); err != nil {
			t.Fatalf("data of %s: %v", r.ID, err)
		}
		runs[p.CollectionRun]++
	}
	for run := range runs {
		if _, err := time.Parse(time.RFC3339, run); err != nil || len(runs) != 1 {
			t.Errorf("records per collection_run = %v, want one run, an RFC 3339 time", runs)
			break
		}
	}
	code, out, _ = tapline(t, "query", "activity", "--config", cfg, "--scope", collectTenant)
	if code != 0 || strings.Count(out, "\n") != 8+1 {
		t.Errorf("query --scope root: exit %d, %d lines:\n%s", code, strings.Count(out, "\n"), out)
	}

	arm.Deny("mg-2-00005")
	code, out, errs = tapline(t, "collect", "--config", cfg, "--once")
	if code != 1 || !strings.Contains(out, "management_group:mg-2-00005") || !strings.Contains(errs, "1 of 13 scopes failed") {
		t.Errorf("collect with a denied group: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// TestCollectUsage proves a config without a collector section is bad
// usage (exit 2) and so is a bad --since.
func TestCollectUsage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte("store: {path: "+filepath.Join(dir, "x.db")+"}\n"), 0o600)
	if code, _, errs := tapline(t, "collect", "--config", p, "--once"); code != 2 || !strings.Contains(errs, "no collector section") {
		t.Errorf("exit %d: %s", code, errs)
	}
	if code, _, errs := tapline(t, "collect", "--config", p, "--since", "soon"); code != 2 || !strings.Contains(errs, "--since") {
		t.Errorf("exit %d: %s", code, errs)
	}
}

// TestCollectHelper is not a test: TestCollectSurvivesKill runs
// `collect --once` in a child process through it.
func TestCollectHelper(t *testing.T) {
	if os.Getenv("TAPLINE_TEST_COLLECT") == "" {
		t.Skip("helper process for TestCollectSurvivesKill")
	}
	os.Exit(run(context.Background(), []string{"collect", "--once", "--config", os.Getenv("TAPLINE_TEST_COLLECT")}, os.Stdout, os.Stderr))
}

// TestCollectSurvivesKill kills (SIGKILL) a `collect --once` process in the
// middle of its pass, after 60 activity-log pages were served, then runs a
// pass again on the same store. It proves nothing is lost (every event is
// stored) and nothing is duplicated (each once, the second pass adding
// exactly the difference): checkpoints only ever cover committed records.
func TestCollectSurvivesKill(t *testing.T) {
	const groups, perScope = 40, 12
	arm := collectARM(t, groups, perScope)
	var served atomic.Int32
	killed := make(chan struct{})
	var child atomic.Pointer[os.Process]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/eventtypes/") && served.Add(1) == 60 {
			if p := child.Load(); p != nil {
				p.Kill()
			}
			close(killed)
		}
		arm.ServeHTTP(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()
	cfg := collectConfig(t, dir, srv.URL)

	cmd := exec.Command(os.Args[0], "-test.run=^TestCollectHelper$")
	cmd.Env = append(os.Environ(), "TAPLINE_TEST_COLLECT="+cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child.Store(cmd.Process)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
		}
	}()
	err := cmd.Wait()
	select {
	case <-killed:
	default:
		t.Fatalf("the child finished before it was killed: %v", err)
	}

	st, err := store.OpenReadOnly(t.Context(), filepath.Join(dir, "tapline.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	before := countActivity(t, st)
	st.Close()
	total := (groups + 1) * perScope
	if before >= total {
		t.Fatalf("the killed pass stored %d of %d: it was not interrupted", before, total)
	}

	code, out, errs := tapline(t, "collect", "--config", cfg, "--once")
	if code != 0 {
		t.Fatalf("pass after kill: exit %d\n%s\n%s", code, out, errs)
	}
	st, err = store.OpenReadOnly(t.Context(), filepath.Join(dir, "tapline.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if after := countActivity(t, st); after != total {
		t.Errorf("after the kill and a new pass: %d records (%d before), want %d", after, before, total)
	}
	if got := totalNew(t, out); got != fmt.Sprint(total-before) {
		t.Errorf("pass after kill added %s, want %d", got, total-before)
	}
	if !strings.Contains(out, fmt.Sprintf("TOTAL %d scopes, 0 failed", groups+1)) {
		t.Errorf("summary:\n%s", out)
	}
}

// countActivity counts activity_log records, failing on a repeated id.
func countActivity(t *testing.T, st *store.Store) int {
	seen := map[string]bool{}
	err := st.Records(t.Context(), store.Filter{Kind: record.KindActivityLog}, func(r record.Record) error {
		if seen[r.ID] {
			return fmt.Errorf("record %s twice", r.ID)
		}
		seen[r.ID] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(seen)
}

// totalNew returns the NEW column of the summary's TOTAL line.
func totalNew(t *testing.T, out string) string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[0] == "TOTAL" {
			return f[5]
		}
	}
	t.Fatalf("no TOTAL line in:\n%s", out)
	return ""
}

// TestDiagnosticSettingsCommands proves audit lists every group as not
// exported, apply creates the settings, and a second audit finds them all
// exported; a bad --workspace is bad usage.
func TestDiagnosticSettingsCommands(t *testing.T) {
	arm := collectARM(t, 4, 0)
	srv := httptest.NewServer(arm)
	defer srv.Close()
	cfg := collectConfig(t, t.TempDir(), srv.URL)
	code, out, errs := tapline(t, "diagnostic-settings", "audit", "--config", cfg)
	if code != 0 || !strings.Contains(out, "TOTAL 5 groups, 5 without an exporting setting") {
		t.Fatalf("audit: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := tapline(t, "diagnostic-settings", "apply", "--config", cfg, "--workspace", "ws"); code != 2 {
		t.Errorf("apply with a bad workspace: exit %d: %s", code, errs)
	}
	ws := "/subscriptions/9cf7cc0a-0ba1-4624-bc82-97e1ee25dc45/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/ws"
	code, out, errs = tapline(t, "diagnostic-settings", "apply", "--config", cfg, "--workspace", ws)
	if code != 0 || strings.Count(out, "created tapline") != 5 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = tapline(t, "diagnostic-settings", "audit", "--config", cfg)
	if code != 0 || !strings.Contains(out, "TOTAL 5 groups, 0 without an exporting setting") {
		t.Errorf("audit after apply: exit %d\n%s", code, out)
	}
}

// passDone is a slog handler that signals each "collection pass done".
type passDone struct{ ch chan struct{} }

func (h passDone) Enabled(context.Context, slog.Level) bool { return true }
func (h passDone) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "collection pass done" {
		h.ch <- struct{}{}
	}
	return nil
}
func (h passDone) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h passDone) WithGroup(string) slog.Handler      { return h }

// TestCollectEveryRunsAtStart proves serve's schedule runs a pass at once
// (DESIGN.md §3), before the first tick, and stops when its context ends.
func TestCollectEveryRunsAtStart(t *testing.T) {
	arm := collectARM(t, 3, 4)
	srv := httptest.NewServer(arm)
	defer srv.Close()
	dir := t.TempDir()
	cfg, err := config.Load(collectConfig(t, dir, srv.URL), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	st, err := openStore(t.Context(), cfg.Store, log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := newCollector(cfg, st, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h := passDone{ch: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() { done <- collectEvery(ctx, c, time.Hour, slog.New(h)) }()
	<-h.ch
	cancel()
	if err := <-done; err != nil {
		t.Errorf("collectEvery = %v", err)
	}
	if n := countActivity(t, st); n != 4*4 {
		t.Errorf("first pass stored %d, want 16", n)
	}
}
