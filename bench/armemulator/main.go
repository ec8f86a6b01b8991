// Command armemulator serves a generated ARM tenant (management groups and
// their Activity Logs) on a loopback address for the collector benchmark
// (bench/collector). Events are generated on demand by the emulator, never
// held in memory; every scope's events are spread over the last three days
// (ending an hour ago), so a 7-day backfill window covers them all.
//
// It prints its base URL on stdout's first line and serves until SIGINT or
// SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tapline/tapline/internal/emulator"
)

// TenantID is the tenant (and root group) id the emulator serves.
const TenantID = "9f3c1b2a-7d4e-4c6f-8a1b-2c3d4e5f6a7b"

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	groups := flag.Int("groups", 1000, "management groups below the root")
	levels := flag.Int("levels", 4, "depth of the hierarchy below the root")
	perScope := flag.Int("events", 1000, "activity-log events per scope (each group and the root)")
	pageSize := flag.Int("page-size", 200, "events per activity-log page")
	seed := flag.Uint64("seed", 1, "tenant seed")
	flag.Parse()
	if *groups < 0 || *perScope < 0 || *pageSize <= 0 {
		fmt.Fprintln(os.Stderr, "usage: armemulator [-addr 127.0.0.1:PORT] [-groups N] [-levels N] [-events N] [-page-size N]")
		os.Exit(2)
	}
	if err := run(*addr, *groups, *levels, *perScope, *pageSize, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "armemulator:", err)
		os.Exit(1)
	}
}

func run(addr string, groups, levels, perScope, pageSize int, seed uint64) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	now := time.Now()
	tenant := emulator.GenerateTenant(emulator.ARMTenantSpec{
		Groups: groups, Levels: levels, EventsPerScope: perScope,
		Start: now.Add(-72 * time.Hour), End: now.Add(-time.Hour), Seed: seed,
	})
	url, _, shutdown, err := emulator.ListenARM(ctx, addr, emulator.ARMConfig{
		TenantID: TenantID, Tenant: tenant, PageSize: pageSize,
	}, log)
	if err != nil {
		return err
	}
	fmt.Println(url) // the harness reads the first line to learn the address
	<-ctx.Done()
	shutdown()
	return nil
}
