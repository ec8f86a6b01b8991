// Command collector benchmarks `tapline collect --once`: it builds tapline
// and bench/armemulator into a temp dir, and for each size starts the
// emulator with a generated tenant (its own process), writes a config that
// collects every management group from it into a fresh store, runs collect
// as a child process and reports events stored (checked against the
// tenant's event count with store.OpenReadOnly and Stats), wall time,
// events/s, collect's peak RSS (rusage Maxrss), CPU and bytes written to
// disk per event (rusage Oublock: the WAL and the checkpoints' copies), and
// the emulator's CPU share. It prints a markdown table and writes it to bench/results/.
//
//	go run ./bench/collector                       # 1000 groups x 250 and x 1000 events
//	go run ./bench/collector -sizes 1000x250,1000x1000,2000x1000
//
// Run it from the repository root. It exits 1 if a process fails or the
// store's record count differs from the tenant's event count, 0 otherwise
// (whether or not the targets are met).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tapline/tapline/internal/store"
)

const tenantID = "9f3c1b2a-7d4e-4c6f-8a1b-2c3d4e5f6a7b" // bench/armemulator's TenantID

type size struct{ groups, perScope int }

func (s size) events() int { return (s.groups + 1) * s.perScope } // every group plus the root

type result struct {
	size
	stored     int64
	wall       time.Duration
	collectCPU time.Duration
	maxRSS     int64 // bytes
	written    int64 // bytes collect wrote to files (rusage Oublock), WAL and checkpoints included
	emuCPU     time.Duration
	emuMaxRSS  int64
	summary    string // collect's TOTAL line
	ok         bool
	note       string
}

func main() {
	sizesFlag := flag.String("sizes", "1000x250,1000x1000", "comma-separated GROUPSxEVENTS_PER_SCOPE runs (events = (groups+1) x events per scope)")
	levels := flag.Int("levels", 4, "hierarchy depth below the root")
	pageSize := flag.Int("page-size", 200, "events per activity-log page")
	concurrency := flag.Int("concurrency", 0, "collector.concurrency; 0 leaves the default")
	results := flag.String("results", "bench/results", "directory for the report")
	keep := flag.Bool("keep", false, "keep the temp dir (binaries, configs, logs, stores)")
	flag.Parse()
	sizes, err := parseSizes(*sizesFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "collector:", err)
		os.Exit(2)
	}
	code, err := run(sizes, *levels, *pageSize, *concurrency, *results, *keep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "collector:", err)
	}
	os.Exit(code)
}

func parseSizes(s string) ([]size, error) {
	var out []size
	for _, f := range strings.Split(s, ",") {
		g, e, ok := strings.Cut(strings.TrimSpace(f), "x")
		gi, err1 := strconv.Atoi(g)
		ei, err2 := strconv.Atoi(e)
		if !ok || err1 != nil || err2 != nil || gi < 0 || ei <= 0 {
			return nil, fmt.Errorf("-sizes: %q is not GROUPSxEVENTS", f)
		}
		out = append(out, size{gi, ei})
	}
	return out, nil
}

func run(sizes []size, levels, pageSize, concurrency int, resultsDir string, keep bool) (int, error) {
	dir, err := os.MkdirTemp("", "tapline-collect-bench-")
	if err != nil {
		return 1, err
	}
	if keep {
		fmt.Fprintln(os.Stderr, "keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	tapline, emu := filepath.Join(dir, "tapline"), filepath.Join(dir, "armemulator")
	for bin, pkg := range map[string]string{tapline: "./cmd/tapline", emu: "./bench/armemulator"} {
		fmt.Fprintf(os.Stderr, "building %s\n", pkg)
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return 1, fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	var rs []result
	failed := false
	for i, sz := range sizes {
		fmt.Fprintf(os.Stderr, "run %d: %d groups x %d events = %d events\n", i+1, sz.groups, sz.perScope, sz.events())
		r, err := runOne(filepath.Join(dir, fmt.Sprintf("run%d", i+1)), tapline, emu, sz, levels, pageSize, concurrency)
		if err != nil {
			fmt.Fprintf(os.Stderr, "run %d: %v\n", i+1, err)
			failed = true
		}
		if !r.ok {
			failed = true
		}
		rs = append(rs, r)
	}
	rep := report(rs, levels, pageSize, concurrency)
	fmt.Print(rep)
	if resultsDir != "" {
		if err := os.MkdirAll(resultsDir, 0o755); err == nil {
			p := filepath.Join(resultsDir, "collector-"+time.Now().UTC().Format("20060102-150405")+".md")
			if err := os.WriteFile(p, []byte(rep), 0o644); err == nil {
				fmt.Fprintln(os.Stderr, "report written to", p)
			}
		}
	}
	if failed {
		return 1, nil
	}
	return 0, nil
}

func runOne(dir, tapline, emuBin string, sz size, levels, pageSize, concurrency int) (result, error) {
	r := result{size: sz}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	emuLog, err := os.Create(filepath.Join(dir, "armemulator.log"))
	if err != nil {
		return r, err
	}
	defer emuLog.Close()
	emu := exec.Command(emuBin, "-addr", "127.0.0.1:0", "-groups", strconv.Itoa(sz.groups), "-levels", strconv.Itoa(levels),
		"-events", strconv.Itoa(sz.perScope), "-page-size", strconv.Itoa(pageSize))
	emu.Stderr = emuLog
	out, err := emu.StdoutPipe()
	if err != nil {
		return r, err
	}
	if err := emu.Start(); err != nil {
		return r, err
	}
	stopped := false
	stopEmu := func() {
		if stopped {
			return
		}
		stopped = true
		_ = emu.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { emu.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = emu.Process.Kill()
			<-done
		}
	}
	defer stopEmu()
	urlc := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		line, _ := br.ReadString('\n')
		urlc <- strings.TrimSpace(line)
		io.Copy(io.Discard, br)
	}()
	var url string
	select {
	case url = <-urlc:
	case <-time.After(30 * time.Second):
		return r, errors.New("the emulator printed no URL in 30s")
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		return r, fmt.Errorf("the emulator printed %q, not a loopback URL", url)
	}

	dbPath := filepath.Join(dir, "tapline.db")
	conc := ""
	if concurrency > 0 {
		conc = fmt.Sprintf("  concurrency: %d\n", concurrency)
	}
	cfg := fmt.Sprintf(`store:
  path: %s
azure:
  tenant_id: %s
  arm_endpoint: %s
  credential: token
  access_token: bench-dummy-token
collector:
  backfill: 7d
%s`, dbPath, tenantID, url, conc)
	cfgPath := filepath.Join(dir, "tapline.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return r, err
	}

	emuStart := cpuOf(emu.Process.Pid)
	var stdout strings.Builder
	stderrF, err := os.Create(filepath.Join(dir, "collect.stderr"))
	if err != nil {
		return r, err
	}
	defer stderrF.Close()
	col := exec.Command(tapline, "collect", "--config", cfgPath, "--once")
	col.Stdout, col.Stderr = &stdout, stderrF
	start := time.Now()
	runErr := col.Run()
	r.wall = time.Since(start)
	r.emuCPU = cpuOf(emu.Process.Pid) - emuStart
	r.emuMaxRSS = hwmOf(emu.Process.Pid)
	os.WriteFile(filepath.Join(dir, "collect.stdout"), []byte(stdout.String()), 0o644)
	if ps := col.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			r.maxRSS = ru.Maxrss * 1024 // Linux reports kilobytes
			r.written = ru.Oublock * 512
		}
		r.collectCPU = ps.UserTime() + ps.SystemTime()
	}
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.HasPrefix(l, "TOTAL") {
			r.summary = strings.Join(strings.Fields(l), " ")
		}
	}
	stopEmu()
	if runErr != nil {
		tail, _ := os.ReadFile(stderrF.Name())
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		r.note = "collect failed: " + runErr.Error()
		return r, fmt.Errorf("collect: %w\nstdout:\n%s\nstderr (tail):\n%s", runErr, stdout.String(), tail)
	}

	st, err := store.OpenReadOnly(context.Background(), dbPath, slog.New(slog.DiscardHandler))
	if err != nil {
		return r, fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	stats, err := st.Stats(context.Background())
	if err != nil {
		return r, fmt.Errorf("store stats: %w", err)
	}
	r.stored = stats.Records
	r.ok = r.stored == int64(sz.events())
	if !r.ok {
		r.note = fmt.Sprintf("store holds %d records, tenant has %d events", r.stored, sz.events())
	}
	return r, nil
}

// cpuOf returns pid's user+system CPU time from /proc (0 if unreadable).
func cpuOf(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime is field 14, f[0] is field 3
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+stt) * time.Second / clkTck
}

// hwmOf returns pid's VmHWM in bytes (0 if unreadable).
func hwmOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func report(rs []result, levels, pageSize, concurrency int) string {
	var b strings.Builder
	host, _ := os.Hostname()
	conc := "default (4)"
	if concurrency > 0 {
		conc = strconv.Itoa(concurrency)
	}
	fmt.Fprintf(&b, "# Activity Log collector benchmark\n\n%s, %s/%s, %d CPUs, %s, host %s\n\n", time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), host)
	fmt.Fprintf(&b, "`tapline collect --once`, levels %d, page size %d, concurrency %s, fresh store per run\n\n", levels, pageSize, conc)
	b.WriteString("| groups | events/scope | events | stored | wall | events/s | collect peak RSS | collect CPU | written per event | emulator CPU share | emulator peak RSS |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		eps, share := 0.0, 0.0
		if r.wall > 0 {
			eps = float64(r.stored) / r.wall.Seconds()
			share = r.emuCPU.Seconds() / r.wall.Seconds() * 100
		}
		stored := strconv.FormatInt(r.stored, 10)
		if !r.ok {
			stored += " ✗"
		}
		perEvent := 0.0
		if r.stored > 0 {
			perEvent = float64(r.written) / float64(r.stored) / 1024
		}
		fmt.Fprintf(&b, "| %d | %d | %d | %s | %.1fs | %.0f | %s | %.1fs | %.1f KiB | %.0f%% of a core | %s |\n",
			r.groups, r.perScope, r.events(), stored, r.wall.Seconds(), eps, mib(r.maxRSS), r.collectCPU.Seconds(), perEvent, share, mib(r.emuMaxRSS))
	}
	b.WriteString("\n")
	for _, r := range rs {
		if r.summary != "" {
			fmt.Fprintf(&b, "- %dx%d: `%s`\n", r.groups, r.perScope, r.summary)
		}
		if r.note != "" {
			fmt.Fprintf(&b, "- %dx%d: **%s**\n", r.groups, r.perScope, r.note)
		}
	}
	return b.String()
}
