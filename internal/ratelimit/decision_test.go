package ratelimit_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/ratelimit"
)

func TestDecisionAnswers(t *testing.T) {
	reset := time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		d       ratelimit.Decision
		status  int
		message string
		headers http.Header
	}{
		{
			name:   "allowed",
			d:      ratelimit.Decision{Allowed: true, RemainingRequests: 7, RemainingTokens: 900, LimitRequests: 10, LimitTokens: 1000},
			status: 200,
			headers: http.Header{
				"X-Ratelimit-Limit-Requests": {"10"}, "X-Ratelimit-Remaining-Requests": {"7"},
				"X-Ratelimit-Limit-Tokens": {"1000"}, "X-Ratelimit-Remaining-Tokens": {"900"},
			},
		},
		{
			name:    "rate",
			d:       ratelimit.Decision{Reason: ratelimit.RateLimited, Limit: ratelimit.RequestsPerMinute, Budget: 10, RetryAfter: 1500 * time.Millisecond, RemainingRequests: 0, RemainingTokens: -1, LimitRequests: 10},
			status:  429,
			message: "rate limit requests_per_minute of 10 reached; retry after 2 seconds",
			headers: http.Header{"Retry-After": {"2"}, "X-Ratelimit-Limit-Requests": {"10"}, "X-Ratelimit-Remaining-Requests": {"0"}},
		},
		{
			name:    "quota",
			d:       ratelimit.Decision{Reason: ratelimit.QuotaSpent, Limit: ratelimit.TokensPerMonth, Budget: 5000, Reset: reset, RetryAfter: time.Hour, RemainingRequests: -1, RemainingTokens: -1},
			status:  403,
			message: "quota tokens_per_month of 5000 tokens is used up; it resets at 2026-03-11T00:00:00Z",
			headers: http.Header{},
		},
		{
			name:    "unavailable",
			d:       ratelimit.Decision{Reason: ratelimit.Unavailable, RetryAfter: time.Second, RemainingRequests: -1, RemainingTokens: -1},
			status:  503,
			message: "rate limiter unavailable; retry later",
			headers: http.Header{"Retry-After": {"1"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.d.HTTPStatus(); got != tc.status {
				t.Errorf("HTTPStatus = %d, want %d", got, tc.status)
			}
			if got := tc.d.Message(); got != tc.message {
				t.Errorf("Message = %q, want %q", got, tc.message)
			}
			h := http.Header{}
			tc.d.SetHeaders(h)
			if diff := cmp.Diff(tc.headers, h); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

// SetHeaders runs on every limited call: its values share one string and
// one slice, and the names are assigned in canonical form (Header.Set
// would allocate each name again).
func TestSetHeadersAllocations(t *testing.T) {
	d := ratelimit.Decision{Allowed: true, LimitRequests: 1000, RemainingRequests: 997,
		LimitTokens: 90000, RemainingTokens: 81234}
	h := http.Header{}
	if n := testing.AllocsPerRun(100, func() { d.SetHeaders(h) }); n > 2 {
		t.Errorf("SetHeaders: %v allocations a call, want at most 2", n)
	}
	want := http.Header{"X-Ratelimit-Limit-Requests": {"1000"}, "X-Ratelimit-Remaining-Requests": {"997"},
		"X-Ratelimit-Limit-Tokens": {"90000"}, "X-Ratelimit-Remaining-Tokens": {"81234"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}
