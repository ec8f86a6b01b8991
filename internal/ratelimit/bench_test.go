package ratelimit_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/testenv"
)

// benchLimits has every window, so each op touches all of them.
var benchLimits = ratelimit.Limits{
	RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 40, TokensPerDay: 1 << 50, TokensPerMonth: 1 << 55,
}

// benchAdmit measures one admission plus its reconciliation, over 1000
// principals, from parallel goroutines as the gateway calls it.
func benchAdmit(b *testing.B, l ratelimit.Limiter) {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "principal-" + strconv.Itoa(i)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			key := keys[next.Add(1)%int64(len(keys))]
			d, err := l.Reserve(ctx, key, benchLimits, ratelimit.Cost{Requests: 1, Tokens: 500})
			if err != nil || !d.Allowed {
				b.Fatalf("Reserve: %v allowed %v", err, d.Allowed)
			}
			if err := l.Reconcile(ctx, d.Reservation, 420); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMemory(b *testing.B) {
	benchAdmit(b, ratelimit.NewMemory(ratelimit.MemoryConfig{}))
}

func BenchmarkRedis(b *testing.B) {
	addr, _ := testenv.StartRedis(b)
	benchAdmit(b, newRedis(b, newClient(b, addr), "bench:", nil))
}

func BenchmarkFallbackOverRedis(b *testing.B) {
	addr, _ := testenv.StartRedis(b)
	f, err := ratelimit.NewFallback(ratelimit.FallbackConfig{
		Primary: newRedis(b, newClient(b, addr), "bench:", nil),
		Local:   ratelimit.NewMemory(ratelimit.MemoryConfig{}),
		Policy:  ratelimit.FailLocal,
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchAdmit(b, f)
}
