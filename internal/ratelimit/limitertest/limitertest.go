// Package limitertest is the conformance suite every ratelimit.Limiter
// passes: exact request limits under concurrency, token budgets with at most
// one request's slack, window and calendar resets on an injected clock, and
// reconciliation.
package limitertest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/ratelimit"
)

// Factory returns a fresh, empty limiter that reads the time from clock.
// Limiters from separate calls must not share counters (use a fresh key
// prefix on a shared server).
type Factory func(t *testing.T, clock func() time.Time) ratelimit.Limiter

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// Run runs the suite against the limiters that newLimiter returns.
func Run(t *testing.T, newLimiter Factory) {
	cases := []struct {
		name string
		fn   func(t *testing.T, l ratelimit.Limiter, c *Clock)
	}{
		{"ConcurrentRequestsExact", concurrentRequestsExact},
		{"ConcurrentTokensWithinSlack", concurrentTokensWithinSlack},
		{"RefusalReservesNothing", refusalReservesNothing},
		{"MinuteWindowResets", minuteWindowResets},
		{"DayQuotaResets", dayQuotaResets},
		{"MonthQuotaResetsJan31ToFeb1", func(t *testing.T, l ratelimit.Limiter, c *Clock) {
			monthQuotaResets(t, l, c, date(2026, 1, 31, 23, 59, 59), date(2026, 2, 1, 0, 0, 0))
		}},
		{"MonthQuotaResetsDecToJan", func(t *testing.T, l ratelimit.Limiter, c *Clock) {
			monthQuotaResets(t, l, c, date(2026, 12, 31, 23, 59, 59), date(2027, 1, 1, 0, 0, 0))
		}},
		{"ReconcileDown", reconcileDown},
		{"ReconcileUp", reconcileUp},
		{"ReconcileAfterDisconnect", reconcileAfterDisconnect},
		{"ReconcileAfterWindowEnds", reconcileAfterWindowEnds},
		{"IndependentPrincipals", independentPrincipals},
		{"Unlimited", unlimited},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClock(date(2026, 3, 10, 12, 30, 20))
			tc.fn(t, newLimiter(t, c.Now), c)
		})
	}
}

func date(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

// reserve calls Reserve and fails the test on an error.
func reserve(t *testing.T, l ratelimit.Limiter, key string, lim ratelimit.Limits, tokens int64) ratelimit.Decision {
	t.Helper()
	d, err := l.Reserve(context.Background(), key, lim, ratelimit.Cost{Requests: 1, Tokens: tokens})
	if err != nil {
		t.Fatalf("Reserve(%s): %v", key, err)
	}
	return d
}

func reconcile(t *testing.T, l ratelimit.Limiter, d ratelimit.Decision, actual int64) {
	t.Helper()
	if err := l.Reconcile(context.Background(), d.Reservation, actual); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
}

// concurrently runs n reservations at once and returns the allowed ones.
func concurrently(t *testing.T, l ratelimit.Limiter, n int, key string, lim ratelimit.Limits, tokens int64) (allowed int64, refusals []ratelimit.Decision) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		ok    atomic.Int64
		start = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			d, err := l.Reserve(context.Background(), key, lim, ratelimit.Cost{Requests: 1, Tokens: tokens})
			if err != nil {
				t.Errorf("Reserve: %v", err)
				return
			}
			if d.Allowed {
				ok.Add(1)
				return
			}
			mu.Lock()
			refusals = append(refusals, d)
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return ok.Load(), refusals
}

func concurrentRequestsExact(t *testing.T, l ratelimit.Limiter, c *Clock) {
	lim := ratelimit.Limits{RequestsPerMinute: 50}
	allowed, refusals := concurrently(t, l, 200, "alice", lim, 10)
	if allowed != 50 || len(refusals) != 150 {
		t.Fatalf("200 concurrent requests against 50/min: %d allowed, %d refused; want 50 and 150", allowed, len(refusals))
	}
	d := refusals[0]
	if d.Reason != ratelimit.RateLimited || d.Limit != ratelimit.RequestsPerMinute || d.HTTPStatus() != 429 {
		t.Errorf("refusal = %v %q status %d; want RateLimited requests_per_minute 429", d.Reason, d.Limit, d.HTTPStatus())
	}
	// The clock shows 12:30:20: the minute window has room again at 12:31.
	if d.RetryAfter != 40*time.Second || !d.Reset.Equal(date(2026, 3, 10, 12, 31, 0)) {
		t.Errorf("RetryAfter %v Reset %v; want 40s and 12:31:00", d.RetryAfter, d.Reset)
	}
	if d.RemainingRequests != 0 || d.LimitRequests != 50 {
		t.Errorf("remaining requests %d of %d; want 0 of 50", d.RemainingRequests, d.LimitRequests)
	}
}

func concurrentTokensWithinSlack(t *testing.T, l ratelimit.Limiter, c *Clock) {
	// Admitted while the used tokens are under 1000: 0, 300, 600, 900, then
	// 1200 is used and the rest are refused.
	lim := ratelimit.Limits{TokensPerMinute: 1000}
	allowed, refusals := concurrently(t, l, 100, "bob", lim, 300)
	if allowed*300 > 1000+300 || allowed != 4 {
		t.Fatalf("100 concurrent 300-token requests against 1000 tokens/min: %d allowed (%d tokens); want 4 (budget plus at most one estimate)", allowed, allowed*300)
	}
	d := refusals[0]
	if d.Limit != ratelimit.TokensPerMinute || d.Reason != ratelimit.RateLimited || d.RemainingTokens != 0 {
		t.Errorf("refusal = %q %v remaining %d; want tokens_per_minute RateLimited 0", d.Limit, d.Reason, d.RemainingTokens)
	}
}

func refusalReservesNothing(t *testing.T, l ratelimit.Limiter, c *Clock) {
	lim := ratelimit.Limits{RequestsPerMinute: 2, TokensPerMinute: 100}
	first := reserve(t, l, "carol", lim, 100)
	if !first.Allowed || first.RemainingRequests != 1 || first.RemainingTokens != 0 {
		t.Fatalf("first = %+v; want allowed with 1 request and 0 tokens left", first)
	}
	if d := reserve(t, l, "carol", lim, 10); d.Allowed || d.Limit != ratelimit.TokensPerMinute {
		t.Fatalf("second = allowed %v limit %q; want refused by tokens_per_minute", d.Allowed, d.Limit)
	}
	reconcile(t, l, first, 0) // the upstream refused: nothing was used
	// Had the refused request taken a request slot, this one would be over.
	d := reserve(t, l, "carol", lim, 10)
	if !d.Allowed || d.RemainingRequests != 0 || d.RemainingTokens != 90 {
		t.Fatalf("third = allowed %v, %d requests and %d tokens left; want allowed, 0 and 90", d.Allowed, d.RemainingRequests, d.RemainingTokens)
	}
}

func minuteWindowResets(t *testing.T, l ratelimit.Limiter, c *Clock) {
	lim := ratelimit.Limits{RequestsPerMinute: 3, TokensPerMinute: 1000}
	for range 3 {
		reserve(t, l, "dan", lim, 10)
	}
	d := reserve(t, l, "dan", lim, 10)
	if d.Allowed {
		t.Fatal("fourth request in the minute allowed")
	}
	c.Add(d.RetryAfter - time.Second)
	if d := reserve(t, l, "dan", lim, 10); d.Allowed {
		t.Fatal("allowed one second before Retry-After")
	}
	c.Add(time.Second)
	d = reserve(t, l, "dan", lim, 10)
	if !d.Allowed || d.RemainingRequests != 2 || d.RemainingTokens != 990 {
		t.Fatalf("after the reset: allowed %v, %d requests and %d tokens left; want true, 2, 990", d.Allowed, d.RemainingRequests, d.RemainingTokens)
	}
}

func dayQuotaResets(t *testing.T, l ratelimit.Limiter, c *Clock) {
	lim := ratelimit.Limits{RequestsPerMinute: 100, TokensPerDay: 1000}
	c.Set(date(2026, 3, 10, 23, 59, 30))
	reserve(t, l, "erin", lim, 1000)
	d := reserve(t, l, "erin", lim, 1)
	if d.Allowed || d.Reason != ratelimit.QuotaSpent || d.Limit != ratelimit.TokensPerDay || d.HTTPStatus() != 403 {
		t.Fatalf("over the day quota: %+v; want refused, QuotaSpent tokens_per_day 403", d)
	}
	if want := date(2026, 3, 11, 0, 0, 0); !d.Reset.Equal(want) {
		t.Errorf("Reset = %v, want %v", d.Reset, want)
	}
	if msg := d.Message(); msg != "quota tokens_per_day of 1000 tokens is used up; it resets at 2026-03-11T00:00:00Z" {
		t.Errorf("Message = %q", msg)
	}
	c.Set(date(2026, 3, 11, 0, 0, 0))
	if d := reserve(t, l, "erin", lim, 1); !d.Allowed {
		t.Fatalf("after midnight: refused by %s", d.Limit)
	}
}

func monthQuotaResets(t *testing.T, l ratelimit.Limiter, c *Clock, before, after time.Time) {
	lim := ratelimit.Limits{TokensPerDay: 10000, TokensPerMonth: 500}
	c.Set(before.AddDate(0, 0, -3)) // earlier in the month, another day
	reserve(t, l, "frank", lim, 400)
	c.Set(before)
	reserve(t, l, "frank", lim, 200)
	d := reserve(t, l, "frank", lim, 1)
	if d.Allowed || d.Reason != ratelimit.QuotaSpent || d.Limit != ratelimit.TokensPerMonth || !d.Reset.Equal(after) {
		t.Fatalf("over the month quota on %v: allowed %v %v %q reset %v; want refused QuotaSpent tokens_per_month reset %v",
			before, d.Allowed, d.Reason, d.Limit, d.Reset, after)
	}
	if d.RetryAfter != after.Sub(before) {
		t.Errorf("RetryAfter = %v, want %v", d.RetryAfter, after.Sub(before))
	}
	c.Set(after)
	if d := reserve(t, l, "frank", lim, 1); !d.Allowed {
		t.Fatalf("on %v: refused by %s", after, d.Limit)
	}
}

func reconcileDown(t *testing.T, l ratelimit.Limiter, c *Clock) {
	lim := ratelimit.Limits{TokensPerMinute: 1000, TokensPerDay: 1500}
	d := reserve(t, l, "gina", lim, 900)
	reconcile(t, l, d, 100)
	d = reserve(t, l, "gina", lim, 50)
	if !d.Allowed || d.RemainingTokens != 850 {
		t.Fatalf("after reconciling 900 down to 100: allowed %v, %d tokens left; want true, 850", d.Allowed, d.RemainingTokens)
	}
	// The day saw 150 tokens: 1350 more fit before the quota refuses.
	c.Add(time.Minute)
	reserve(t, l, "gina", lim, 1349)
	c.Add(time.Minute)
	if d := reserve(t, l, "gina", lim, 1); !d.Allowed {
		t.Fatalf("day quota at 1499 of 1500 refused by %s", d.Limit)
	}
	if d := reserve(t, l, "gina", lim, 1); d.Allowed || d.Limit != ratelimit.TokensPerDay {
		t.Fatalf("day quota at 1500 of 1500: allowed %v limit %q; want refused by tokens_per_day", d.Allowed, d.Limit)
	}
}

func reconcileUp(t *testing.T, l ratelimit.Limiter, c *Clock) {
	lim := ratelimit.Limits{TokensPerMinute: 1000}
	d := reserve(t, l, "hank", lim, 100)
	reconcile(t, l, d, 1000)
	if d := reserve(t, l, "hank", lim, 1); d.Allowed {
		t.Fatal("allowed after reconciling up to the whole budget")
	}
}

func reconcileAfterDisconnect(t *testing.T, l ratelimit.Limiter, c *Clock) {
	lim := ratelimit.Limits{TokensPerMinute: 10000, TokensPerDay: 1000}
	d := reserve(t, l, "ivy", lim, 800)
	// The client went away mid-stream after 300 tokens: the gateway
	// reconciles on a context cut loose from the request's.
	reqCtx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Reconcile(context.WithoutCancel(reqCtx), d.Reservation, 300); err != nil {
		t.Fatalf("Reconcile after disconnect: %v", err)
	}
	d = reserve(t, l, "ivy", lim, 699)
	if !d.Allowed || d.RemainingTokens != 10000-999 {
		t.Fatalf("after the partial count: allowed %v, %d minute tokens left; want true, 9001", d.Allowed, d.RemainingTokens)
	}
	if d := reserve(t, l, "ivy", lim, 1); !d.Allowed {
		t.Fatalf("day at 999 of 1000 refused by %s", d.Limit)
	}
	if d := reserve(t, l, "ivy", lim, 1); d.Allowed {
		t.Fatal("day at 1000 of 1000 allowed")
	}
}

func reconcileAfterWindowEnds(t *testing.T, l ratelimit.Limiter, c *Clock) {
	// A long stream ends in the next minute: its extra tokens count against
	// the day but are not charged to the new minute.
	lim := ratelimit.Limits{TokensPerMinute: 1000, TokensPerDay: 5000}
	d := reserve(t, l, "jack", lim, 100)
	c.Add(time.Minute)
	reserve(t, l, "jack", lim, 1) // the new minute has begun for this key
	reconcile(t, l, d, 3000)
	d = reserve(t, l, "jack", lim, 999)
	if !d.Allowed || d.RemainingTokens != 0 {
		t.Fatalf("new minute after a late reconcile: allowed %v, %d tokens left; want true, 0", d.Allowed, d.RemainingTokens)
	}
	c.Add(time.Minute)
	reserve(t, l, "jack", lim, 999) // day now 4999
	c.Add(time.Minute)
	if d := reserve(t, l, "jack", lim, 1); !d.Allowed {
		t.Fatalf("day at 4999 of 5000 refused by %s", d.Limit)
	}
	if d := reserve(t, l, "jack", lim, 1); d.Allowed || d.Limit != ratelimit.TokensPerDay {
		t.Fatalf("day at 5000: allowed %v limit %q; want refused by tokens_per_day", d.Allowed, d.Limit)
	}
}

func independentPrincipals(t *testing.T, l ratelimit.Limiter, c *Clock) {
	lim := ratelimit.Limits{RequestsPerMinute: 5, TokensPerDay: 100}
	for range 5 {
		reserve(t, l, "kate", lim, 20)
	}
	if d := reserve(t, l, "kate", lim, 1); d.Allowed {
		t.Fatal("kate's sixth request allowed")
	}
	d := reserve(t, l, "key:build-bot", lim, 99)
	if !d.Allowed || d.RemainingRequests != 4 {
		t.Fatalf("another principal: allowed %v, %d requests left; want true, 4", d.Allowed, d.RemainingRequests)
	}
}

func unlimited(t *testing.T, l ratelimit.Limiter, c *Clock) {
	for range 100 {
		d := reserve(t, l, "leo", ratelimit.Limits{}, 1_000_000)
		if !d.Allowed || d.RemainingRequests != -1 || d.RemainingTokens != -1 {
			t.Fatalf("no limits: %+v; want allowed with remaining -1", d)
		}
		reconcile(t, l, d, 5)
	}
}
