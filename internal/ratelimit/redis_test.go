package ratelimit_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
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

func newRedis(t testing.TB, c ratelimit.RedisClient, prefix string, clock func() time.Time) *ratelimit.Redis {
	r, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: c, Prefix: prefix, Clock: clock, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
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

// roundTrips counts the commands and pipelines a client sends: each is one
// round trip to Redis.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// minuteTokens reads the tokens counted in the minute window of key.
func minuteTokens(t *testing.T, c *redis.Client, prefix, key string, now time.Time) int64 {
	t.Helper()
	k := prefix + "{" + key + "}:m:" + strconv.FormatInt(now.Truncate(time.Minute).UnixMilli(), 10)
	n, err := c.HGet(t.Context(), k, "t").Int64()
	if err != nil {
		t.Fatalf("HGET %s t: %v", k, err)
	}
	return n
}

// A call costs one round trip: each Reconcile rides with the next Reserve,
// and every Reserve sees the corrections queued before it.
func TestRedisReconcileRidesWithNextReserve(t *testing.T) {
	addr, _ := testenv.StartRedis(t)
	c := newClient(t, addr)
	var trips roundTrips
	c.AddHook(&trips)
	clock := limitertest.NewClock(time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC))
	r := newRedis(t, c, "ride:", clock.Now)
	lim := ratelimit.Limits{TokensPerMinute: 1_000_000, TokensPerDay: 10_000_000}
	const calls = 200
	for i := range calls {
		d, err := r.Reserve(t.Context(), "erin", lim, ratelimit.Cost{Requests: 1, Tokens: 100})
		if err != nil || !d.Allowed {
			t.Fatalf("call %d: %+v, %v", i, d, err)
		}
		// Every earlier call reserved 100 and was corrected to 7.
		if want := int64(1_000_000 - 7*i - 100); d.RemainingTokens != want {
			t.Fatalf("call %d: %d tokens left, want %d", i, d.RemainingTokens, want)
		}
		if err := r.Reconcile(t.Context(), d.Reservation, 7); err != nil {
			t.Fatal(err)
		}
	}
	// The scripts' loads (EVALSHA, EVAL, SCRIPT LOAD) and the flusher's
	// occasional pipeline come on top; two round trips a call would be 400.
	if n := trips.n.Load(); n > calls+calls/10 {
		t.Errorf("%d round trips for %d calls, want about one a call", n, calls)
	}
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := minuteTokens(t, c, "ride:", "erin", clock.Now()); got != 7*calls {
		t.Errorf("minute window holds %d tokens, want %d", got, 7*calls)
	}
}

// A correction no Reserve carries reaches Redis on its own, and Close sends
// what is still queued.
func TestRedisCorrectionsSentWithoutReserve(t *testing.T) {
	addr, _ := testenv.StartRedis(t)
	c := newClient(t, addr)
	clock := limitertest.NewClock(time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC))
	lim := ratelimit.Limits{TokensPerMinute: 1000}
	for _, close := range []bool{false, true} {
		prefix := fmt.Sprintf("alone-%v:", close)
		r := newRedis(t, c, prefix, clock.Now)
		d, err := r.Reserve(t.Context(), "finn", lim, ratelimit.Cost{Requests: 1, Tokens: 100})
		if err != nil || !d.Allowed {
			t.Fatalf("%+v, %v", d, err)
		}
		if err := r.Reconcile(t.Context(), d.Reservation, 30); err != nil {
			t.Fatal(err)
		}
		if close {
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if got := minuteTokens(t, c, prefix, "finn", clock.Now()); got != 30 {
				t.Errorf("after Close: %d tokens, want 30", got)
			}
			continue
		}
		deadline := time.Now().Add(5 * time.Second)
		for minuteTokens(t, c, prefix, "finn", clock.Now()) != 30 {
			if time.Now().After(deadline) {
				t.Fatal("the correction never reached Redis without a Reserve")
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// Redis losing its scripts (a restart, SCRIPT FLUSH) loses no correction
// and applies none twice.
func TestRedisCorrectionsSurviveScriptFlush(t *testing.T) {
	addr, _ := testenv.StartRedis(t)
	c := newClient(t, addr)
	clock := limitertest.NewClock(time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC))
	r := newRedis(t, c, "flush:", clock.Now)
	lim := ratelimit.Limits{TokensPerMinute: 1_000_000}
	var want int64
	for i := range 20 {
		d, err := r.Reserve(t.Context(), "gus", lim, ratelimit.Cost{Requests: 1, Tokens: 50})
		if err != nil || !d.Allowed {
			t.Fatalf("call %d: %+v, %v", i, d, err)
		}
		if err := r.Reconcile(t.Context(), d.Reservation, int64(i)); err != nil {
			t.Fatal(err)
		}
		want += int64(i)
		if i%5 == 4 {
			if err := c.ScriptFlush(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := minuteTokens(t, c, "flush:", "gus", clock.Now()); got != want {
		t.Errorf("minute window holds %d tokens, want %d", got, want)
	}
}

// Reservations made at the same moment share round trips, and each gets
// its own outcome: exactly rpm of them are admitted.
func TestRedisConcurrentReservesShareRoundTrips(t *testing.T) {
	addr, _ := testenv.StartRedis(t)
	c := newClient(t, addr)
	clock := limitertest.NewClock(time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC))
	r := newRedis(t, c, "share:", clock.Now)
	r.Reserve(t.Context(), "warm", ratelimit.Limits{RequestsPerMinute: 1}, ratelimit.Cost{Requests: 1}) // loads the script
	var trips roundTrips
	c.AddHook(&trips)
	const callers, each, rpm = 64, 10, 500
	lim := ratelimit.Limits{RequestsPerMinute: rpm}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range callers {
		wg.Go(func() {
			<-start
			for range each {
				d, err := r.Reserve(t.Context(), "hana", lim, ratelimit.Cost{Requests: 1})
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if n := admitted.Load(); n != rpm {
		t.Errorf("%d of %d reservations admitted under %d a minute", n, callers*each, rpm)
	}
	if n := trips.n.Load(); n >= callers*each {
		t.Errorf("%d round trips for %d concurrent reservations: none shared", n, callers*each)
	}
	t.Logf("%d round trips for %d reservations", trips.n.Load(), callers*each)
}
