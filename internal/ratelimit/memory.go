package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// MemoryConfig configures a Memory limiter. The zero value is usable.
type MemoryConfig struct {
	// Clock returns the current time; nil means time.Now. Tests inject one.
	Clock func() time.Time
	// Location sets the day and month boundaries of the quotas; nil is UTC.
	Location *time.Location
	// Shards is the number of independently locked parts of the key space,
	// rounded up to a power of two; 0 means 64.
	Shards int
}

// Memory is a Limiter for one node: counters in a sharded map, one mutex per
// shard (no global lock on the hot path). A key whose windows have all ended
// is dropped by a sweep that each shard runs at most once a minute.
type Memory struct {
	clock  func() time.Time
	cal    calendar
	seed   maphash.Seed
	shards []shard
}

var _ Limiter = (*Memory)(nil)

type shard struct {
	mu        sync.Mutex
	entries   map[string]*entry
	nextSweep int64    // unix ms
	_         [40]byte // keep shards on separate cache lines
}

// entry holds one key's counters; a window's counts are valid only while its
// start matches the current window's start.
type entry struct {
	minute, minReq, minTok int64
	day, dayTok            int64
	month, monTok          int64
	expires                int64 // unix ms: the latest end of a counted window
}

// NewMemory returns a Memory limiter.
func NewMemory(cfg MemoryConfig) *Memory {
	n := 1
	for n < cfg.Shards || (cfg.Shards == 0 && n < 64) {
		n <<= 1
	}
	m := &Memory{clock: cfg.Clock, seed: maphash.MakeSeed(), shards: make([]shard, n)}
	m.cal.loc = cfg.Location
	if m.clock == nil {
		m.clock = time.Now
	}
	for i := range m.shards {
		m.shards[i].entries = make(map[string]*entry)
	}
	return m
}

func (m *Memory) shard(key string) *shard {
	return &m.shards[maphash.String(m.seed, key)&uint64(len(m.shards)-1)]
}

// Reserve implements Limiter. It never returns an error.
func (m *Memory) Reserve(_ context.Context, key string, lim Limits, cost Cost) (Decision, error) {
	cost = normal(cost)
	w := m.cal.at(m.clock())
	mask := maskOf(lim)
	if mask == 0 {
		return decide(key, lim, cost, w, refusedNone, usage{}), nil
	}
	s := m.shard(key)
	now := w.now.UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now >= s.nextSweep {
		s.sweep(now)
	}
	e := s.entries[key]
	if e == nil {
		e = &entry{}
		s.entries[key] = e
	}
	e.roll(w)
	used := usage{minReq: e.minReq, minTok: e.minTok, day: e.dayTok, month: e.monTok}
	refused := check(lim, cost, used)
	if refused == refusedNone {
		if mask&winMinute != 0 {
			e.minReq += cost.Requests
			e.minTok += cost.Tokens
			e.expires = max(e.expires, w.minuteEnd.UnixMilli())
		}
		if mask&winDay != 0 {
			e.dayTok += cost.Tokens
			e.expires = max(e.expires, w.dayEnd.UnixMilli())
		}
		if mask&winMonth != 0 {
			e.monTok += cost.Tokens
			e.expires = max(e.expires, w.monEnd.UnixMilli())
		}
		used = usage{minReq: e.minReq, minTok: e.minTok, day: e.dayTok, month: e.monTok}
	}
	return decide(key, lim, cost, w, refused, used), nil
}

// roll starts new windows where the current ones have moved on.
func (e *entry) roll(w windows) {
	if m := w.minute.UnixMilli(); e.minute != m {
		e.minute, e.minReq, e.minTok = m, 0, 0
	}
	if d := w.day.UnixMilli(); e.day != d {
		e.day, e.dayTok = d, 0
	}
	if mo := w.month.UnixMilli(); e.month != mo {
		e.month, e.monTok = mo, 0
	}
}

// sweep drops the entries whose windows have all ended.
func (s *shard) sweep(now int64) {
	for k, e := range s.entries {
		if e.expires <= now {
			delete(s.entries, k)
		}
	}
	s.nextSweep = now + time.Minute.Milliseconds()
}

// Reconcile implements Limiter. Only windows that are still current are
// corrected: tokens of a reservation whose minute has ended are not charged
// to the next minute. Counters never go below zero. It never returns an
// error.
func (m *Memory) Reconcile(_ context.Context, res Reservation, actual int64) error {
	delta := max(actual, 0) - res.tokens
	if res.mask == 0 || delta == 0 {
		return nil
	}
	s := m.shard(res.key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[res.key]
	if e == nil {
		return nil
	}
	if res.mask&winMinute != 0 && e.minute == res.minute {
		e.minTok = max(e.minTok+delta, 0)
	}
	if res.mask&winDay != 0 && e.day == res.day {
		e.dayTok = max(e.dayTok+delta, 0)
	}
	if res.mask&winMonth != 0 && e.month == res.month {
		e.monTok = max(e.monTok+delta, 0)
	}
	return nil
}

// Len is the number of keys held, for tests and metrics.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.entries)
		s.mu.Unlock()
	}
	return n
}
