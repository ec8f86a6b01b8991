package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	Requests int64         // completed requests
	Elapsed  time.Duration // as wrk measured it
	RPS      float64
	P50, P99 time.Duration
	Non2xx   int64 // responses with a status outside 2xx and 3xx
	Socket   socketErrors
	Raw      string // wrk's output, for the report's appendix
}

type socketErrors struct{ Connect, Read, Write, Timeout int64 }

func (s socketErrors) total() int64 { return s.Connect + s.Read + s.Write + s.Timeout }

// wrkScript is a Lua script that POSTs body with headers and, when wrk is
// done, prints one machine-readable line with exact (microsecond) latency
// percentiles and error counts; --latency's text rounds to two decimals.
func wrkScript(body string, headers map[string]string) string {
	var b strings.Builder
	b.WriteString("wrk.method = \"POST\"\n")
	fmt.Fprintf(&b, "wrk.body = [==[%s]==]\n", body)
	for k, v := range headers {
		fmt.Fprintf(&b, "wrk.headers[%q] = %q\n", k, v)
	}
	b.WriteString(`done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("TAPLINE_WRK requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f status=%.0f connect=%.0f read=%.0f write=%.0f timeout=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
`)
	return b.String()
}

// runWrk runs wrk against url with script for d at conns connections.
func runWrk(ctx context.Context, wrk, script, url string, threads, conns int, d time.Duration) (wrkResult, error) {
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%.0fs", max(d.Seconds(), 1)), "--timeout", "10s", "--latency", "-s", script, url}
	cmd := exec.CommandContext(ctx, wrk, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	res, err := parseWrk(string(out))
	if err != nil {
		return res, fmt.Errorf("parse wrk output: %w\n%s", err, out)
	}
	return res, nil
}

var (
	reRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m)\b`)
	reRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	reNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s*(\d+)`)
	reSocket   = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	rePct      = regexp.MustCompile(`(?m)^\s*(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	reSummary  = regexp.MustCompile(`(?m)^TAPLINE_WRK (.*)$`)
)

// parseWrk reads wrk's --latency text; when the script's summary line is
// there, its exact percentiles and counts win over the rounded text.
func parseWrk(out string) (wrkResult, error) {
	r := wrkResult{Raw: out}
	m := reRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no %q line", "N requests in T")
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.Elapsed = wrkDuration(m[2], m[3])
	if m := reRPS.FindStringSubmatch(out); m != nil {
		r.RPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSocket.FindStringSubmatch(out); m != nil {
		n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
		r.Socket = socketErrors{n(m[1]), n(m[2]), n(m[3]), n(m[4])}
	}
	for _, m := range rePct.FindAllStringSubmatch(out, -1) {
		if m[1] == "50" {
			r.P50 = wrkDuration(m[2], m[3])
		} else {
			r.P99 = wrkDuration(m[2], m[3])
		}
	}
	if m := reSummary.FindStringSubmatch(out); m != nil {
		kv := map[string]int64{}
		for _, f := range strings.Fields(m[1]) {
			k, v, _ := strings.Cut(f, "=")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return r, fmt.Errorf("summary field %s: %w", f, err)
			}
			kv[k] = n
		}
		r.Requests = kv["requests"]
		r.Elapsed = time.Duration(kv["duration_us"]) * time.Microsecond
		r.P50 = time.Duration(kv["p50_us"]) * time.Microsecond
		r.P99 = time.Duration(kv["p99_us"]) * time.Microsecond
		r.Non2xx = kv["status"]
		r.Socket = socketErrors{kv["connect"], kv["read"], kv["write"], kv["timeout"]}
		if r.Elapsed > 0 {
			r.RPS = float64(r.Requests) / r.Elapsed.Seconds()
		}
	}
	if r.P50 == 0 || r.P99 == 0 {
		return r, fmt.Errorf("no latency distribution (was --latency given?)")
	}
	return r, nil
}

// wrkDuration converts wrk's "1.23ms" style (value and unit) to a Duration.
func wrkDuration(v, unit string) time.Duration {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0
	}
	mult := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9}[unit]
	return time.Duration(f * mult)
}

// writeScript writes a wrk Lua script to path.
func writeScript(path, body string, headers map[string]string) error {
	if err := os.WriteFile(path, []byte(wrkScript(body, headers)), 0o644); err != nil {
		return fmt.Errorf("write wrk script: %w", err)
	}
	return nil
}
