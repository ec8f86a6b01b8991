package ratelimit_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/ratelimit/limitertest"
)

// flaky is a Limiter that fails while down, counting its calls.
type flaky struct {
	ratelimit.Limiter
	down       atomic.Bool
	reserves   atomic.Int64
	reconciles atomic.Int64
}

func (f *flaky) Reserve(ctx context.Context, key string, lim ratelimit.Limits, cost ratelimit.Cost) (ratelimit.Decision, error) {
	f.reserves.Add(1)
	if f.down.Load() {
		return ratelimit.Decision{}, errors.New("dial tcp 127.0.0.1:6379: connection refused")
	}
	return f.Limiter.Reserve(ctx, key, lim, cost)
}

func (f *flaky) Reconcile(ctx context.Context, res ratelimit.Reservation, actual int64) error {
	f.reconciles.Add(1)
	if f.down.Load() {
		return errors.New("connection refused")
	}
	return f.Limiter.Reconcile(ctx, res, actual)
}

func TestFallbackProbesWithoutHammering(t *testing.T) {
	clock := limitertest.NewClock(time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC))
	primary := &flaky{Limiter: ratelimit.NewMemory(ratelimit.MemoryConfig{Clock: clock.Now})}
	local := ratelimit.NewMemory(ratelimit.MemoryConfig{Clock: clock.Now})
	var logs bytes.Buffer
	f, err := ratelimit.NewFallback(ratelimit.FallbackConfig{
		Primary: primary, Local: local, Policy: ratelimit.FailLocal, ProbeEvery: 4 * time.Second, Clock: clock.Now,
	}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lim := ratelimit.Limits{TokensPerDay: 1000}
	cost := ratelimit.Cost{Requests: 1, Tokens: 100}

	shared, _ := f.Reserve(ctx, "k", lim, cost) // reserved in the primary
	primary.down.Store(true)
	if err := f.Reconcile(ctx, shared.Reservation, 50); err == nil {
		t.Fatal("Reconcile on a failing primary: no error")
	}
	var fromLocal ratelimit.Decision
	for i := range 100 {
		d, err := f.Reserve(ctx, "k", lim, cost)
		if err != nil {
			t.Fatalf("Reserve during the outage: %v", err)
		}
		if i == 0 {
			fromLocal = d
		}
		if i%10 == 9 {
			clock.Add(time.Second) // 10 s in all: probes at 4 s and 8 s
		}
	}
	if n := primary.reserves.Load(); n != 1+1+2 {
		t.Fatalf("primary saw %d reserves, want 4 (one before, the failure, two probes)", n)
	}
	if st := f.Stats(); !st.Degraded || st.Outages != 1 || st.Errors != 4 {
		t.Fatalf("stats = %+v; want degraded, 1 outage, 4 errors (reconcile, failure, 2 probes)", st)
	}

	primary.down.Store(false)
	// A reservation made locally is reconciled locally, even after recovery.
	clock.Add(5 * time.Second)
	if d, _ := f.Reserve(ctx, "k", lim, cost); d.Reservation == (ratelimit.Reservation{}) {
		t.Fatal("no reservation after recovery")
	}
	before := primary.reconciles.Load()
	if err := f.Reconcile(ctx, fromLocal.Reservation, 0); err != nil {
		t.Fatal(err)
	}
	if primary.reconciles.Load() != before {
		t.Fatal("a local reservation was reconciled in the primary")
	}
	if st := f.Stats(); st.Degraded || st.Recoveries != 1 {
		t.Fatalf("stats after recovery = %+v", st)
	}
	if got := strings.Count(logs.String(), "\n"); got != 2 {
		t.Fatalf("logged %d lines, want 2 (outage, recovery):\n%s", got, logs.String())
	}
}

func TestFallbackCallerGoneIsNoOutage(t *testing.T) {
	primary := &flaky{Limiter: ratelimit.NewMemory(ratelimit.MemoryConfig{})}
	primary.down.Store(true)
	f, _ := ratelimit.NewFallback(ratelimit.FallbackConfig{Primary: primary}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Reserve(ctx, "k", ratelimit.Limits{RequestsPerMinute: 1}, ratelimit.Cost{Requests: 1}); err == nil {
		t.Fatal("Reserve with an ended context: no error")
	}
	if st := f.Stats(); st.Degraded || st.Outages != 0 {
		t.Fatalf("a caller that went away counted as an outage: %+v", st)
	}
}

func TestNewFallbackValidates(t *testing.T) {
	m := ratelimit.NewMemory(ratelimit.MemoryConfig{})
	tests := []struct {
		name string
		cfg  ratelimit.FallbackConfig
		want string
	}{
		{"no primary", ratelimit.FallbackConfig{}, "no primary"},
		{"local without a local limiter", ratelimit.FallbackConfig{Primary: m, Policy: ratelimit.FailLocal}, "needs a local limiter"},
		{"unknown policy", ratelimit.FallbackConfig{Primary: m, Policy: "open"}, `unknown policy "open"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ratelimit.NewFallback(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
