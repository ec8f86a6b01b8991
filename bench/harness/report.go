package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// machine describes where a run happened.
type machine struct {
	cpus                     int
	model, kernel, goVersion string
	wrkVersion, nginxVersion string
	loadBefore               string
	tree                     string // the commit measured, and whether the tree differs from it
}

func describeMachine(ctx context.Context, t tools, root string) machine {
	m := machine{cpus: runtime.NumCPU(), model: "unknown", kernel: "unknown", goVersion: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.loadBefore = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	first := func(b []byte) string { l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n"); return l }
	if b, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.goVersion = first(b)
	}
	b, _ := exec.CommandContext(ctx, t.wrk, "-v").CombinedOutput() // exits 1 after printing its version
	m.wrkVersion = first(b)
	if t.nginx != "" {
		b, _ := exec.CommandContext(ctx, t.nginx, "-v").CombinedOutput()
		m.nginxVersion = first(b)
	}
	m.tree = describeTree(ctx, root)
	return m
}

// describeTree names the commit the binaries were built from and counts
// uncommitted changes outside bench/, so that a result can be traced to the
// code it measured.
func describeTree(ctx context.Context, root string) string {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	head, err := git("rev-parse", "--short", "HEAD")
	if err != nil {
		return "not a git checkout"
	}
	st, err := git("status", "--porcelain", "--", ".", ":(exclude)bench")
	switch {
	case err != nil:
		return "commit " + head
	case st == "":
		return "commit " + head + ", no uncommitted changes outside bench/"
	}
	return fmt.Sprintf("commit %s with %d uncommitted changes outside bench/ (git status)", head, len(strings.Split(st, "\n")))
}

// report renders the results of a run.
type report struct {
	opts      options
	machine   machine
	scenarios []scenario
	targets   []*target
	cells     map[string][]cell
	elapsed   time.Duration
	audit     string
	when      time.Time
}

// summary is the median over rounds of one scenario and target.
type summary struct {
	rps             float64
	p50, p99        time.Duration
	cpu, emuCPU     time.Duration // per request
	oneP50          time.Duration
	proxy, measured bool
}

func (r *report) summary(sc, tg string) summary {
	cs := r.cells[sc+"/"+tg]
	if len(cs) == 0 {
		return summary{}
	}
	med := func(f func(cell) time.Duration) time.Duration {
		v := make([]time.Duration, len(cs))
		for i, c := range cs {
			v[i] = f(c)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	rps := make([]float64, len(cs))
	for i, c := range cs {
		rps[i] = c.thr.RPS
	}
	slices.Sort(rps)
	return summary{
		rps:      rps[len(rps)/2],
		p50:      med(func(c cell) time.Duration { return c.thr.P50 }),
		p99:      med(func(c cell) time.Duration { return c.thr.P99 }),
		cpu:      med(cell.cpuPerReq),
		emuCPU:   med(cell.emuCPUPerReq),
		oneP50:   med(func(c cell) time.Duration { return c.one.P50 }),
		proxy:    tg != "direct",
		measured: true,
	}
}

func fmtMS(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
func fmtUS(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }

// cpuRatio is the median over rounds of tg's CPU per request divided by
// base's in the same round: the figure that travels, since both were
// measured minutes apart under the same conditions.
func (r *report) cpuRatio(sc, tg, base string) (float64, bool) {
	a, b := r.cells[sc+"/"+tg], r.cells[sc+"/"+base]
	var v []float64
	for i := range min(len(a), len(b)) {
		if d := b[i].cpuPerReq(); d > 0 {
			v = append(v, float64(a[i].cpuPerReq())/float64(d))
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	return v[len(v)/2], true
}

// perRound lists tg's CPU per request over base's, round by round.
func (r *report) perRound(sc, tg, base string) string {
	a, b := r.cells[sc+"/"+tg], r.cells[sc+"/"+base]
	var out []string
	for i := range min(len(a), len(b)) {
		if d := b[i].cpuPerReq(); d > 0 {
			out = append(out, fmt.Sprintf("%.2f×", float64(a[i].cpuPerReq())/float64(d)))
		}
	}
	return strings.Join(out, " ")
}

// addedP50 is the median over rounds of tg's p50 at one connection minus
// the direct call's in the same round.
func (r *report) addedP50(sc, tg string) (time.Duration, bool) {
	a, b := r.cells[sc+"/"+tg], r.cells[sc+"/direct"]
	var v []time.Duration
	for i := range min(len(a), len(b)) {
		v = append(v, a[i].one.P50-b[i].one.P50)
	}
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	return v[len(v)/2], true
}

// markdown renders the report; full adds the run's parameters, machine and
// wrk's raw output (the file in bench/results).
func (r *report) markdown(full bool) string {
	var b strings.Builder
	o, m := r.opts, r.machine
	fmt.Fprintf(&b, "## Tapline benchmark, %s\n\n", r.when.Format(time.RFC3339))
	fmt.Fprintf(&b, "- machine: %d × %s, Linux %s, load average before the run %s\n", m.cpus, m.model, m.kernel, m.loadBefore)
	fmt.Fprintf(&b, "- code: %s\n", m.tree)
	fmt.Fprintf(&b, "- %s; %s; %s\n", m.goVersion, m.wrkVersion, orNone(m.nginxVersion))
	fmt.Fprintf(&b, "- per target and scenario: %s warm-up, %s at wrk -t%d -c%d (req/s, p50, p99, CPU), %s at -t1 -c1 (c=1 p50); "+
		"%d completion tokens; %d round(s): medians shown, ratios and added latency are medians of each round's; %s of measurement\n\n",
		o.warmup, o.duration, o.threads, o.conns, o.oneConn, o.tokens, o.rounds, r.elapsed.Round(time.Second))

	b.WriteString("| scenario | target | req/s | p50 | p99 | proxy CPU/req | × bare | emulator CPU/req | c=1 p50 | added p50 at c=1 |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, sc := range r.scenarios {
		for _, tg := range r.targets {
			s := r.summary(sc.name, tg.name)
			cpu, x, added := "–", "–", "–"
			if s.proxy {
				cpu = fmtUS(s.cpu)
				if v, ok := r.cpuRatio(sc.name, tg.name, "bare"); ok {
					x = fmt.Sprintf("%.2f×", v)
				}
				if d, ok := r.addedP50(sc.name, tg.name); ok {
					added = fmtMS(d)
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n",
				sc.name, tg.label, s.rps, fmtMS(s.p50), fmtMS(s.p99), cpu, x, fmtUS(s.emuCPU), fmtMS(s.oneP50), added)
		}
	}
	b.WriteString("\n")
	b.WriteString(r.verdicts())
	if r.audit != "" {
		fmt.Fprintf(&b, "\nAudit check: %s.\n", r.audit)
	}
	if full {
		b.WriteString("\n<details><summary>wrk output</summary>\n\n")
		for _, sc := range r.scenarios {
			for _, tg := range r.targets {
				for i, c := range r.cells[sc.name+"/"+tg.name] {
					fmt.Fprintf(&b, "### %s, %s, round %d\n\n```\n%s```\n\n```\n%s```\n\n",
						sc.name, tg.label, i+1, c.thr.Raw, c.one.Raw)
				}
			}
		}
		b.WriteString("</details>\n")
	}
	return b.String()
}

// Targets of the issues: the gateway's CPU per request at most 1.5 times
// the bare ReverseProxy's in the same run, under 0.5 ms added p50 at c=1,
// and strict audit within 15% of standard audit's throughput.
const (
	targetCPURatio    = 1.5
	targetAddedP50    = 500 * time.Microsecond
	targetStrictShare = 0.85
	// Issue 6: what limits may cost, against the gateway without them.
	targetMemoryCost = 0.02
	targetRedisCost  = 0.10
)

// verdicts says, per scenario, whether the gateway meets its targets.
func (r *report) verdicts() string {
	var b strings.Builder
	for _, sc := range r.scenarios {
		gw := r.summary(sc.name, "gateway")
		if !gw.measured {
			continue
		}
		fmt.Fprintf(&b, "- %s: gateway CPU/request %s", sc.name, fmtUS(gw.cpu))
		if x, ok := r.cpuRatio(sc.name, "gateway", "bare"); ok {
			fmt.Fprintf(&b, " = %.2f× the bare proxy (target ≤ %.1f×: %s)", x, targetCPURatio, met(x <= targetCPURatio))
			if r.opts.rounds > 1 {
				fmt.Fprintf(&b, " [rounds: %s]", r.perRound(sc.name, "gateway", "bare"))
			}
		}
		if x, ok := r.cpuRatio(sc.name, "gateway", "nginx"); ok {
			fmt.Fprintf(&b, ", %.2f× nginx", x)
		}
		if added, ok := r.addedP50(sc.name, "gateway"); ok {
			fmt.Fprintf(&b, "; added p50 at c=1 %s (target < %s: %s)", fmtMS(added), fmtMS(targetAddedP50), met(added < targetAddedP50))
		}
		b.WriteString("\n")
		if std := r.summary(sc.name, "gateway-standard"); std.measured && std.rps > 0 {
			share := gw.rps / std.rps
			fmt.Fprintf(&b, "- %s: strict audit %.0f req/s = %.0f%% of standard audit's %.0f req/s (target ≥ %.0f%%: %s); "+
				"CPU/request %s against %s; p50 at c=1 %s against %s\n",
				sc.name, gw.rps, 100*share, std.rps, 100*targetStrictShare, met(share >= targetStrictShare),
				fmtUS(gw.cpu), fmtUS(std.cpu), fmtMS(gw.oneP50), fmtMS(std.oneP50))
		}
		for _, l := range []struct {
			name, label string
			target      float64
		}{{"gateway-limits", "memory limiter", targetMemoryCost}, {"gateway-redis", "Redis limiter", targetRedisCost}} {
			lim := r.summary(sc.name, l.name)
			if !lim.measured || gw.rps == 0 || gw.cpu == 0 {
				continue
			}
			cost := 1 - lim.rps/gw.rps
			fmt.Fprintf(&b, "- %s: %s costs %.1f%% of throughput (%.0f against %.0f req/s; target < %.0f%%: %s), "+
				"CPU/request %s against %s (%+.1f%%); p50 at c=1 %s against %s\n",
				sc.name, l.label, 100*cost, lim.rps, gw.rps, 100*l.target, met(cost < l.target),
				fmtUS(lim.cpu), fmtUS(gw.cpu), 100*(float64(lim.cpu)/float64(gw.cpu)-1), fmtMS(lim.oneP50), fmtMS(gw.oneP50))
		}
	}
	return b.String()
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func orNone(s string) string {
	if s == "" {
		return "nginx not run"
	}
	return s
}
