// Package ratelimit admits gateway requests against per-identity limits:
// requests and tokens per minute, and token quotas per day and per month,
// kept in memory for one node or in Redis for any number of replicas.
//
// # Model
//
// A request reserves its cost before it goes upstream: one request and the
// estimated tokens (prompt tokens from usage.Estimator plus the request's max
// output tokens, or a configured cap). Admission is atomic per key: every
// window is checked and, only if all have room, the cost is reserved in all
// of them at once; a refusal reserves nothing. When the response ends (also a
// stream, a failed upstream call or a client that went away) the gateway
// reconciles the reservation with the tokens actually used, up or down.
//
// Windows are fixed and aligned: the minute on the UTC clock, the day and the
// month on the calendar of a configured time zone (UTC by default). Fixed
// windows are exact and easy to explain (Retry-After is the time until the
// refusing window ends); the known cost is that a caller may spend up to two
// minutes' budget across one minute boundary.
//
// Requests are exact: a window of N admits N requests. Tokens are admitted
// while the tokens already used in a window are under its budget, whatever
// the estimate, so a window ends at most one request's estimate over budget
// (and a request larger than the whole budget is not refused forever).
//
// # Gateway usage
//
//	lim := rules.For(p.KeyName, p.Roles)                   // Rules from config
//	d, err := limiter.Reserve(ctx, p.ID(), lim, ratelimit.Cost{Requests: 1, Tokens: estimate})
//	if err != nil { /* technical failure: 503 */ }
//	d.SetHeaders(w.Header())
//	if !d.Allowed {
//		http.Error(w, d.Message(), d.HTTPStatus()) // 429, 403 or 503; record the refusal
//		return
//	}
//	defer func() { // on the request's end, also after a disconnect
//		ctx := context.WithoutCancel(r.Context())
//		_ = limiter.Reconcile(ctx, d.Reservation, usedTokens) // 0 if upstream refused
//	}()
//
// With gateway.limits.redis set, the limiter is NewFallback over NewRedis and
// NewMemory, so an unreachable Redis either refuses with 503 (fail_closed) or
// falls back to this node's own counters (local).
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Names of the limits, as they appear in decisions, messages and records.
const (
	RequestsPerMinute = "requests_per_minute"
	TokensPerMinute   = "tokens_per_minute"
	TokensPerDay      = "tokens_per_day"
	TokensPerMonth    = "tokens_per_month"
)

// Limits are the budgets of one identity. Zero means unlimited.
type Limits struct {
	RequestsPerMinute int64
	TokensPerMinute   int64
	TokensPerDay      int64
	TokensPerMonth    int64
}

// Cost is what one request reserves: usually Requests 1 and the estimated
// tokens. Negative values are treated as zero.
type Cost struct {
	Requests int64
	Tokens   int64
}

// Limiter admits requests per key (the principal's id).
//
// Reserve returns a Decision; a refusal is a Decision with Allowed false, not
// an error. An error means a technical failure (a backend unreachable or the
// context ended) and nothing is known to be reserved. Reconcile replaces the
// reserved tokens of an allowed Decision's Reservation by the actual count;
// call it exactly once per allowed Decision, with a context that outlives the
// client's (context.WithoutCancel). Reconcile does not wait on the network
// (a shared limiter queues the correction), so the gateway gives it no
// deadline. Reconciling a zero Reservation does nothing. Both are safe for
// concurrent use.
type Limiter interface {
	Reserve(ctx context.Context, key string, lim Limits, cost Cost) (Decision, error)
	Reconcile(ctx context.Context, res Reservation, actualTokens int64) error
}

// Reason says why a Decision refused.
type Reason int

// The reasons; each maps to one HTTP status (see Decision.HTTPStatus).
const (
	Admitted    Reason = iota // allowed
	RateLimited               // a per-minute limit: 429 with Retry-After
	QuotaSpent                // a day or month quota: 403 naming the quota and its reset
	Unavailable               // the shared limiter is unreachable and the policy is fail_closed: 503
)

// Decision is the outcome of Reserve: everything the gateway needs to answer
// and to record the request.
type Decision struct {
	Allowed bool
	Reason  Reason
	// Limit names the refusing limit (RequestsPerMinute, ...); empty when
	// allowed or unavailable.
	Limit string
	// Budget is the refusing limit's value.
	Budget int64
	// RetryAfter is the time until the refusing window has room; Reset is that
	// moment (the window's end). Both zero when allowed.
	RetryAfter time.Duration
	Reset      time.Time
	// RemainingRequests and RemainingTokens are what is left in the minute
	// window after this decision, -1 when that window is unlimited or unknown;
	// LimitRequests and LimitTokens are the per-minute limits (0 unlimited).
	RemainingRequests int64
	RemainingTokens   int64
	LimitRequests     int64
	LimitTokens       int64
	// Reservation is what Reconcile needs; zero unless allowed.
	Reservation Reservation
}

// Reservation identifies the windows and tokens an allowed request reserved.
// It is a value: keep it until the request ends.
type Reservation struct {
	key    string
	mask   uint8 // windows reserved: winMinute | winDay | winMonth
	minute int64 // window starts, unix ms
	day    int64
	month  int64
	tokens int64
	local  bool      // Fallback: reserved in the local limiter
	keys   [3]string // Redis: the windows' keys, minute, day, month
}

// Tokens is the number of tokens reserved.
func (r Reservation) Tokens() int64 { return r.tokens }

// HTTPStatus is the status the gateway answers with: 200 when allowed, 429
// for a rate, 403 for a quota, 503 when the limiter is unavailable.
func (d Decision) HTTPStatus() int {
	switch d.Reason {
	case RateLimited:
		return http.StatusTooManyRequests
	case QuotaSpent:
		return http.StatusForbidden
	case Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// Message is the error text for a refusal, naming the limit and when it
// resets; empty when allowed.
func (d Decision) Message() string {
	switch d.Reason {
	case RateLimited:
		return fmt.Sprintf("rate limit %s of %d reached; retry after %d seconds",
			d.Limit, d.Budget, retrySeconds(d.RetryAfter))
	case QuotaSpent:
		return fmt.Sprintf("quota %s of %d tokens is used up; it resets at %s",
			d.Limit, d.Budget, d.Reset.UTC().Format(time.RFC3339))
	case Unavailable:
		return "rate limiter unavailable; retry later"
	}
	return ""
}

// The headers SetHeaders writes, in canonical form: it assigns them
// directly, as Header.Set would after canonicalizing (and allocating) each
// name on every call. Azure OpenAI sends the same names about a deployment.
const (
	HeaderLimitRequests     = "X-Ratelimit-Limit-Requests"
	HeaderRemainingRequests = "X-Ratelimit-Remaining-Requests"
	HeaderLimitTokens       = "X-Ratelimit-Limit-Tokens"
	HeaderRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	headerRetryAfter        = "Retry-After"
)

// SetHeaders sets x-ratelimit-remaining-requests and -tokens (and the
// matching x-ratelimit-limit-* headers) for the minute windows that have a
// limit, and Retry-After on 429 and 503. It runs on every limited call, so
// the values share one string and one slice.
func (d Decision) SetHeaders(h http.Header) {
	var names [5]string
	var ends [5]int
	var buf [5 * 20]byte
	b, n := buf[:0], 0
	add := func(name string, v int64) {
		b = strconv.AppendInt(b, v, 10)
		names[n], ends[n] = name, len(b)
		n++
	}
	if d.LimitRequests > 0 && d.RemainingRequests >= 0 {
		add(HeaderLimitRequests, d.LimitRequests)
		add(HeaderRemainingRequests, d.RemainingRequests)
	}
	if d.LimitTokens > 0 && d.RemainingTokens >= 0 {
		add(HeaderLimitTokens, d.LimitTokens)
		add(HeaderRemainingTokens, d.RemainingTokens)
	}
	if d.Reason == RateLimited || d.Reason == Unavailable {
		add(headerRetryAfter, retrySeconds(d.RetryAfter))
	}
	if n == 0 {
		return
	}
	all, vals := string(b), make([]string, n)
	start := 0
	for i := range n {
		vals[i] = all[start:ends[i]]
		h[names[i]] = vals[i : i+1 : i+1]
		start = ends[i]
	}
}

// retrySeconds rounds up to whole seconds, at least 1, as Retry-After wants.
func retrySeconds(d time.Duration) int64 {
	s := int64(math.Ceil(d.Seconds()))
	return max(s, 1)
}
