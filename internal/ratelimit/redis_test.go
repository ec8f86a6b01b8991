package ratelimit_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/ratelimit/limitertest"
	"github.com/tapline/tapline/internal/testenv"
)

// newClient connects to addr and closes the client in t.Cleanup. Retries are
// off so that a dead server fails a call at once.
func newClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

func newRedis(t testing.TB, c redis.Scripter, prefix string, clock func() time.Time) *ratelimit.Redis {
	r, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: c, Prefix: prefix, Clock: clock, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRedis(t *testing.T) {
	addr, _ := testenv.StartRedis(t)
	c := newClient(t, addr)
	limitertest.Run(t, func(t *testing.T, clock func() time.Time) ratelimit.Limiter {
		return newRedis(t, c, "test:"+t.Name()+":", clock)
	})
}

func TestRedisKeysExpire(t *testing.T) {
	addr, _ := testenv.StartRedis(t)
	c := newClient(t, addr)
	now := time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC)
	r := newRedis(t, c, "exp:", func() time.Time { return now })
	lim := ratelimit.Limits{RequestsPerMinute: 5, TokensPerDay: 100, TokensPerMonth: 1000}
	if _, err := r.Reserve(context.Background(), "k", lim, ratelimit.Cost{Requests: 1, Tokens: 1}); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(context.Background(), "exp:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("keys = %v, want one per window", keys)
	}
	// Each key lives until its window's end plus a minute.
	want := map[string]time.Duration{
		"m": 40*time.Second + time.Minute,
		"d": 11*time.Hour + 29*time.Minute + 40*time.Second + time.Minute,
		"M": (21*24+11)*time.Hour + 29*time.Minute + 40*time.Second + time.Minute,
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "exp:{k}:") {
			t.Errorf("key %q lacks the prefix and hash tag", k)
		}
		kind := strings.Split(k, ":")[2]
		got, err := c.PTTL(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if w := want[kind]; got > w || got < w-5*time.Second {
			t.Errorf("PTTL(%s) = %v, want about %v", k, got, w)
		}
	}
}

// TestRedisReplicasShareLimits runs two limiters on two connections (two
// gateway replicas) against one Redis: together they admit the limit exactly.
func TestRedisReplicasShareLimits(t *testing.T) {
	addr, _ := testenv.StartRedis(t)
	clock := limitertest.NewClock(time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC))
	replicas := []ratelimit.Limiter{
		newRedis(t, newClient(t, addr), "shared:", clock.Now),
		newRedis(t, newClient(t, addr), "shared:", clock.Now),
	}
	lim := ratelimit.Limits{RequestsPerMinute: 50, TokensPerDay: 1_000_000}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed = map[int]int{}
	)
	for i := range 200 {
		wg.Go(func() {
			d, err := replicas[i%2].Reserve(context.Background(), "alice", lim, ratelimit.Cost{Requests: 1, Tokens: 10})
			if err != nil {
				t.Error(err)
				return
			}
			if d.Allowed {
				mu.Lock()
				allowed[i%2]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if total := allowed[0] + allowed[1]; total != 50 {
		t.Fatalf("two replicas admitted %d (%v), want 50 together", total, allowed)
	}
}

// TestRedisKilledMidLoad kills Redis while requests run, then starts it
// again on the same port: fail_closed refuses with Unavailable, local falls
// back to this node's counters, and shared limits resume on recovery.
func TestRedisKilledMidLoad(t *testing.T) {
	for _, policy := range []ratelimit.OnError{ratelimit.FailClosed, ratelimit.FailLocal} {
		t.Run(string(policy), func(t *testing.T) {
			srv := testenv.StartRedisServer(t, "")
			clock := limitertest.NewClock(time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC))
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			client := newClient(t, srv.Addr)
			primary, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: client, Clock: clock.Now, Timeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			f, err := ratelimit.NewFallback(ratelimit.FallbackConfig{
				Primary: primary, Local: ratelimit.NewMemory(ratelimit.MemoryConfig{Clock: clock.Now}),
				Policy: policy, ProbeEvery: time.Second, Clock: clock.Now,
			}, log)
			if err != nil {
				t.Fatal(err)
			}
			lim := ratelimit.Limits{RequestsPerMinute: 20}
			reserve := func() ratelimit.Decision {
				t.Helper()
				d, err := f.Reserve(context.Background(), "alice", lim, ratelimit.Cost{Requests: 1, Tokens: 1})
				if err != nil {
					t.Fatalf("Reserve: %v", err)
				}
				return d
			}
			for range 5 {
				if d := reserve(); !d.Allowed {
					t.Fatalf("before the kill: refused by %s", d.Limit)
				}
			}

			killUnderLoad(t, f, srv)
			var outage []ratelimit.Decision
			for range 30 {
				outage = append(outage, reserve())
			}
			allowed := 0
			for _, d := range outage {
				switch {
				case d.Allowed:
					allowed++
				case policy == ratelimit.FailClosed && d.Reason != ratelimit.Unavailable:
					t.Fatalf("fail_closed refusal reason %v, want Unavailable (503)", d.Reason)
				}
			}
			want := 0
			if policy == ratelimit.FailLocal {
				want = 20 // a fresh local window, the node's own limit
			}
			if allowed != want {
				t.Fatalf("during the outage %d of 30 allowed, want %d", allowed, want)
			}
			// Only the calls in flight at the kill reached the dead Redis; no
			// probe before ProbeEvery.
			st := f.Stats()
			if !st.Degraded || st.Outages != 1 || st.Errors < 1 || st.Errors > loadWorkers {
				t.Fatalf("stats during the outage = %+v; want degraded, 1 outage, 1 to %d errors", st, loadWorkers)
			}

			testenv.StartRedisServer(t, srv.Addr) // empty: the shared counters start again
			clock.Add(time.Second)                // time for a probe
			d := reserve()
			if !d.Allowed || d.RemainingRequests != 19 {
				t.Fatalf("after recovery: allowed %v, %d left; want the shared window (19 left)", d.Allowed, d.RemainingRequests)
			}
			if st := f.Stats(); st.Degraded || st.Recoveries != 1 {
				t.Fatalf("stats after recovery = %+v", st)
			}
			out := logs.String()
			if strings.Count(out, "unreachable") != 1 || strings.Count(out, "recovered") != 1 ||
				!strings.Contains(out, "policy="+string(policy)) {
				t.Fatalf("want one outage line naming the policy and one recovery line, got:\n%s", out)
			}
		})
	}
}

const loadWorkers = 4

// killUnderLoad kills Redis while loadWorkers goroutines reserve through f,
// and checks that no caller saw an error and each decision follows the
// policy: allowed, or (fail_closed) refused as Unavailable.
func killUnderLoad(t *testing.T, f *ratelimit.Fallback, srv *testenv.RedisServer) {
	t.Helper()
	var (
		wg      sync.WaitGroup
		n       atomic.Int64
		started = make(chan struct{})
	)
	lim := ratelimit.Limits{RequestsPerMinute: 1_000_000}
	for range loadWorkers {
		wg.Go(func() {
			for range 100 {
				d, err := f.Reserve(context.Background(), "load", lim, ratelimit.Cost{Requests: 1, Tokens: 1})
				if err != nil {
					t.Errorf("Reserve under load: %v", err)
					return
				}
				if !d.Allowed && d.Reason != ratelimit.Unavailable {
					t.Errorf("refusal under load: %v %s", d.Reason, d.Limit)
				}
				if n.Add(1) == 50 {
					close(started)
				}
			}
		})
	}
	<-started
	srv.Kill()
	wg.Wait()
}

func TestNewRedisNeedsClient(t *testing.T) {
	if _, err := ratelimit.NewRedis(ratelimit.RedisConfig{}); err == nil {
		t.Fatal("NewRedis without a client: no error")
	}
}

// Concurrent reconciles are each applied exactly once.
func TestRedisConcurrentReconcilesAllApplied(t *testing.T) {
	addr, _ := testenv.StartRedis(t)
	clock := limitertest.NewClock(time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC))
	r := newRedis(t, newClient(t, addr), "batch:", clock.Now)
	lim := ratelimit.Limits{TokensPerMinute: 1_000_000}
	var res []ratelimit.Reservation
	for range 300 {
		d, err := r.Reserve(t.Context(), "bob", lim, ratelimit.Cost{Requests: 1, Tokens: 10})
		if err != nil || !d.Allowed {
			t.Fatalf("reserve: %+v, %v", d, err)
		}
		res = append(res, d.Reservation)
	}
	var wg sync.WaitGroup
	for _, rv := range res {
		wg.Go(func() {
			if err := r.Reconcile(t.Context(), rv, 3); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	d, err := r.Reserve(t.Context(), "bob", lim, ratelimit.Cost{Requests: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(1_000_000 - 300*3); d.RemainingTokens != want {
		t.Errorf("remaining tokens %d after 300 reconciles to 3, want %d", d.RemainingTokens, want)
	}
}
