// Command harness benchmarks the gateway against a direct call, a bare
// httputil.ReverseProxy and nginx, in one run on one machine, and reports
// throughput, latency, each proxy's CPU time per request and the latency a
// proxy adds at one connection. Run it from the module root:
//
//	go run ./bench/harness
//
// It needs wrk and nginx (Debian: apt-get install -y wrk nginx-light) and
// installs nothing itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// options are the harness's flags.
type options struct {
	warmup     time.Duration // wrk run before each measurement, not counted
	duration   time.Duration // throughput run
	oneConn    time.Duration // one-connection run for added latency
	conns      int           // connections of the throughput run
	threads    int           // wrk threads of the throughput run
	tokens     int           // completion tokens per response
	rounds     int           // the whole matrix is run this many times; medians are reported
	scenarios  string        // comma-separated subset of scenario names
	targets    string        // comma-separated subset of target names
	resultsDir string        // "" means bench/results under the module root
	keep       bool          // keep the temp dir (binaries, configs, logs, store)
}

func main() {
	var o options
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each measurement (not counted)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "throughput run per target and scenario")
	flag.DurationVar(&o.oneConn, "c1-duration", 5*time.Second, "one-connection run per target and scenario")
	flag.IntVar(&o.conns, "c", 32, "connections of the throughput run")
	flag.IntVar(&o.threads, "t", 2, "wrk threads of the throughput run")
	flag.IntVar(&o.tokens, "tokens", 20, "completion tokens per response")
	flag.IntVar(&o.rounds, "rounds", 1, "run the whole matrix this many times and report medians")
	flag.StringVar(&o.scenarios, "scenarios", "chat,chat-stream", "scenarios to run (comma-separated): chat, chat-stream, chat-stream-usage")
	flag.StringVar(&o.targets, "targets", "direct,bare,nginx,gateway,gateway-standard", "targets to run (comma-separated; also gateway-limits and gateway-redis: strict audit with every limit on, in memory or in a redis-server)")
	flag.StringVar(&o.resultsDir, "results", "", "directory for the timestamped report (default bench/results)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir with binaries, configs, logs and the store")
	flag.Parse()
	if flag.NArg() > 0 || o.rounds < 1 || o.conns < 1 || o.threads < 1 || o.threads > o.conns {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, o)
	var miss *missingToolsError
	switch {
	case errors.As(err, &miss):
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(3)
	case err != nil:
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}
