package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/activitylog"
	"github.com/tapline/tapline/internal/azure"
	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/store"
)

var benchSize = flag.String("size", "100x200", "GROUPSxEVENTS_PER_SCOPE of BenchmarkCollect")

// BenchmarkCollect runs one collector pass in process (the ARM emulator in
// the same process, behind httptest) over 100 groups x 200 events (-size),
// into a fresh store, for a CPU profile of the collector's path:
//
//	go test -run XXX -bench Collect -benchtime 1x -cpuprofile cpu.out ./bench/collector [-args -size 100x2000]
//	go tool pprof -top -nodecount=30 cpu.out
//
// The emulator's own functions (internal/emulator) show in the profile too.
// The numbers it prints are not the benchmark's: use go run ./bench/collector.
func BenchmarkCollect(b *testing.B) {
	var groups, perScope int
	if _, err := fmt.Sscanf(*benchSize, "%dx%d", &groups, &perScope); err != nil {
		b.Fatalf("-size %q: want GROUPSxEVENTS_PER_SCOPE", *benchSize)
	}
	now := time.Now()
	arm, err := emulator.NewARM(emulator.ARMConfig{TenantID: tenantID, PageSize: 200,
		Tenant: emulator.GenerateTenant(emulator.ARMTenantSpec{Groups: groups, Levels: 4, EventsPerScope: perScope,
			Start: now.Add(-72 * time.Hour), End: now.Add(-time.Hour), Seed: 1})}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(arm)
	defer srv.Close()
	cred, err := azure.NewCredential(config.Azure{Credential: config.CredentialToken, AccessToken: "bench-dummy-token"})
	if err != nil {
		b.Fatal(err)
	}
	client, err := azure.NewARM(azure.ARMConfig{Endpoint: srv.URL, Credential: cred})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "tapline.db")
		st, err := store.Open(b.Context(), store.Config{Path: path, MaxBytes: 10 << 30}, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		c := activitylog.New(activitylog.Config{
			Scopes:   activitylog.ScopeSelection{AllGroups: true, TenantID: tenantID},
			Backfill: 7 * 24 * time.Hour, Lag: 5 * time.Minute, Overlap: 30 * time.Minute,
		}, client, st, nil)
		b.StartTimer()
		sum, err := c.Run(b.Context(), activitylog.RunOptions{})
		b.StopTimer()
		if err != nil || sum.Failed() != 0 {
			b.Fatalf("run: %v, %d scopes failed", err, sum.Failed())
		}
		events := 0
		for _, r := range sum.Scopes {
			events += r.New
		}
		if events != (groups+1)*perScope {
			b.Fatalf("stored %d, want %d", events, (groups+1)*perScope)
		}
		b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		st.Close()
		if fi, err := os.Stat(path); err == nil {
			b.ReportMetric(float64(fi.Size())/float64(events), "db-B/event")
		}
		b.StartTimer()
	}
}
