package ratelimit

import (
	"sync/atomic"
	"time"
)

// Window bits of Reservation.mask.
const (
	winMinute uint8 = 1 << iota
	winDay
	winMonth
)

// Refusal codes, in the order they are checked: the quota with the latest
// reset wins, so the answer names the wait that really applies. The Lua
// script in redis.go uses the same codes and order.
const (
	refusedNone = iota
	refusedRequests
	refusedMinuteTokens
	refusedDay
	refusedMonth
)

// windows are the three windows that contain one instant.
type windows struct {
	now                       time.Time
	minute, day, month        time.Time // starts
	minuteEnd, dayEnd, monEnd time.Time
}

// windowsAt computes the windows of now: the UTC minute, and the calendar day
// and month in loc.
func windowsAt(now time.Time, loc *time.Location) windows {
	if loc == nil {
		loc = time.UTC
	}
	m := now.UTC().Truncate(time.Minute)
	t := now.In(loc)
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	mon := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
	return windows{
		now: now, minute: m, day: day, month: mon,
		minuteEnd: m.Add(time.Minute), dayEnd: day.AddDate(0, 0, 1), monEnd: mon.AddDate(0, 1, 0),
	}
}

// calendar caches the windows of the current minute: every instant of a UTC
// minute has the same day and month (zone offsets are whole minutes), and
// computing calendar dates is most of an in-memory admission's cost.
type calendar struct {
	loc *time.Location
	cur atomic.Pointer[windows]
}

func (c *calendar) at(now time.Time) windows {
	if w := c.cur.Load(); w != nil && !now.Before(w.minute) && now.Before(w.minuteEnd) {
		v := *w
		v.now = now
		return v
	}
	w := windowsAt(now, c.loc)
	c.cur.Store(&w)
	return w
}

// maskOf is the set of windows that lim limits; only those are counted.
func maskOf(lim Limits) uint8 {
	var m uint8
	if lim.RequestsPerMinute > 0 || lim.TokensPerMinute > 0 {
		m |= winMinute
	}
	if lim.TokensPerDay > 0 {
		m |= winDay
	}
	if lim.TokensPerMonth > 0 {
		m |= winMonth
	}
	return m
}

// usage is the count in each window (before or after a reservation).
type usage struct {
	minReq, minTok, day, month int64
}

// check returns the refusal code for reserving cost on top of used: requests
// must fit exactly; tokens are admitted while the used tokens are under the
// budget (see the package comment).
func check(lim Limits, cost Cost, used usage) int {
	switch {
	case lim.TokensPerMonth > 0 && used.month >= lim.TokensPerMonth:
		return refusedMonth
	case lim.TokensPerDay > 0 && used.day >= lim.TokensPerDay:
		return refusedDay
	case lim.TokensPerMinute > 0 && used.minTok >= lim.TokensPerMinute:
		return refusedMinuteTokens
	case lim.RequestsPerMinute > 0 && used.minReq+cost.Requests > lim.RequestsPerMinute:
		return refusedRequests
	}
	return refusedNone
}

// normal clamps a cost to non-negative values.
func normal(c Cost) Cost {
	return Cost{Requests: max(c.Requests, 0), Tokens: max(c.Tokens, 0)}
}

// decide builds the Decision from the refusal code and the counts after the
// reservation (or, when refused, the unchanged counts).
func decide(key string, lim Limits, cost Cost, w windows, refused int, after usage) Decision {
	d := Decision{
		Allowed:           refused == refusedNone,
		RemainingRequests: -1,
		RemainingTokens:   -1,
		LimitRequests:     lim.RequestsPerMinute,
		LimitTokens:       lim.TokensPerMinute,
	}
	if lim.RequestsPerMinute > 0 {
		d.RemainingRequests = max(lim.RequestsPerMinute-after.minReq, 0)
	}
	if lim.TokensPerMinute > 0 {
		d.RemainingTokens = max(lim.TokensPerMinute-after.minTok, 0)
	}
	switch refused {
	case refusedNone:
		mask := maskOf(lim)
		if mask != 0 {
			d.Reservation = Reservation{
				key: key, mask: mask, tokens: cost.Tokens,
				minute: w.minute.UnixMilli(), day: w.day.UnixMilli(), month: w.month.UnixMilli(),
			}
		}
		return d
	case refusedRequests:
		d.Reason, d.Limit, d.Budget, d.Reset = RateLimited, RequestsPerMinute, lim.RequestsPerMinute, w.minuteEnd
	case refusedMinuteTokens:
		d.Reason, d.Limit, d.Budget, d.Reset = RateLimited, TokensPerMinute, lim.TokensPerMinute, w.minuteEnd
	case refusedDay:
		d.Reason, d.Limit, d.Budget, d.Reset = QuotaSpent, TokensPerDay, lim.TokensPerDay, w.dayEnd
	case refusedMonth:
		d.Reason, d.Limit, d.Budget, d.Reset = QuotaSpent, TokensPerMonth, lim.TokensPerMonth, w.monEnd
	}
	d.RetryAfter = d.Reset.Sub(w.now)
	return d
}
