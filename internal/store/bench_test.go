package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/testenv"
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

// BenchmarkGatewayCall is a strict-audit gateway call's share of the store,
// shaped as `tapline serve` makes it: a Begin with the captured prompt,
// then a FinishAsync nobody waits for, each record with a fresh UUIDv7 id
// and the size of the harness's chat record (about 2.1 KB). cpu-µs/op is
// the whole process's CPU per call (callers, writer, checkpoints, GC), the
// figure the gateway's CPU target is about.
func BenchmarkGatewayCall(b *testing.B) {
	s := openStore(b, Config{})
	prompt := `{"messages":[{"role":"system","content":"You are a concise assistant."},` +
		`{"role":"user","content":"Write one sentence about the sea."}],"temperature":0.7}`
	response := `{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},` +
		strings.Repeat(`"x":{"filtered":false,"severity":"safe"},`, 16) +
		`"finish_reason":"stop","index":0,"message":{"content":"One sentence.","role":"assistant"}}],` +
		`"usage":{"completion_tokens":20,"prompt_tokens":24,"total_tokens":44}}`
	g := record.GatewayRequest{
		Start: t0, ClientIP: "127.0.0.1", UserAgent: "Go-http-client/1.1",
		Principal: record.Principal{Kind: record.PrincipalKey, KeyName: "bench"},
		Method:    "POST", Path: "/openai/deployments/gpt-4o/chat/completions",
		Operation: record.OpChatCompletions, APIVersion: "2024-10-21", Deployment: "gpt-4o",
		Backend: "emulator", RequestBytes: int64(len(prompt)),
		Prompt: &record.Content{Text: prompt, Bytes: int64(len(prompt))},
	}
	var next atomic.Int64
	cpu0 := testenv.ProcessCPU()
	b.SetParallelism(benchCallers)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := g
		for pb.Next() {
			id := fmt.Sprintf("01a2074c-0000-7ca5-84f5-%012x", next.Add(1))
			g.RequestID, g.State = id, record.StateStarted
			started := gwRec(b, id, t0, g)
			if err := s.Begin(b.Context(), started); err != nil {
				b.Error(err)
				return
			}
			done := g
			done.State, done.Status, done.UpstreamStatus, done.DurationMS = record.StateCompleted, 200, 200, 4.087
			done.ModelReturned, done.ResponseBytes = "gpt-4o-2024-08-06", int64(len(response))
			done.Usage = &record.Usage{PromptTokens: 24, CompletionTokens: 20, TotalTokens: 44, Source: record.UsageReported}
			done.Response = &record.Content{Text: response, Bytes: int64(len(response))}
			if err := s.FinishAsync(b.Context(), gwRec(b, id, t0, done), nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	testenv.ReportCPUPerOp(b, cpu0)
}
