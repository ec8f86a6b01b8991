package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig configures a Redis limiter.
type RedisConfig struct {
	// Client is the connection, e.g. redis.NewClient(opts) with opts from
	// redis.ParseURL(gateway.limits.redis). Required; the caller closes it.
	Client redis.Scripter
	// Prefix starts every key; "" means "tapline:rl:". Replicas sharing
	// limits must use the same prefix.
	Prefix string
	// Clock returns the current time; nil means time.Now. The windows are
	// computed from this clock, not Redis's: replicas whose clocks differ by s
	// count into different minute windows for s around each boundary, so keep
	// them synchronised (NTP); tests inject the clock to drive windows.
	Clock func() time.Time
	// Location sets the day and month boundaries of the quotas; nil is UTC.
	Location *time.Location
	// Timeout bounds each call, so that an unreachable Redis costs a request
	// this long at most before the fallback policy applies; 0 means 250ms.
	Timeout time.Duration
}

// Redis is a Limiter whose counters live in Redis, so any number of gateway
// replicas share exact limits. Each operation is one Lua script (EVALSHA),
// atomic across the key's windows; each window is a hash {r, t} under
// Prefix+"{key}:"+window start, expiring a minute after its window ends. The
// braces keep a key's windows in one Redis Cluster slot.
type Redis struct {
	client  redis.Scripter
	prefix  string
	clock   func() time.Time
	cal     calendar
	timeout time.Duration
	closer  io.Closer // the client, when New created it
}

var _ Limiter = (*Redis)(nil)

// keySlack keeps a window's key this long after the window ends, so that a
// late Reconcile still finds it.
const keySlack = time.Minute

// NewRedis returns a Redis limiter.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if cfg.Client == nil {
		return nil, errors.New("new redis limiter: no client")
	}
	r := &Redis{client: cfg.Client, prefix: cfg.Prefix, clock: cfg.Clock, timeout: cfg.Timeout}
	r.cal.loc = cfg.Location
	if r.prefix == "" {
		r.prefix = "tapline:rl:"
	}
	if r.clock == nil {
		r.clock = time.Now
	}
	if r.timeout <= 0 {
		r.timeout = 250 * time.Millisecond
	}
	return r, nil
}

// reserveScript checks every window and reserves in all or none.
// KEYS: minute, day, month hashes. ARGV: rpm, tpm, tpd, tpmo, requests,
// tokens, mask, then the three TTLs in ms. Returns {refused, minute requests,
// minute tokens, day tokens, month tokens}; the refusal codes and their order
// are those of check in window.go.
var reserveScript = redis.NewScript(`
local rpm, tpm, tpd, tpmo = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local creq, ctok, mask = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local hasM, hasD, hasMo = mask % 2 == 1, math.floor(mask / 2) % 2 == 1, math.floor(mask / 4) % 2 == 1
local mr, mt, d, mo = 0, 0, 0, 0
if hasM then
  local v = redis.call('HMGET', KEYS[1], 'r', 't')
  mr, mt = tonumber(v[1]) or 0, tonumber(v[2]) or 0
end
if hasD then d = tonumber(redis.call('HGET', KEYS[2], 't')) or 0 end
if hasMo then mo = tonumber(redis.call('HGET', KEYS[3], 't')) or 0 end
local refused = 0
if tpmo > 0 and mo >= tpmo then refused = 4
elseif tpd > 0 and d >= tpd then refused = 3
elseif tpm > 0 and mt >= tpm then refused = 2
elseif rpm > 0 and mr + creq > rpm then refused = 1 end
if refused == 0 then
  if hasM then
    mr = redis.call('HINCRBY', KEYS[1], 'r', creq)
    mt = redis.call('HINCRBY', KEYS[1], 't', ctok)
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
  end
  if hasD then
    d = redis.call('HINCRBY', KEYS[2], 't', ctok)
    redis.call('PEXPIRE', KEYS[2], ARGV[9])
  end
  if hasMo then
    mo = redis.call('HINCRBY', KEYS[3], 't', ctok)
    redis.call('PEXPIRE', KEYS[3], ARGV[10])
  end
end
return {refused, mr, mt, d, mo}
`)

// reconcileScript adds ARGV[1] tokens to each window in KEYS that still
// exists, never below zero.
var reconcileScript = redis.NewScript(`
local delta = tonumber(ARGV[1])
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    if redis.call('HINCRBY', k, 't', delta) < 0 then redis.call('HSET', k, 't', 0) end
  end
end
return 0
`)

func (r *Redis) keys(key string, minute, day, month int64) []string {
	base := r.prefix + "{" + key + "}:"
	return []string{
		base + "m:" + strconv.FormatInt(minute, 10),
		base + "d:" + strconv.FormatInt(day, 10),
		base + "M:" + strconv.FormatInt(month, 10),
	}
}

func ttl(now, end time.Time) int64 {
	return end.Sub(now).Milliseconds() + keySlack.Milliseconds()
}

// Reserve implements Limiter.
func (r *Redis) Reserve(ctx context.Context, key string, lim Limits, cost Cost) (Decision, error) {
	cost = normal(cost)
	w := r.cal.at(r.clock())
	mask := maskOf(lim)
	if mask == 0 {
		return decide(key, lim, cost, w, refusedNone, usage{}), nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	keys := r.keys(key, w.minute.UnixMilli(), w.day.UnixMilli(), w.month.UnixMilli())
	v, err := reserveScript.Run(ctx, r.client, keys,
		lim.RequestsPerMinute, lim.TokensPerMinute, lim.TokensPerDay, lim.TokensPerMonth,
		cost.Requests, cost.Tokens, mask,
		ttl(w.now, w.minuteEnd), ttl(w.now, w.dayEnd), ttl(w.now, w.monEnd)).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("reserve in redis: %w", err)
	}
	if len(v) != 5 {
		return Decision{}, fmt.Errorf("reserve in redis: script returned %d values", len(v))
	}
	return decide(key, lim, cost, w, int(v[0]), usage{minReq: v[1], minTok: v[2], day: v[3], month: v[4]}), nil
}

// Reconcile implements Limiter, with the rules of Memory.Reconcile: windows
// whose key has expired are not corrected.
func (r *Redis) Reconcile(ctx context.Context, res Reservation, actual int64) error {
	delta := max(actual, 0) - res.tokens
	if res.mask == 0 || delta == 0 {
		return nil
	}
	all := r.keys(res.key, res.minute, res.day, res.month)
	keys := make([]string, 0, 3)
	for i, bit := range []uint8{winMinute, winDay, winMonth} {
		if res.mask&bit != 0 {
			keys = append(keys, all[i])
		}
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := reconcileScript.Run(ctx, r.client, keys, delta).Err(); err != nil {
		return fmt.Errorf("reconcile in redis: %w", err)
	}
	return nil
}

// Close closes the Redis client if New created it; a client passed in
// RedisConfig is the caller's to close.
func (r *Redis) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}
