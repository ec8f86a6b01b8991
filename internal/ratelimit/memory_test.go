package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/ratelimit/limitertest"
)

func TestMemory(t *testing.T) {
	limitertest.Run(t, func(t *testing.T, clock func() time.Time) ratelimit.Limiter {
		return ratelimit.NewMemory(ratelimit.MemoryConfig{Clock: clock})
	})
}

func TestMemoryOneShard(t *testing.T) {
	// Every key in one shard: the suite still holds (no cross-key effects).
	limitertest.Run(t, func(t *testing.T, clock func() time.Time) ratelimit.Limiter {
		return ratelimit.NewMemory(ratelimit.MemoryConfig{Clock: clock, Shards: 1})
	})
}

func TestMemoryDropsIdleKeys(t *testing.T) {
	c := limitertest.NewClock(time.Date(2026, 3, 10, 12, 30, 0, 0, time.UTC))
	m := ratelimit.NewMemory(ratelimit.MemoryConfig{Clock: c.Now, Shards: 1})
	ctx := context.Background()
	minuteOnly := ratelimit.Limits{RequestsPerMinute: 10}
	withDay := ratelimit.Limits{RequestsPerMinute: 10, TokensPerDay: 100}
	for _, k := range []string{"a", "b", "c"} {
		m.Reserve(ctx, k, minuteOnly, ratelimit.Cost{Requests: 1})
	}
	m.Reserve(ctx, "quota", withDay, ratelimit.Cost{Requests: 1, Tokens: 1})
	if n := m.Len(); n != 4 {
		t.Fatalf("Len = %d, want 4", n)
	}
	c.Add(2 * time.Minute) // the minutes have ended; the day has not
	m.Reserve(ctx, "d", minuteOnly, ratelimit.Cost{Requests: 1})
	if n := m.Len(); n != 2 {
		t.Fatalf("after the minute: Len = %d, want 2 (quota and d)", n)
	}
	c.Add(24 * time.Hour)
	m.Reserve(ctx, "e", minuteOnly, ratelimit.Cost{Requests: 1})
	if n := m.Len(); n != 1 {
		t.Fatalf("after the day: Len = %d, want 1 (e)", n)
	}
}

func TestMemoryUnlimitedKeepsNoState(t *testing.T) {
	m := ratelimit.NewMemory(ratelimit.MemoryConfig{})
	for range 10 {
		m.Reserve(context.Background(), "x", ratelimit.Limits{}, ratelimit.Cost{Requests: 1, Tokens: 5})
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("Len = %d, want 0", n)
	}
}

func TestMemoryLocation(t *testing.T) {
	// Quotas reset at midnight of the configured zone, not UTC's.
	loc := time.FixedZone("UTC+2", 2*3600)
	c := limitertest.NewClock(time.Date(2026, 3, 10, 21, 59, 0, 0, time.UTC)) // 23:59 local
	m := ratelimit.NewMemory(ratelimit.MemoryConfig{Clock: c.Now, Location: loc})
	lim := ratelimit.Limits{TokensPerDay: 10}
	ctx := context.Background()
	m.Reserve(ctx, "k", lim, ratelimit.Cost{Requests: 1, Tokens: 10})
	d, _ := m.Reserve(ctx, "k", lim, ratelimit.Cost{Requests: 1, Tokens: 1})
	if want := time.Date(2026, 3, 11, 0, 0, 0, 0, loc); d.Allowed || !d.Reset.Equal(want) {
		t.Fatalf("allowed %v reset %v; want refused until %v", d.Allowed, d.Reset, want)
	}
	c.Add(time.Minute)
	if d, _ := m.Reserve(ctx, "k", lim, ratelimit.Cost{Requests: 1, Tokens: 1}); !d.Allowed {
		t.Fatal("refused after local midnight")
	}
}
