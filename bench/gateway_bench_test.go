package bench

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/auth"
	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/gateway"
	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/store"
	"github.com/tapline/tapline/internal/testenv"
)

// The profile of the gateway's hot path:
//
//	go test -run XXX -bench Gateway -cpuprofile cpu.out ./bench/
//	go tool pprof -top -nodecount=25 cpu.out
//
// The caller, the emulator and the gateway share the process, so the
// profile holds all three; -focus 'gateway.\(\*Gateway\).ServeHTTP' keeps the
// gateway's share. BenchmarkBareProxy is the same calls through a bare
// httputil.ReverseProxy, the floor to compare with.

const (
	chatPath    = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
	upstreamKey = "bench-upstream-key-0123456789"
	chatBody    = `{"messages":[{"role":"system","content":"You are a concise assistant."},` +
		`{"role":"user","content":"Write one sentence about the sea."}],"temperature":0.7`
)

// scenarios are the harness's: a short chat, non-streamed; streamed without
// include_usage (the gateway injects it and strips the usage chunk); and
// streamed with include_usage asked by the caller (passed through).
var scenarios = []struct {
	name   string
	body   string
	stream bool
}{
	{"chat", chatBody + "}", false},
	{"chat-stream", chatBody + `,"stream":true}`, true},
	{"chat-stream-usage", chatBody + `,"stream":true,"stream_options":{"include_usage":true}}`, true},
}

// upstream serves the emulator as the harness runs it: gpt-4o, no latency,
// tokens as fast as possible, 20 completion tokens.
func upstream(b *testing.B) *httptest.Server {
	b.Helper()
	aoai := emulator.NewAOAI(emulator.AOAIConfig{
		Deployments:      map[string]string{"gpt-4o": "gpt-4o-2024-08-06"},
		APIKeys:          []string{upstreamKey},
		CompletionTokens: 20,
	}, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(aoai)
	b.Cleanup(srv.Close)
	return srv
}

// newGateway serves a gateway as `tapline serve` builds it: the given
// audit mode, full capture, the configuration's defaults, a real store in
// b.TempDir(). It returns the gateway's URL, a key it accepts and its store.
func newGateway(b *testing.B, upstreamURL string, audit string) (string, string, *store.Store) {
	b.Helper()
	return newGatewayWith(b, upstreamURL, audit, nil, ratelimit.Rules{})
}

// newGatewayWith is newGateway with a limiter and its rules (nil: no limits).
func newGatewayWith(b *testing.B, upstreamURL string, audit string, lim ratelimit.Limiter, rules ratelimit.Rules) (string, string, *store.Store) {
	b.Helper()
	key, hash, err := auth.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	cfg := &config.Config{
		Store: config.Store{Path: filepath.Join(b.TempDir(), "bench.db")},
		Gateway: &config.Gateway{
			Listen:  "127.0.0.1:0",
			Audit:   audit,
			Capture: config.CaptureFull,
			Auth:    config.GatewayAuth{Keys: []config.Key{{Name: "bench", Hash: hash}}},
			Backends: []config.Backend{{Name: "emulator", URL: upstreamURL, Auth: config.AuthAPIKey,
				APIKey: upstreamKey}},
		},
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(context.Background(), store.Config{Path: cfg.Store.Path, MaxBytes: int64(cfg.Store.MaxBytes),
		WhenFull: cfg.Store.WhenFull, Retention: cfg.Store.Retention.D()}, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	keys, err := auth.NewKeys(cfg.Gateway.Auth.Keys)
	if err != nil {
		b.Fatal(err)
	}
	if lim != nil {
		cfg.Gateway.Limits = &config.Limits{MaxOutputTokens: 4096}
	}
	gw, err := gateway.New(gateway.Options{Config: cfg.Gateway, Journal: st, Auth: auth.NewCallers(keys, nil),
		Limiter: lim, Rules: rules}, log)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	b.Cleanup(srv.Close) // before the store closes: cleanups run last first
	return srv.URL, key, st
}

// newBareProxy serves the harness's floor, bench.BareProxy.
func newBareProxy(b *testing.B, upstreamURL string) string {
	b.Helper()
	u, err := url.Parse(upstreamURL)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(BareProxy(u, upstreamKey))
	b.Cleanup(srv.Close)
	return srv.URL
}

// run makes chat calls from parallel callers (32 per GOMAXPROCS, like the
// harness's 32 connections on 2 cores) and fails on any non-200 answer.
func run(b *testing.B, base, key, body string, stream bool) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024}}
	b.Cleanup(client.CloseIdleConnections)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest(http.MethodPost, base+chatPath, strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("api-key", key)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || (stream && !strings.HasSuffix(string(got), "data: [DONE]\n\n")) {
				b.Errorf("status %d, err %v, body %.200s", resp.StatusCode, err, got)
				return
			}
		}
	})
}

// BenchmarkGateway runs each scenario under strict audit (the default)
// and, as BenchmarkGateway/SCENARIO/standard, under standard audit:
//
//	go test -run XXX -bench 'Gateway$' ./bench/
func BenchmarkGateway(b *testing.B) {
	for _, sc := range scenarios {
		b.Run(sc.name, func(b *testing.B) { benchGateway(b, sc.body, sc.stream, config.AuditStrict) })
		b.Run(sc.name+"/standard", func(b *testing.B) { benchGateway(b, sc.body, sc.stream, config.AuditStandard) })
	}
}

func benchGateway(b *testing.B, body string, stream bool, audit string) {
	base, key, st := newGateway(b, upstream(b).URL, audit)
	cpu0 := testenv.ProcessCPU()
	run(b, base, key, body, stream)
	b.StopTimer()
	testenv.ReportCPUPerOp(b, cpu0)
	// Strict audit writes each call twice (Begin, Finish); group commit
	// shares transactions between concurrent calls.
	if stats, err := st.Stats(context.Background()); err == nil && stats.Commits > 0 {
		b.ReportMetric(float64(stats.Commits)/float64(b.N), "commits/op")
	}
}

func BenchmarkBareProxy(b *testing.B) {
	for _, sc := range scenarios {
		b.Run(sc.name, func(b *testing.B) {
			base := newBareProxy(b, upstream(b).URL)
			cpu0 := testenv.ProcessCPU()
			run(b, base, upstreamKey, sc.body, sc.stream)
			b.StopTimer()
			testenv.ReportCPUPerOp(b, cpu0)
		})
	}
}

// BenchmarkGatewayLimits is BenchmarkGateway with the per-identity limits
// off, in memory, and in a real redis-server (skipped without one), all in
// one run so that the ratios compare like with like:
//
//	go test -run XXX -bench GatewayLimits ./bench/
//
// The limits are generous (nothing is refused) but every one is on, so a
// call pays for the prompt's token count, a Reserve and a Reconcile.
func BenchmarkGatewayLimits(b *testing.B) {
	rules := ratelimit.Rules{Default: ratelimit.Limits{RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 50,
		TokensPerDay: 1 << 55, TokensPerMonth: 1 << 60}}
	for _, sc := range scenarios[:2] {
		for _, mode := range []string{"off", "memory", "redis"} {
			b.Run(sc.name+"/limits="+mode, func(b *testing.B) {
				var lim ratelimit.Limiter
				switch mode {
				case "memory":
					lim = ratelimit.NewMemory(ratelimit.MemoryConfig{})
				case "redis":
					srv, err := testenv.LaunchRedis("", b.TempDir())
					if err != nil {
						b.Skipf("no redis-server: %v", err)
					}
					b.Cleanup(srv.Stop)
					l, err := ratelimit.New(ratelimit.Config{Redis: "redis://" + srv.Addr + "/0"}, slog.New(slog.DiscardHandler))
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { l.(io.Closer).Close() })
					lim = l
				}
				base, key, _ := newGatewayWith(b, upstream(b).URL, config.AuditStrict, lim, rules)
				// CPU time per call of this process (caller, emulator and
				// gateway; not redis-server) is steadier than wall time on
				// shared cores: the ratio of two modes is the limits' cost.
				cpu0 := testenv.ProcessCPU()
				run(b, base, key, sc.body, sc.stream)
				b.StopTimer()
				testenv.ReportCPUPerOp(b, cpu0)
			})
		}
	}
}
