// Command ship benchmarks delivery: it fills a store with realistic records
// (gateway calls with their prompt and response, Activity Log events with
// their original JSON, about 1.3 KB each on average), then, for each sink,
// ships the whole store through internal/ship in this process and reports
// records/s, wall time and the peak RSS of the shipping phase (the kernel's
// high-water mark is reset between phases through /proc/self/clear_refs).
// It checks that the destination received every record. It prints a
// markdown table and writes it to bench/results/.
//
//	go run ./bench/ship                          # 1,000,000 records to the file sink
//	go run ./bench/ship -records 200000 -sinks file
//
// Run it from the repository root. It exits 1 if a sink fails to receive
// every record, 0 otherwise (whether or not the targets are met).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/ship"
	"github.com/tapline/tapline/internal/store"
)

// result is one sink's run.
type result struct {
	sink      string
	records   int64
	wall      time.Duration
	peakRSS   int64 // bytes, shipping phase only
	delivered int64
	note      string
}

// destination is one sink under test: its shipper target and a count of
// what it received, read after the run.
type destination struct {
	name   string
	target func(dir string) ([]ship.Target, func() (int64, string, error), func(), error)
}

func main() {
	n := flag.Int("records", 1_000_000, "records in the store")
	sinksFlag := flag.String("sinks", strings.Join(names(), ","), "sinks to ship to, comma-separated")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the shipping phases to this file")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	dir, err := os.MkdirTemp("", "tapline-bench-ship-")
	if err != nil {
		fatal(err)
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	db := filepath.Join(dir, "tapline.db")
	start := time.Now()
	if err := fill(db, *n); err != nil {
		fatal(err)
	}
	fillTime := time.Since(start)
	fmt.Fprintf(os.Stderr, "filled the store with %d records in %s\n", *n, fillTime.Round(time.Millisecond))

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	var results []result
	failed := false
	for _, name := range strings.Split(*sinksFlag, ",") {
		d, ok := destinations[name]
		if !ok {
			fatal(fmt.Errorf("unknown sink %q (have %s)", name, strings.Join(names(), ", ")))
		}
		r, err := runOne(db, filepath.Join(dir, name), int64(*n), d, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			r.note, failed = err.Error(), true
		}
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "%s: %d records in %s\n", name, r.delivered, r.wall.Round(time.Millisecond))
	}
	rep := report(results, *n, fillTime)
	fmt.Print(rep)
	p := filepath.Join("bench", "results", "ship-"+time.Now().UTC().Format("20060102-150405")+".md")
	if err := os.WriteFile(p, []byte(rep), 0o644); err == nil {
		fmt.Fprintf(os.Stderr, "wrote %s\n", p)
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// runOne ships the whole store to one sink and measures it.
func runOne(db, dir string, n int64, d destination, log *slog.Logger) (result, error) {
	r := result{sink: d.name, records: n}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return r, err
	}
	targets, count, stop, err := d.target(dir)
	if err != nil {
		return r, err
	}
	defer stop()
	st, err := store.Open(context.Background(), store.Config{Path: db}, log)
	if err != nil {
		return r, err
	}
	defer st.Close()
	sh, err := ship.New(st, targets, nil, log)
	if err != nil {
		return r, err
	}
	runtime.GC()
	resetPeakRSS()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	begin := time.Now()
	go func() { done <- sh.Run(ctx) }()
	tick := time.NewTicker(5 * time.Millisecond)
	for done := false; !done; {
		<-tick.C
		done = true
		for _, t := range targets {
			c, err := st.Cursor(ctx, t.Name)
			if err != nil {
				cancel()
				return r, err
			}
			done = done && c >= n
		}
	}
	tick.Stop()
	r.wall = time.Since(begin)
	r.peakRSS = peakRSS()
	cancel()
	if err := <-done; err != nil {
		return r, err
	}
	delivered, note, err := count()
	r.delivered, r.note = delivered, note
	if err != nil {
		return r, err
	}
	if delivered < n {
		return r, fmt.Errorf("the destination holds %d of %d records", delivered, n)
	}
	return r, nil
}

func report(rs []result, n int, fill time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Shipping %d records from the store (`go run ./bench/ship`)\n\n", n)
	fmt.Fprintf(&b, "%s, %d CPUs, %s. Store filled in %s (%.0f records/s).\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), runtime.Version(), fill.Round(time.Millisecond),
		float64(n)/fill.Seconds())
	fmt.Fprintln(&b, "| sink | records | wall | records/s | peak RSS (shipping) | delivered | note |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|")
	for _, r := range rs {
		rate := 0.0
		if r.wall > 0 {
			rate = float64(r.records) / r.wall.Seconds()
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %.0f | %.0f MiB | %d | %s |\n", r.sink, r.records, r.wall.Round(time.Millisecond),
			rate, float64(r.peakRSS)/(1<<20), r.delivered, r.note)
	}
	return b.String()
}

// resetPeakRSS resets the kernel's RSS high-water mark of this process
// (Linux 4.0+); without it the fill phase's peak would be reported.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS reads VmHWM from /proc/self/status, in bytes.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb << 10
		}
	}
	return 0
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench/ship:", err)
	os.Exit(1)
}
