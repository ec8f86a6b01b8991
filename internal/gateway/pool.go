package gateway

import (
	"sync"
	"time"
)

// Circuit breaker settings for a backend pool: after breakerFailures
// consecutive 5xx answers or connection errors a backend is skipped for
// breakerOpen; then one call (half-open) tries it, and its outcome closes
// the breaker or opens it again.
const (
	breakerFailures = 5
	breakerOpen     = 30 * time.Second
	probeTimeout    = time.Minute     // a half-open call that never reports frees the backend after this
	maxCoolDown     = 5 * time.Minute // caps a backend's Retry-After
)

// pool chooses, for each call, the order in which the backends serving a
// deployment are tried (issue 6: priority and weight, cool-down on 429,
// circuit breaker on 5xx and connection errors). Its methods may be called
// concurrently.
type pool struct {
	backends []*backend // lower priority first (newBackends sorts them)
	now      func() time.Time
	rand     func(n int) int // uniform in [0, n)

	mu     sync.Mutex
	health map[*backend]*health
}

// health is what the pool knows of one backend.
type health struct {
	coolUntil  time.Time // a 429 asked to wait until then
	failures   int       // consecutive 5xx or connection errors
	openUntil  time.Time // the breaker is open until then
	probeUntil time.Time // a half-open call is in flight until it reports, or until then
}

func newPool(backends []*backend, now func() time.Time, rnd func(int) int) *pool {
	p := &pool{backends: backends, now: now, rand: rnd, health: map[*backend]*health{}}
	for _, b := range backends {
		p.health[b] = &health{}
	}
	return p
}

// order returns the backends serving deployment in the order to try them:
// by priority, and within one priority in a random order weighted by
// weight, leaving out the ones cooling down after a 429 or behind an open
// breaker. A backend whose breaker is due for its half-open call is
// included, and only one call at a time gets it. When every backend is
// left out, wait says how long until the first is available again.
func (p *pool) order(deployment string) (out []*backend, wait time.Duration) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var next time.Time
	for i := 0; i < len(p.backends); {
		j := i
		for j < len(p.backends) && p.backends[j].priority == p.backends[i].priority {
			j++
		}
		var tier []*backend
		for _, b := range p.backends[i:j] {
			if !b.serves(deployment) {
				continue
			}
			h := p.health[b]
			at := h.available(now)
			if at.After(now) {
				if next.IsZero() || at.Before(next) {
					next = at
				}
				continue
			}
			if !h.openUntil.IsZero() { // half-open: this call is the probe
				h.probeUntil = now.Add(probeTimeout)
			}
			tier = append(tier, b)
		}
		out = append(out, p.shuffle(tier)...)
		i = j
	}
	if len(out) == 0 && !next.IsZero() {
		wait = next.Sub(now)
	}
	return out, wait
}

// available is when the backend can next be tried.
func (h *health) available(now time.Time) time.Time {
	at := h.coolUntil
	if !h.openUntil.IsZero() {
		at = later(at, h.openUntil)
		at = later(at, h.probeUntil) // one probe at a time
	}
	return at
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// shuffle orders backends of one priority: each place goes to a backend
// drawn with probability proportional to its weight (at least 1).
func (p *pool) shuffle(tier []*backend) []*backend {
	if len(tier) < 2 {
		return tier
	}
	rest := append([]*backend(nil), tier...)
	out := make([]*backend, 0, len(tier))
	for len(rest) > 0 {
		total := 0
		for _, b := range rest {
			total += max(b.weight, 1)
		}
		r := p.rand(total)
		k := 0
		for ; k < len(rest)-1; k++ {
			if r -= max(rest[k].weight, 1); r < 0 {
				break
			}
		}
		out = append(out, rest[k])
		rest = append(rest[:k], rest[k+1:]...)
	}
	return out
}

// throttled records a 429: the backend is skipped for retryAfter (capped;
// one second when the backend gave no hint).
func (p *pool) throttled(b *backend, retryAfter time.Duration) {
	if retryAfter <= 0 {
		retryAfter = time.Second
	}
	until := p.now().Add(min(retryAfter, maxCoolDown))
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.health[b]
	h.coolUntil = later(h.coolUntil, until)
	h.probeUntil = time.Time{}
}

// failed records a 5xx answer or a connection error, opening the breaker
// after breakerFailures in a row, or again after a failed half-open call.
func (p *pool) failed(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.health[b]
	h.failures++
	if !h.openUntil.IsZero() || h.failures >= breakerFailures {
		h.openUntil = p.now().Add(breakerOpen)
		h.probeUntil = time.Time{}
	}
}

// succeeded records an answer that is neither a 429 nor a 5xx: the
// breaker closes.
func (p *pool) succeeded(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.health[b]
	h.failures, h.openUntil, h.probeUntil = 0, time.Time{}, time.Time{}
}

// abandoned records an attempt that ended without an answer to judge the
// backend by (the caller left): a half-open call in flight is freed.
func (p *pool) abandoned(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health[b].probeUntil = time.Time{}
}
