package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/store"
)

// cell is one measurement of one target in one scenario.
type cell struct {
	thr    wrkResult     // throughput run
	one    wrkResult     // one-connection run
	cpu    time.Duration // the proxy's CPU time over the throughput run; 0 for direct
	emuCPU time.Duration // the emulator's CPU time over the throughput run
}

func (c cell) cpuPerReq() time.Duration    { return perReq(c.cpu, c.thr.Requests) }
func (c cell) emuCPUPerReq() time.Duration { return perReq(c.emuCPU, c.thr.Requests) }

func perReq(d time.Duration, n int64) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}

// run is the whole harness: tools, build, stack, measurements, report.
func run(ctx context.Context, o options) error {
	wantT, scs, err := selection(o)
	if err != nil {
		return err
	}
	t, err := findTools(wantT["nginx"])
	if err != nil {
		return err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tapline-bench-")
	if err != nil {
		return fmt.Errorf("make temp dir: %w", err)
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	fmt.Fprintln(os.Stderr, "building tapline, emulator and bareproxy...")
	if err := build(ctx, root, dir); err != nil {
		return err
	}
	m := describeMachine(ctx, t, root)
	s, err := startStack(ctx, dir, t, wantT, o.tokens)
	if err != nil {
		return err
	}
	defer s.stop()

	for _, sc := range scs {
		for _, tg := range s.targets {
			if err := check(ctx, tg, sc); err != nil {
				return fmt.Errorf("sanity check: %w", err)
			}
			tg.calls++
		}
	}
	started := time.Now()
	cells, err := measureAll(ctx, o, t, s, scs)
	if err != nil {
		return err
	}
	elapsed := time.Since(started)

	// Every call through the gateway must be in the store, none pending:
	// a fast gateway that loses records would be benchmarking the wrong thing.
	var audits []string
	for _, tg := range s.targets {
		if tg.store == "" {
			continue
		}
		tg.proc.stop()
		a, err := checkStore(ctx, tg.store, tg.calls)
		if err != nil {
			return fmt.Errorf("%s: %w", tg.label, err)
		}
		if tg.proc.err != nil {
			a += fmt.Sprintf("; tapline serve exited with %v", tg.proc.err)
		}
		audits = append(audits, tg.label+": "+a)
	}
	audit := strings.Join(audits, "; ")
	rep := report{opts: o, machine: m, scenarios: scs, targets: s.targets, cells: cells,
		elapsed: elapsed, audit: audit, when: time.Now()}
	fmt.Print(rep.markdown(false))
	return writeReport(&rep, root, o.resultsDir)
}

// selection parses -targets and -scenarios.
func selection(o options) (map[string]bool, []scenario, error) {
	wantT, err := subset(o.targets, []string{"direct", "bare", "nginx", "gateway", "gateway-standard", "gateway-limits", "gateway-redis"})
	if err != nil {
		return nil, nil, fmt.Errorf("-targets: %w", err)
	}
	var names []string
	for _, sc := range scenarios {
		names = append(names, sc.name)
	}
	wantS, err := subset(o.scenarios, names)
	if err != nil {
		return nil, nil, fmt.Errorf("-scenarios: %w", err)
	}
	var scs []scenario
	for _, sc := range scenarios {
		if wantS[sc.name] {
			scs = append(scs, sc)
		}
	}
	return wantT, scs, nil
}

// measureAll runs every round of every scenario against every target,
// targets back to back so that their figures share conditions. It returns
// the cells by "scenario/target", one per round, and counts the calls each
// target completed (in target.calls), also on error.
func measureAll(ctx context.Context, o options, t tools, s *stack, scs []scenario) (map[string][]cell, error) {
	cells := map[string][]cell{}
	for round := 1; round <= o.rounds; round++ {
		for _, sc := range scs {
			for _, tg := range s.targets {
				fmt.Fprintf(os.Stderr, "round %d/%d  %-17s  %-8s ", round, o.rounds, sc.name, tg.name)
				c, n, err := measure(ctx, o, t, s, tg, sc)
				tg.calls += n
				if err != nil {
					fmt.Fprintln(os.Stderr)
					return cells, err
				}
				fmt.Fprintf(os.Stderr, "%8.0f req/s  p50 %s  cpu %s/req\n", c.thr.RPS, fmtMS(c.thr.P50), fmtUS(c.cpuPerReq()))
				k := sc.name + "/" + tg.name
				cells[k] = append(cells[k], c)
			}
		}
	}
	return cells, nil
}

// writeReport writes the full report, timestamped, to dir (default
// bench/results under the module root).
func writeReport(rep *report, root, dir string) error {
	if dir == "" {
		dir = filepath.Join(root, "bench", "results")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make results dir: %w", err)
	}
	path := filepath.Join(dir, rep.when.Format("20060102-150405")+".md")
	if err := os.WriteFile(path, []byte(rep.markdown(true)), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintln(os.Stderr, "report written to", path)
	return nil
}

// measure warms tg up, runs the throughput run between two readings of the
// proxy's and the emulator's CPU time, then the one-connection run. It
// returns the calls wrk completed in all three runs, also on error.
func measure(ctx context.Context, o options, t tools, s *stack, tg *target, sc scenario) (cell, int64, error) {
	var c cell
	script := filepath.Join(s.dir, "wrk-"+tg.name+"-"+sc.name+".lua")
	if err := writeScript(script, sc.body, map[string]string{"Content-Type": "application/json", "api-key": tg.key}); err != nil {
		return c, 0, err
	}
	url := tg.base + chatPath
	var calls int64
	wrk := func(threads, conns int, d time.Duration) (wrkResult, error) {
		r, err := runWrk(ctx, t.wrk, script, url, threads, conns, d)
		calls += r.Requests
		if err == nil {
			err = healthy(tg, sc, r, threads, conns)
		}
		return r, err
	}
	if _, err := wrk(o.threads, o.conns, o.warmup); err != nil {
		return c, calls, fmt.Errorf("warm-up: %w", err)
	}
	cpu := func() (proxy, emu time.Duration, err error) {
		if emu, err = cpuTime(s.emu.pid()); err != nil {
			return 0, 0, err
		}
		if tg.proc != nil {
			proxy, err = cpuTime(tg.proc.pid())
		}
		return proxy, emu, err
	}
	p0, e0, err := cpu()
	if err != nil {
		return c, calls, err
	}
	if c.thr, err = wrk(o.threads, o.conns, o.duration); err != nil {
		return c, calls, err
	}
	p1, e1, err := cpu()
	if err != nil {
		return c, calls, err
	}
	c.cpu, c.emuCPU = p1-p0, e1-e0
	if c.one, err = wrk(1, 1, o.oneConn); err != nil {
		return c, calls, err
	}
	return c, calls, nil
}

// healthy fails loudly when a target answered errors: a benchmark of 401s
// or of dropped connections is worthless.
func healthy(tg *target, sc scenario, r wrkResult, threads, conns int) error {
	where := fmt.Sprintf("%s, %s, -t%d -c%d", tg.label, sc.name, threads, conns)
	if r.Requests == 0 {
		return fmt.Errorf("%s: no request completed\n%s", where, r.Raw)
	}
	if r.Non2xx > 0 {
		return fmt.Errorf("%s: %d of %d responses were not 2xx; the numbers would be worthless\n%s",
			where, r.Non2xx, r.Requests, r.Raw)
	}
	// A run cut at its deadline may leave a read or timeout on each
	// connection; more than that is a failing target.
	if se := r.Socket.total(); se > int64(conns) {
		return fmt.Errorf("%s: %d socket errors (%+v)\n%s", where, se, r.Socket, r.Raw)
	}
	if tg.proc != nil && !tg.proc.alive() {
		return fmt.Errorf("%s: the process exited (%v):\n%s", where, tg.proc.err, tail(tg.proc.log))
	}
	return nil
}

// checkStore opens the gateway's store once the gateway has stopped and
// verifies it holds at least one record per call completed, none pending.
func checkStore(ctx context.Context, path string, calls int64) (string, error) {
	st, err := store.OpenReadOnly(ctx, path, slog.New(slog.DiscardHandler))
	if err != nil {
		return "", fmt.Errorf("open the gateway's store: %w", err)
	}
	defer st.Close()
	stats, err := st.Stats(ctx)
	if err != nil {
		return "", fmt.Errorf("read the gateway's store: %w", err)
	}
	if stats.Records < calls || stats.Pending != 0 {
		return "", fmt.Errorf("the gateway's store holds %d records (%d pending) for %d completed calls: calls went unrecorded",
			stats.Records, stats.Pending, calls)
	}
	return fmt.Sprintf("the gateway's store holds %d records (%.1f MB) for %d calls completed by wrk, 0 pending "+
		"(calls cut off at the end of a wrk run are recorded too)", stats.Records, float64(stats.Bytes)/1e6, calls), nil
}

// subset parses a comma-separated list of names out of all.
func subset(list string, all []string) (map[string]bool, error) {
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		found := false
		for _, a := range all {
			found = found || a == n
		}
		if !found {
			return nil, fmt.Errorf("unknown name %q (known: %s)", n, strings.Join(all, ", "))
		}
		want[n] = true
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("empty list (known: %s)", strings.Join(all, ", "))
	}
	return want, nil
}
