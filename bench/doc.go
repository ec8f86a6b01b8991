// Package bench holds Tapline's benchmarks: the in-process gateway
// benchmark that `go test -bench` profiles (gateway_bench_test.go), and,
// in its subdirectories, the harness that measures the gateway against a
// direct call, a bare httputil.ReverseProxy and nginx (see BENCHMARKS.md).
package bench
