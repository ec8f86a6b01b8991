package gateway

import (
	"bufio"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/record"
)

// limitNow is the fixed time of the limiters in these tests: no window
// ends while a test runs.
var limitNow = time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC)

// spyLimiter wraps a limiter and reports what the gateway asked of it.
type spyLimiter struct {
	ratelimit.Limiter
	reserved   chan reserveCall
	reconciled chan reconcileCall
}

type reserveCall struct {
	key  string
	lim  ratelimit.Limits
	cost ratelimit.Cost
}

type reconcileCall struct {
	reserved, actual int64
	ctxErr           error
}

func newSpy(l ratelimit.Limiter) *spyLimiter {
	return &spyLimiter{Limiter: l, reserved: make(chan reserveCall, 100), reconciled: make(chan reconcileCall, 100)}
}

func (s *spyLimiter) Reserve(ctx context.Context, key string, lim ratelimit.Limits, cost ratelimit.Cost) (ratelimit.Decision, error) {
	s.reserved <- reserveCall{key, lim, cost}
	return s.Limiter.Reserve(ctx, key, lim, cost)
}

func (s *spyLimiter) Reconcile(ctx context.Context, res ratelimit.Reservation, actual int64) error {
	s.reconciled <- reconcileCall{res.Tokens(), actual, ctx.Err()}
	return s.Limiter.Reconcile(ctx, res, actual)
}

// nextReconcile waits for the gateway's next Reconcile: it runs just after
// the call's record is queued.
func (s *spyLimiter) nextReconcile(t *testing.T) reconcileCall {
	t.Helper()
	select {
	case c := <-s.reconciled:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not reconcile the reservation")
	}
	return reconcileCall{}
}

func (s *spyLimiter) noMoreReconciles(t *testing.T) {
	t.Helper()
	select {
	case c := <-s.reconciled:
		t.Errorf("an unexpected Reconcile: %+v", c)
	default:
	}
}

// newLimitHarness is a harness whose gateway limits every caller by def,
// with a memory limiter on a fixed clock.
func newLimitHarness(t *testing.T, def ratelimit.Limits, opts ...setup) (*harness, *spyLimiter) {
	t.Helper()
	spy := newSpy(ratelimit.NewMemory(ratelimit.MemoryConfig{Clock: func() time.Time { return limitNow }}))
	h := newHarnessWith(t, func(o *Options) {
		o.Limiter = spy
		o.Rules = ratelimit.Rules{Default: def}
	}, append([]setup{func(c *config.Config, _ *emulator.AOAIConfig) {
		c.Gateway.Limits = &config.Limits{MaxOutputTokens: 1000}
	}}, opts...)...)
	return h, spy
}

const hello = `{"messages":[{"role":"user","content":"hi"}]}`

func TestRateLimitAnswers429WithHeadersAndRecordsIt(t *testing.T) {
	h, spy := newLimitHarness(t, ratelimit.Limits{RequestsPerMinute: 2, TokensPerMinute: 100000})
	for i := range 2 {
		resp, body := h.post(chatPath, hello)
		if resp.StatusCode != 200 {
			t.Fatalf("call %d: %d %s", i, resp.StatusCode, body)
		}
		if got := resp.Header.Get("x-ratelimit-remaining-requests"); got != strconv.Itoa(1-i) {
			t.Errorf("call %d: x-ratelimit-remaining-requests %q, want %d", i, got, 1-i)
		}
		// The caller's budget, not the deployment's: 100000 less the
		// reservations (prompt + max_output_tokens 1000 each) not yet reconciled.
		if tok, _ := strconv.Atoi(resp.Header.Get("x-ratelimit-remaining-tokens")); tok < 97000 || tok >= 100000 ||
			resp.Header.Get("x-ratelimit-limit-requests") != "2" || resp.Header.Get("x-ratelimit-limit-tokens") != "100000" {
			t.Errorf("call %d: headers %v", i, resp.Header)
		}
		spy.nextReconcile(t)
	}
	resp, body := h.post(chatPath, hello)
	e := parseError(t, body)
	if resp.StatusCode != 429 || e.Error.Code != "429" || !strings.Contains(e.Error.Message, "requests_per_minute of 2") {
		t.Fatalf("third call: %d %+v", resp.StatusCode, e)
	}
	// The minute of limitNow ends in 40 seconds.
	if got := resp.Header.Get("Retry-After"); got != "40" {
		t.Errorf("Retry-After %q, want 40", got)
	}
	if resp.Header.Get("x-ratelimit-remaining-requests") != "0" || resp.Header.Get("x-ratelimit-remaining-tokens") == "" {
		t.Errorf("refusal headers %v", resp.Header)
	}
	if n := len(h.aoai.Requests()); n != 2 {
		t.Errorf("the backend received %d calls, want 2: a refused call is not forwarded", n)
	}
	spy.noMoreReconciles(t)

	recs := h.waitRecords(3)
	for i, r := range recs[:2] {
		if r.State != record.StateCompleted || r.Limit == nil || r.Limit.Throttled || r.Limit.Name != ratelimit.RequestsPerMinute ||
			r.Limit.Remaining != int64(1-i) {
			t.Errorf("admitted call %d: state %s limit %+v", i, r.State, r.Limit)
		}
	}
	r := recs[2]
	if r.State != record.StateDenied || r.Status != 429 || r.Principal.KeyName != "tester" || r.Error == nil ||
		r.Error.RetryAfterMS != 40000 || r.UpstreamStatus != 0 {
		t.Errorf("throttled record: %+v error %+v", r, r.Error)
	}
	if d := (record.Limit{Name: ratelimit.RequestsPerMinute, Remaining: 0, Throttled: true}); r.Limit == nil || *r.Limit != d {
		t.Errorf("throttled record's limit %+v, want %+v", r.Limit, d)
	}
	call := <-spy.reserved
	if call.key != "key:tester" || call.cost.Requests != 1 || call.cost.Tokens <= 1000 {
		t.Errorf("reserve %+v: want the principal's id and 1 request of prompt + 1000 tokens", call)
	}
}

func TestQuotaAnswers403NamingTheQuotaAndItsReset(t *testing.T) {
	h, spy := newLimitHarness(t, ratelimit.Limits{TokensPerDay: 20})
	resp, body := h.post(chatPath, hello)
	if resp.StatusCode != 200 {
		t.Fatalf("first call: %d %s", resp.StatusCode, body)
	}
	if rc := spy.nextReconcile(t); rc.actual <= 20 {
		t.Fatalf("the first call used %d tokens; the test needs more than the quota", rc.actual)
	}
	resp, body = h.post(chatPath, hello)
	e := parseError(t, body)
	want := "quota tokens_per_day of 20 tokens is used up; it resets at 2026-03-11T00:00:00Z"
	if resp.StatusCode != 403 || e.Error.Code != "insufficient_quota" || e.Error.Message != want {
		t.Errorf("second call: %d %+v, want 403 %q", resp.StatusCode, e, want)
	}
	if resp.Header.Get("Retry-After") != "" {
		t.Errorf("a spent quota has no Retry-After: %v", resp.Header)
	}
	recs := h.waitRecords(2)
	if r := recs[1]; r.Status != 403 || r.State != record.StateDenied || r.Limit == nil ||
		r.Limit.Name != ratelimit.TokensPerDay || !r.Limit.Throttled || r.Error == nil || r.Error.Message != want {
		t.Errorf("quota record: status %d state %s limit %+v error %+v", r.Status, r.State, r.Limit, r.Error)
	}
	if n := len(h.aoai.Requests()); n != 1 {
		t.Errorf("the backend received %d calls, want 1", n)
	}
}

// downLimiter is a shared limiter that cannot be reached.
type downLimiter struct{}

func (downLimiter) Reserve(context.Context, string, ratelimit.Limits, ratelimit.Cost) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("dial tcp 127.0.0.1:6379: connection refused")
}

func (downLimiter) Reconcile(context.Context, ratelimit.Reservation, int64) error {
	return errors.New("dial tcp 127.0.0.1:6379: connection refused")
}

func TestSharedLimiterDown(t *testing.T) {
	for _, policy := range []ratelimit.OnError{ratelimit.FailClosed, ratelimit.FailLocal} {
		t.Run(string(policy), func(t *testing.T) {
			local := ratelimit.NewMemory(ratelimit.MemoryConfig{Clock: func() time.Time { return limitNow }})
			f, err := ratelimit.NewFallback(ratelimit.FallbackConfig{Primary: downLimiter{}, Local: local, Policy: policy,
				Clock: func() time.Time { return limitNow }}, nil)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarnessWith(t, func(o *Options) {
				o.Limiter = f
				o.Rules = ratelimit.Rules{Default: ratelimit.Limits{RequestsPerMinute: 1}}
			})
			first, body1 := h.post(chatPath, hello)
			second, body2 := h.post(chatPath, hello)
			recs := h.waitRecords(2)
			if policy == ratelimit.FailClosed {
				for i, resp := range []struct {
					status int
					body   []byte
					ra     string
				}{{first.StatusCode, body1, first.Header.Get("Retry-After")}, {second.StatusCode, body2, second.Header.Get("Retry-After")}} {
					e := parseError(t, resp.body)
					if resp.status != 503 || e.Error.Code != "503" || resp.ra == "" {
						t.Errorf("call %d: %d %+v Retry-After %q", i, resp.status, e, resp.ra)
					}
					r := recs[i]
					if r.Status != 503 || r.State != record.StateDenied || r.Limit == nil || r.Limit.Name != limitNameUnavailable || !r.Limit.Throttled {
						t.Errorf("record %d: status %d state %s limit %+v", i, r.Status, r.State, r.Limit)
					}
				}
				if n := len(h.aoai.Requests()); n != 0 {
					t.Errorf("the backend received %d calls with the limiter down and fail_closed", n)
				}
			} else {
				// Local counters: one call a minute on this node.
				if first.StatusCode != 200 || second.StatusCode != 429 {
					t.Errorf("local policy: %d then %d, want 200 then 429 (%s)", first.StatusCode, second.StatusCode, body2)
				}
				if recs[1].Limit == nil || recs[1].Limit.Name != ratelimit.RequestsPerMinute {
					t.Errorf("record: %+v", recs[1].Limit)
				}
			}
			if st := f.Stats(); !st.Degraded || st.Outages != 1 {
				t.Errorf("fallback stats %+v", st)
			}
		})
	}
}

func TestReconcileWithActualUsage(t *testing.T) {
	cases := []struct {
		name, path, body string
		wantOutput       int64 // the output part of the estimate
	}{
		{"json", chatPath, `{"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`, 50},
		{"sse", chatPath, `{"stream":true,"messages":[{"role":"user","content":"hi"}]}`, 1000},
		{"embeddings", "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21",
			`{"input":["quarterly revenue","audit trail"]}`, 0},
		{"responses", "/openai/v1/responses", `{"model":"gpt-4o","input":"Say hello","max_output_tokens":30}`, 30},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, spy := newLimitHarness(t, ratelimit.Limits{TokensPerMinute: 1_000_000})
			resp, body := h.post(c.path, c.body)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			rec := h.only()
			rc := spy.nextReconcile(t)
			res := <-spy.reserved
			if rec.Usage == nil || rec.Usage.Source != record.UsageReported {
				t.Fatalf("usage %+v: the emulator reports usage", rec.Usage)
			}
			if rc.actual != int64(rec.Usage.TotalTokens) || rc.ctxErr != nil {
				t.Errorf("reconciled with %d (ctx %v), want the record's total %d", rc.actual, rc.ctxErr, rec.Usage.TotalTokens)
			}
			prompt := res.cost.Tokens - c.wantOutput
			if rc.reserved != res.cost.Tokens || prompt <= 0 || prompt > 50 {
				t.Errorf("reserved %d = prompt %d + output %d; want the prompt's tokens plus %d", res.cost.Tokens, prompt, c.wantOutput, c.wantOutput)
			}
			spy.noMoreReconciles(t)
		})
	}
}

func TestReconcileAfterClientDisconnect(t *testing.T) {
	h, spy := newLimitHarness(t, ratelimit.Limits{TokensPerMinute: 1_000_000},
		func(_ *config.Config, e *emulator.AOAIConfig) { e.TokensPerSecond, e.CompletionTokens = 200, 400 })
	ctx, cancel := context.WithCancel(context.Background())
	resp := h.openStream(ctx, chatPath, longStream)
	readEvents(t, bufio.NewReader(resp.Body), 6)
	cancel()
	resp.Body.Close()

	rec := h.only()
	rc := spy.nextReconcile(t)
	if rec.State != record.StateInterrupted || rec.Usage == nil || rec.Usage.Source != record.UsageEstimated {
		t.Fatalf("record state %s usage %+v", rec.State, rec.Usage)
	}
	if rc.actual != int64(rec.Usage.TotalTokens) || rc.actual == 0 || rc.ctxErr != nil {
		t.Errorf("reconciled with %d (ctx %v); want what was streamed, %d, on a live context", rc.actual, rc.ctxErr, rec.Usage.TotalTokens)
	}
	if res := <-spy.reserved; rc.reserved != res.cost.Tokens || rc.actual >= rc.reserved {
		t.Errorf("reserved %d (estimate %d), used %d: a cut stream uses less than max_tokens 400", rc.reserved, res.cost.Tokens, rc.actual)
	}
}

func TestUpstreamErrorReconcilesToZero(t *testing.T) {
	h, spy := newLimitHarness(t, ratelimit.Limits{TokensPerMinute: 1_000_000})
	resp, _ := h.post("/openai/deployments/no-such-deployment/chat/completions?api-version=2024-10-21", hello)
	if resp.StatusCode != 404 {
		t.Fatalf("status %d, want the backend's 404", resp.StatusCode)
	}
	if rc := spy.nextReconcile(t); rc.actual != 0 || rc.reserved == 0 {
		t.Errorf("a call the backend refused reconciled %+v, want 0 of its reservation", rc)
	}
}

func TestNoLimitsNoHeaders(t *testing.T) {
	h := newHarness(t)
	resp, _ := h.post(chatPath, hello)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	// The deployment's own budget headers pass through untouched.
	if resp.Header.Get("x-ratelimit-remaining-tokens") == "" || resp.Header.Get("x-ratelimit-limit-requests") != "" {
		t.Errorf("without limits the backend's headers pass as they are: %v", resp.Header)
	}
	if rec := h.only(); rec.Limit != nil {
		t.Errorf("limit recorded without limits: %+v", rec.Limit)
	}
}

func TestRequestsOnlyLimitsNeitherEstimateNorReconcile(t *testing.T) {
	h, spy := newLimitHarness(t, ratelimit.Limits{RequestsPerMinute: 10})
	for range 2 {
		resp, body := h.post(chatPath, hello)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if resp.Header.Get("x-ratelimit-limit-requests") != "10" || resp.Header.Get("x-ratelimit-remaining-tokens") != "" {
			t.Errorf("headers %v: want the request limit's only", resp.Header)
		}
	}
	h.waitRecords(2)
	if res := <-spy.reserved; res.cost != (ratelimit.Cost{Requests: 1}) {
		t.Errorf("reserved %+v, want one request and no token estimate", res.cost)
	}
	spy.noMoreReconciles(t)
}
