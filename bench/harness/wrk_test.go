package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// wrkOutput is wrk 4.1.0's output with --latency and the harness's script.
const wrkOutput = `Running 10s test @ http://127.0.0.1:41234/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.93ms    9.12ms 125.40ms   91.23%
    Req/Sec     2.31k   311.52     3.02k    71.00%
  Latency Distribution
     50%    6.16ms
     75%    7.90ms
     90%   12.01ms
     99%  125.40ms
  46012 requests in 10.01s, 93.11MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:   4596.60
Transfer/sec:      9.30MB
TAPLINE_WRK requests=46012 duration_us=10010000 p50_us=6161 p99_us=125404 status=3 connect=0 read=2 write=0 timeout=1
`

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want wrkResult
	}{
		{
			name: "summary line wins",
			out:  wrkOutput,
			want: wrkResult{Requests: 46012, Elapsed: 10010 * time.Millisecond, RPS: 46012 / 10.01,
				P50: 6161 * time.Microsecond, P99: 125404 * time.Microsecond, Non2xx: 3,
				Socket: socketErrors{Read: 2, Timeout: 1}},
		},
		{
			name: "text only",
			out:  wrkOutput[:strings.Index(wrkOutput, "TAPLINE_WRK")],
			want: wrkResult{Requests: 46012, Elapsed: 10010 * time.Millisecond, RPS: 4596.60,
				P50: 6160 * time.Microsecond, P99: 125400 * time.Microsecond, Non2xx: 3,
				Socket: socketErrors{Read: 2, Timeout: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if err != nil {
				t.Fatal(err)
			}
			got.Raw = ""
			approx := cmp.Comparer(func(a, b float64) bool { return a-b < 0.01 && b-a < 0.01 })
			within := cmp.Comparer(func(a, b time.Duration) bool { d := a - b; return d < time.Microsecond && -d < time.Microsecond })
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(wrkResult{}), approx, within); d != "" {
				t.Errorf("parseWrk (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseWrkRejectsOutputWithoutLatency(t *testing.T) {
	out := "  10 requests in 1.00s, 1.00KB read\nRequests/sec: 10.00\n"
	if _, err := parseWrk(out); err == nil {
		t.Error("parseWrk accepted output without a latency distribution")
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want procStat
	}{
		{"plain", "4242 (nginx) S 4241 4242 4242 0 -1 4194624 1 0 0 0 731 912 0 0 20 0 1 0 100 0 0",
			procStat{ppid: 4241, utime: 731, stime: 912}},
		{"name with spaces and parens", "77 (my (odd) proc) R 1 77 77 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 100 0 0",
			procStat{ppid: 1, utime: 5, stime: 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.stat)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := parseStat("12 (short) S 1 2"); err == nil {
		t.Error("parseStat accepted a truncated stat")
	}
}

func TestWrkDuration(t *testing.T) {
	for in, want := range map[[2]string]time.Duration{
		{"757.00", "us"}: 757 * time.Microsecond,
		{"1.10", "ms"}:   1100 * time.Microsecond,
		{"2.00", "s"}:    2 * time.Second,
		{"1.50", "m"}:    90 * time.Second,
	} {
		if got := wrkDuration(in[0], in[1]); got != want {
			t.Errorf("wrkDuration(%q, %q) = %v, want %v", in[0], in[1], got, want)
		}
	}
}
