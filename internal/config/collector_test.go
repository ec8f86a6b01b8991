package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCollectorDefaults proves an empty collector section gets the
// documented defaults (DESIGN.md §4) and selects every management group.
func TestCollectorDefaults(t *testing.T) {
	cfg, err := Parse([]byte("collector: {}\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	five := Duration(5 * time.Minute)
	want := &Collector{Every: &five, Backfill: Duration(168 * time.Hour), Lag: Duration(5 * time.Minute),
		Overlap: Duration(30 * time.Minute), Concurrency: 4}
	if d := cmp.Diff(want, cfg.Collector); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if !cfg.Collector.Scopes.ManagementGroups.All() {
		t.Error("default selection is not all")
	}
	if cfg, _ := Parse([]byte("store: {}\n"), env(nil)); cfg.Collector != nil {
		t.Error("no collector section still turned the collector on")
	}
}

// TestCollectorScopes proves management_groups takes all or a list, and
// that every: 0 stays 0 (schedule off).
func TestCollectorScopes(t *testing.T) {
	y := `
collector:
  every: 0s
  backfill: 30d
  scopes:
    management_groups: [mg-a, mg-b]
    tenant: true
    subscriptions: [5a1d7c3e-2b4f-4e6a-9c8d-1f2e3a4b5c6d]
`
	cfg, err := Parse([]byte(y), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Collector
	if *c.Every != 0 || c.Backfill.D() != 30*24*time.Hour || c.Scopes.ManagementGroups.All() ||
		!cmp.Equal(c.Scopes.ManagementGroups.IDs, []string{"mg-a", "mg-b"}) || !c.Scopes.Tenant {
		t.Errorf("collector = %+v", c)
	}
	cfg, err = Parse([]byte("collector:\n  scopes:\n    management_groups: all\n"), env(nil))
	if err != nil || !cfg.Collector.Scopes.ManagementGroups.All() {
		t.Errorf("all: %v", err)
	}
	out, err := Marshal(cfg)
	if err != nil || !strings.Contains(string(out), "management_groups: all") {
		t.Errorf("Marshal = %s, %v", out, err)
	}
}

// TestCollectorProblems proves each bad collector field is reported with
// its path.
func TestCollectorProblems(t *testing.T) {
	y := `
collector:
  every: -1m
  backfill: 91d
  lag: -1s
  overlap: -1s
  concurrency: 100
  scopes:
    management_groups: ["", "a/b"]
    subscriptions: [not-a-guid]
`
	_, err := Parse([]byte(y), env(nil))
	if err == nil {
		t.Fatal("no error")
	}
	for _, p := range []string{"collector.every", "collector.backfill", "collector.lag", "collector.overlap",
		"collector.concurrency", "collector.scopes.management_groups[0]", "collector.scopes.management_groups[1]",
		"collector.scopes.subscriptions[0]"} {
		if !strings.Contains(err.Error(), p+":") {
			t.Errorf("error does not name %s:\n%v", p, err)
		}
	}
	_, err = Parse([]byte("collector:\n  scopes:\n    management_groups: some\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "neither all nor a list") {
		t.Errorf("management_groups: some = %v", err)
	}
	_, err = Parse([]byte("collector:\n  scopes:\n    management_groups: []\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "collector.scopes:") {
		t.Errorf("empty selection = %v", err)
	}
}
