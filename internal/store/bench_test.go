package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tapline/tapline/internal/record"
)

// benchCallers is how many goroutines per GOMAXPROCS RunParallel uses: a
// gateway has many requests in flight, which is what group commit is for.
const benchCallers = 32

// benchRecord is a gateway_request record of about 1 KB of JSON.
func benchRecord(b *testing.B, id, state string) record.Record {
	b.Helper()
	g := record.GatewayRequest{
		RequestID: id, Start: t0, DurationMS: 812.5, ClientIP: "203.0.113.7",
		Principal: record.Principal{Kind: record.PrincipalKey, KeyName: "bench"},
		Method:    "POST", Path: "/openai/deployments/gpt-4o/chat/completions",
		Operation: record.OpChatCompletions, APIVersion: "2024-10-21", Deployment: "gpt-4o",
		ModelRequested: "gpt-4o", ModelReturned: "gpt-4o-2024-11-20", Backend: "eastus", Status: 200,
		Usage:  &record.Usage{PromptTokens: 120, CompletionTokens: 80, TotalTokens: 200, Source: record.UsageReported},
		Prompt: &record.Content{Text: strings.Repeat("p", 400)}, Response: &record.Content{Text: strings.Repeat("r", 100)},
		State: state,
	}
	data, err := json.Marshal(g)
	if err != nil {
		b.Fatal(err)
	}
	return record.Record{ID: id, Kind: record.KindGatewayRequest, Version: 1, Time: t0, Data: data}
}

func reportRate(b *testing.B, s *Store, records int64) {
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	st, err := s.Stats(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Appended)/float64(st.Commits), "requests/commit")
	}
}

// benchConfigs are the store configurations each benchmark runs under: a
// size bound costs a savepoint per request.
var benchConfigs = []struct {
	name string
	cfg  Config
}{
	{"unbounded", Config{}},
	{"max_bytes", Config{MaxBytes: 1 << 40}},
}

func BenchmarkAppendParallel(b *testing.B) {
	for _, bc := range benchConfigs {
		b.Run(bc.name, func(b *testing.B) { benchAppend(b, bc.cfg) })
	}
}

func BenchmarkBeginFinishParallel(b *testing.B) {
	for _, bc := range benchConfigs {
		b.Run(bc.name, func(b *testing.B) { benchBeginFinish(b, bc.cfg) })
	}
}

// benchAppend appends one 1 KB record per call from many goroutines.
func benchAppend(b *testing.B, cfg Config) {
	s := openStore(b, cfg)
	// One payload for all: the benchmark measures the store, not json.Marshal.
	r := benchRecord(b, "x", record.StateCompleted)
	b.SetBytes(int64(len(r.Data)))
	var next atomic.Int64
	b.SetParallelism(benchCallers)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := r
		for pb.Next() {
			r.ID = fmt.Sprint("a", next.Add(1))
			if _, err := s.Append(b.Context(), []record.Record{r}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, s, int64(b.N))
}

// benchBeginFinish runs the two phases of strict audit per record.
func benchBeginFinish(b *testing.B, cfg Config) {
	s := openStore(b, cfg)
	started := benchRecord(b, "x", record.StateStarted)
	done := benchRecord(b, "x", record.StateCompleted)
	b.SetBytes(int64(len(done.Data)))
	var next atomic.Int64
	b.SetParallelism(benchCallers)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		started, done := started, done
		for pb.Next() {
			started.ID = fmt.Sprint("bf", next.Add(1))
			done.ID = started.ID
			if err := s.Begin(b.Context(), started); err != nil {
				b.Error(err)
				return
			}
			if err := s.Finish(b.Context(), done); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, s, int64(b.N))
}

// BenchmarkRollUp sums gateway records of about 1 KB into usage_hourly,
// as `tapline serve` does every ten seconds; ns/op is per record.
func BenchmarkRollUp(b *testing.B) {
	s, err := Open(b.Context(), Config{Path: b.TempDir() + "/rollup.db"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batch = 1000
	seq := 0
	b.ReportAllocs()
	for b.Loop() {
		if seq%batch == 0 {
			b.StopTimer()
			recs := make([]record.Record, batch)
			for i := range recs {
				recs[i] = benchRecord(b, fmt.Sprintf("r%09d", seq+i), record.StateCompleted)
			}
			if _, err := s.Append(b.Context(), recs); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := s.RollUp(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
		seq++
	}
}
