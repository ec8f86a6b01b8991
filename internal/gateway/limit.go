package gateway

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/record"
)

// The limit step (DESIGN.md §8: auth -> limit -> proxy). A call reserves one
// request and its estimated tokens before anything is forwarded; a refusal
// is answered and recorded as denied, like bad credentials; an admitted call
// reconciles its reservation with the tokens it actually used when it ends
// (end), whatever way it ends.

// defaultMaxOutput is the output estimate of a request that sets no
// max_tokens when gateway.limits.max_output_tokens is not given.
const defaultMaxOutput = 4096

// limitNameUnavailable is the limit recorded on a call refused because the
// shared limiter is unreachable and the policy is fail_closed.
const limitNameUnavailable = "limiter_unavailable"

// rateLimitHeaders are the budget headers Azure OpenAI sends about a
// deployment, in canonical form; the limit step's replace them.
var rateLimitHeaders = []string{ratelimit.HeaderLimitRequests, ratelimit.HeaderRemainingRequests,
	ratelimit.HeaderLimitTokens, ratelimit.HeaderRemainingTokens}

// statser is the optional interface of a limiter with fallback counters
// (*ratelimit.Fallback).
type statser interface {
	Stats() ratelimit.FallbackStats
}

// admit runs the limit step. It returns false when the call was refused
// (and answered); true when it may go on, with its reservation in c.
func (g *Gateway) admit(c *call, w http.ResponseWriter, r *http.Request) bool {
	if g.limiter == nil {
		return true
	}
	p := c.rec.Principal
	lim := g.rules.For(p.KeyName, p.Roles)
	cost := ratelimit.Cost{Requests: 1}
	tokens := lim.TokensPerMinute > 0 || lim.TokensPerDay > 0 || lim.TokensPerMonth > 0
	if tokens {
		cost.Tokens = g.estimate(c) // tokenizing costs: only when a token budget needs it
	}
	key := p.ID()
	if key == "" && p.AppID != "" {
		key = "app:" + p.AppID // an app token without an object id
	}
	d, err := g.limiter.Reserve(r.Context(), key, lim, cost)
	g.noteLimiter()
	if err != nil {
		c.refused = true
		if c.clientCtx.Err() != nil {
			c.rec.Status = statusClientClosed
			c.rec.Error = &record.Error{Code: "client_closed", Message: "the caller closed the connection before the limit check ended"}
			return false
		}
		g.log.Error("rate limiter failed, answered 503", "request_id", c.id, "err", err)
		w.Header().Set("Retry-After", "1")
		c.refuse(w, http.StatusServiceUnavailable, "503", "the gateway cannot check its rate limits right now; try again later")
		return false
	}
	if l, ok := limitRecord(d); ok {
		c.limit = l
		c.rec.Limit = &c.limit
	}
	if !d.Allowed {
		d.SetHeaders(w.Header())
		code := "429"
		switch d.Reason {
		case ratelimit.QuotaSpent:
			code = "insufficient_quota" // the code OpenAI clients know for a spent quota
		case ratelimit.Unavailable:
			code = "503"
		}
		c.refuse(w, d.HTTPStatus(), code, d.Message())
		if c.rec.Error != nil && d.RetryAfter > 0 {
			c.rec.Error.RetryAfterMS = d.RetryAfter.Milliseconds()
		}
		return false
	}
	// Without a token budget there is nothing to correct: no Reconcile (a
	// round trip to Redis saved).
	c.decision, c.admitted, c.reserved = d, true, tokens
	return true
}

// estimate is the tokens a call reserves: its prompt counted with the
// model's tokenizer plus the output it may produce (its max tokens, else
// the configured cap, per choice); embeddings produce no output tokens.
func (g *Gateway) estimate(c *call) int64 {
	if !c.jsonBody || !estimable(c.route.op) {
		return 0
	}
	model := c.info.Model
	if model == "" {
		model = c.rec.Deployment
	}
	n := int64(g.est.Prompt(c.route.op, model, c.body))
	if c.route.op == record.OpEmbeddings {
		return n
	}
	out := int64(c.info.MaxTokens)
	if out <= 0 {
		out = g.maxOutput
	}
	return n + out*int64(max(c.info.N, 1))
}

// limitRecord is the record's limit field: the refusing limit, or for an
// admitted call the per-minute limit it is closest to; false when no
// per-minute limit applies to an admitted call.
func limitRecord(d ratelimit.Decision) (record.Limit, bool) {
	switch {
	case d.Reason == ratelimit.Unavailable:
		return record.Limit{Name: limitNameUnavailable, Throttled: true}, true
	case !d.Allowed:
		return record.Limit{Name: d.Limit, Throttled: true}, true
	}
	var best record.Limit
	var found bool
	var bestShare float64 = 2
	if d.LimitRequests > 0 && d.RemainingRequests >= 0 {
		best, found = record.Limit{Name: ratelimit.RequestsPerMinute, Remaining: d.RemainingRequests}, true
		bestShare = float64(d.RemainingRequests) / float64(d.LimitRequests)
	}
	if d.LimitTokens > 0 && d.RemainingTokens >= 0 &&
		float64(d.RemainingTokens)/float64(d.LimitTokens) < bestShare {
		best, found = record.Limit{Name: ratelimit.TokensPerMinute, Remaining: d.RemainingTokens}, true
	}
	return best, found
}

// reconcile settles an admitted call's reservation with what it used: the
// usage reported (or estimated by settle, also for a stream cut short); for
// a call that succeeded without a usage (images, audio) the estimate
// stands; a call the backend never served used nothing. ctx is cut loose
// from the caller's: a caller that left still pays for what it consumed.
// No limiter waits on the network here (Redis queues the correction), so
// ctx needs no deadline of its own.
func (g *Gateway) reconcile(ctx context.Context, c *call) {
	var actual int64
	switch rec := &c.rec; {
	case rec.Usage != nil:
		actual = int64(rec.Usage.TotalTokens)
	case c.tap != nil && !c.refused && rec.UpstreamStatus < 400:
		actual = c.decision.Reservation.Tokens()
	}
	if err := g.limiter.Reconcile(ctx, c.decision.Reservation, actual); err != nil {
		// One line a second at most: while Redis is down every call fails here.
		if now := time.Now().Unix(); g.lastReconcileErr.Swap(now) != now {
			g.log.Warn("rate limiter: reconcile a reservation", "request_id", c.id, "err", err)
		}
	}
}

// noteLimiter logs the fallback limiter's counters when it switches between
// the shared limiter and its policy (the limiter logs the cause itself).
func (g *Gateway) noteLimiter() {
	s, ok := g.limiter.(statser)
	if !ok {
		return
	}
	st := s.Stats()
	if g.limDegraded.Swap(st.Degraded) == st.Degraded {
		return
	}
	g.log.Info("rate limiter state changed", "degraded", st.Degraded, "outages", st.Outages,
		"recoveries", st.Recoveries, "errors", st.Errors)
}

// Close releases the limiter the gateway was given (its Redis client).
func (g *Gateway) Close() error {
	if cl, ok := g.limiter.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}
