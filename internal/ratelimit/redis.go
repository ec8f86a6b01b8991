package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClient is what the Redis limiter needs of a connection: scripts and
// pipelines. *redis.Client is one.
type RedisClient interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
}

// RedisConfig configures a Redis limiter.
type RedisConfig struct {
	// Client is the connection, e.g. redis.NewClient(opts) with opts from
	// redis.ParseURL(gateway.limits.redis). Required; the caller closes it.
	Client RedisClient
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
	// Log receives the corrections that could not be applied; nil discards.
	Log *slog.Logger
}

// Redis is a Limiter whose counters live in Redis, so any number of gateway
// replicas share exact limits. Each operation is one Lua script (EVALSHA),
// atomic across the key's windows; each window is a hash {r, t} under
// Prefix+"{key}:"+window start, expiring a minute after its window ends. The
// braces keep a key's windows in one Redis Cluster slot.
//
// One goroutine talks to Redis for the limiter, and a call costs less than
// one round trip: the reservations that arrive while a pipeline is out go
// together in the next one, as the store's group commit does, and
// Reconcile only queues its correction, which rides ahead of the next
// reservations in the same pipeline. So this replica's corrections are
// applied, in order, before any of its later admissions. What no Reserve
// carries within flushAfter is sent on its own; Close sends the rest. Other
// replicas see a correction at most flushAfter late.
type Redis struct {
	client  RedisClient
	prefix  string
	clock   func() time.Time
	cal     calendar
	timeout time.Duration
	closer  io.Closer // the client, when New created it
	log     *slog.Logger

	mu    sync.Mutex
	queue []correction // Reconciles not yet sent
	// sending is held from taking corrections off the queue until their
	// outcome is settled, so that a Flush returns only after every
	// correction queued before it was sent, also those the sender had in
	// flight.
	sending sync.Mutex
	lastLog time.Time // of a lost correction: one line a second at most
	reqs    chan *reserveReq
	wake    chan struct{} // the sender's signal: a correction is queued
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	// loaded says Redis is known to hold reconcileScript: a correction
	// refused with NOSCRIPT ahead of a Reserve would be applied after it.
	loaded atomic.Bool
}

// reserveReq is a Reserve waiting for the sender; done receives once cmd
// holds its script's outcome. Requests are pooled: one whose Reserve gave
// up waiting is not returned to the pool, since the sender may still
// answer it.
type reserveReq struct {
	keys     [3]string
	args     []any
	deadline time.Time // the Reserve's: now + Timeout
	cmd      *redis.Cmd
	done     chan struct{} // buffered: the sender never blocks on it
}

var reqPool = sync.Pool{New: func() any { return &reserveReq{done: make(chan struct{}, 1)} }}

// maxBatch bounds the reservations of one pipeline.
const maxBatch = 256

var errClosed = errors.New("reserve in redis: the limiter is closed")

// correction is one queued Reconcile: delta tokens for each of the first n
// windows in keys.
type correction struct {
	keys  [3]string
	n     int
	delta int64
	tries int // sends refused because Redis had lost the script
}

// flushAfter is how long a correction waits for a Reserve to carry it.
const flushAfter = 5 * time.Millisecond

// maxTries bounds the sends of a correction refused with NOSCRIPT.
const maxTries = 3

var _ Limiter = (*Redis)(nil)

// keySlack keeps a window's key this long after the window ends, so that a
// late Reconcile still finds it.
const keySlack = time.Minute

// NewRedis returns a Redis limiter.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if cfg.Client == nil {
		return nil, errors.New("new redis limiter: no client")
	}
	r := &Redis{client: cfg.Client, prefix: cfg.Prefix, clock: cfg.Clock, timeout: cfg.Timeout, log: cfg.Log,
		reqs: make(chan *reserveReq, maxBatch), wake: make(chan struct{}, 1),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	r.cal.loc = cfg.Location
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.prefix == "" {
		r.prefix = "tapline:rl:"
	}
	if r.clock == nil {
		r.clock = time.Now
	}
	if r.timeout <= 0 {
		r.timeout = 250 * time.Millisecond
	}
	go r.run()
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

// keys returns the minute, day and month hashes of key, cut from one
// string: they are built on every call.
func (r *Redis) keys(key string, minute, day, month int64) [3]string {
	var buf [192]byte
	var ends [3]int
	b := buf[:0]
	for i, w := range [3]struct {
		tag   string
		start int64
	}{{"}:m:", minute}, {"}:d:", day}, {"}:M:", month}} {
		b = append(b, r.prefix...)
		b = append(b, '{')
		b = append(b, key...)
		b = append(b, w.tag...)
		b = strconv.AppendInt(b, w.start, 10)
		ends[i] = len(b)
	}
	all := string(b)
	return [3]string{all[:ends[0]], all[ends[0]:ends[1]], all[ends[1]:]}
}

func ttl(now, end time.Time) int64 {
	return end.Sub(now).Milliseconds() + keySlack.Milliseconds()
}

// Reserve implements Limiter. It waits at most Timeout (or until ctx
// ends) for its script's outcome.
func (r *Redis) Reserve(ctx context.Context, key string, lim Limits, cost Cost) (Decision, error) {
	cost = normal(cost)
	w := r.cal.at(r.clock())
	mask := maskOf(lim)
	if mask == 0 {
		return decide(key, lim, cost, w, refusedNone, usage{}), nil
	}
	req := reqPool.Get().(*reserveReq)
	req.keys = r.keys(key, w.minute.UnixMilli(), w.day.UnixMilli(), w.month.UnixMilli())
	req.args = append(req.args[:0], lim.RequestsPerMinute, lim.TokensPerMinute, lim.TokensPerDay, lim.TokensPerMonth,
		cost.Requests, cost.Tokens, mask, ttl(w.now, w.minuteEnd), ttl(w.now, w.dayEnd), ttl(w.now, w.monEnd))
	// The sender's pipeline ends by the earliest deadline of the requests
	// it carries: no timer per call.
	req.deadline = time.Now().Add(r.timeout)
	select {
	case r.reqs <- req:
	case <-ctx.Done():
		reqPool.Put(req)
		return Decision{}, fmt.Errorf("reserve in redis: %w", ctx.Err())
	case <-r.stopped:
		return Decision{}, errClosed
	}
	select {
	case <-req.done:
	case <-ctx.Done():
		return Decision{}, fmt.Errorf("reserve in redis: %w", ctx.Err())
	case <-r.stopped:
		return Decision{}, errClosed
	}
	v, err := req.cmd.Int64Slice()
	keys := req.keys
	req.cmd = nil
	clear(req.args)
	reqPool.Put(req)
	if err != nil {
		return Decision{}, fmt.Errorf("reserve in redis: %w", err)
	}
	if len(v) != 5 {
		return Decision{}, fmt.Errorf("reserve in redis: script returned %d values", len(v))
	}
	d := decide(key, lim, cost, w, int(v[0]), usage{minReq: v[1], minTok: v[2], day: v[3], month: v[4]})
	d.Reservation.keys = keys // Reconcile's, so that it builds none
	return d, nil
}

// Reconcile implements Limiter, with the rules of Memory.Reconcile: windows
// whose key has expired are not corrected. It queues the correction (see
// Redis) and returns at once; a correction Redis cannot take is logged and
// lost, as a failed call would have lost it.
func (r *Redis) Reconcile(_ context.Context, res Reservation, actual int64) error {
	delta := max(actual, 0) - res.tokens
	if res.mask == 0 || delta == 0 {
		return nil
	}
	if res.keys[0] == "" { // a Reservation of another limiter's making
		res.keys = r.keys(res.key, res.minute, res.day, res.month)
	}
	c := correction{delta: delta}
	for i, bit := range [3]uint8{winMinute, winDay, winMonth} {
		if res.mask&bit != 0 {
			c.keys[c.n] = res.keys[i]
			c.n++
		}
	}
	r.requeue(c)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

func (r *Redis) requeue(c ...correction) {
	r.mu.Lock()
	r.queue = append(r.queue, c...)
	r.mu.Unlock()
}

// take empties the queue.
func (r *Redis) take() []correction {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queue
	r.queue = nil
	return q
}

// sendTo adds the corrections to pipe, one script call each.
func (r *Redis) sendTo(ctx context.Context, pipe redis.Pipeliner, cs []correction) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(cs))
	for i := range cs {
		cmds[i] = reconcileScript.EvalSha(ctx, pipe, cs[i].keys[:cs[i].n], cs[i].delta)
	}
	return cmds
}

// settle reads the outcome of sent corrections and returns the first error
// of one that was lost. One refused for a lost script (NOSCRIPT) goes back
// in the queue: it was not applied. Any other error may or may not have
// been applied, and the correction is dropped rather than risk counting it
// twice.
func (r *Redis) settle(sent []correction, cmds []*redis.Cmd) error {
	var lost int
	var first error
	for i, cmd := range cmds {
		switch err := cmd.Err(); {
		case err == nil:
		case isNoScript(err) && sent[i].tries+1 < maxTries:
			r.loaded.Store(false) // Redis restarted or flushed its scripts
			c := sent[i]
			c.tries++
			r.requeue(c)
		default:
			if lost++; first == nil {
				first = fmt.Errorf("reconcile in redis: %w", err)
			}
		}
	}
	if lost == 0 {
		return nil
	}
	r.mu.Lock()
	now := time.Now()
	quiet := now.Sub(r.lastLog) < time.Second
	if !quiet {
		r.lastLog = now
	}
	r.mu.Unlock()
	if !quiet {
		r.log.Warn("rate limiter: reservations not corrected in redis", "count", lost, "err", first)
	}
	return first
}

// Flush sends every queued correction now, in one pipeline, and returns
// the first error of one that was lost. One refused because Redis lost the
// script is sent again once the script is loaded.
func (r *Redis) Flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	r.sending.Lock()
	defer r.sending.Unlock()
	for {
		queued := r.take()
		if len(queued) == 0 {
			return nil
		}
		pipe := r.client.Pipeline()
		cmds := r.sendTo(ctx, pipe, queued)
		_, _ = pipe.Exec(ctx)
		if err := r.settle(queued, cmds); err != nil {
			return err
		}
		if !slices.ContainsFunc(cmds, func(c *redis.Cmd) bool { return isNoScript(c.Err()) }) {
			return nil
		}
		if err := r.load(ctx); err != nil {
			return fmt.Errorf("reconcile in redis: %w", err)
		}
	}
}

// load sends reconcileScript to Redis.
func (r *Redis) load(ctx context.Context) error {
	if err := reconcileScript.Load(ctx, r.client).Err(); err != nil {
		return fmt.Errorf("load the reconcile script: %w", err)
	}
	r.loaded.Store(true)
	return nil
}

// run is the sender: it sends the waiting reservations, with the queued
// corrections ahead of them, one pipeline at a time, and the corrections no
// reservation carried within flushAfter.
func (r *Redis) run() {
	defer close(r.stopped)
	t := time.NewTimer(flushAfter)
	t.Stop()
	armed := false
	batch := make([]*reserveReq, 0, maxBatch)
	for {
		select {
		case <-r.stop:
			return
		case req := <-r.reqs:
			batch = append(batch[:0], req)
		more:
			for len(batch) < maxBatch {
				select {
				case req := <-r.reqs:
					batch = append(batch, req)
				default:
					break more
				}
			}
			r.reserve(batch)
			clear(batch)
		case <-r.wake:
			if !armed {
				t.Reset(flushAfter)
				armed = true
			}
		case <-t.C:
			armed = false
			_ = r.Flush(context.Background()) // settle logged what was lost
		}
	}
}

// reserve sends the queued corrections and batch's reservations in one
// round trip and hands each reservation its outcome, by the earliest
// deadline among them.
func (r *Redis) reserve(batch []*reserveReq) {
	defer func() {
		for _, req := range batch {
			req.done <- struct{}{}
		}
	}()
	deadline := batch[0].deadline
	for _, req := range batch[1:] {
		if req.deadline.Before(deadline) {
			deadline = req.deadline
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	r.sending.Lock()
	defer r.sending.Unlock()
	queued := r.take()
	if len(queued) > 0 && !r.loaded.Load() {
		if err := r.load(ctx); err != nil { // keep them for later; the reservations will say what failed
			r.requeue(queued...)
			queued = nil
		}
	}
	if len(queued) == 0 && len(batch) == 1 {
		batch[0].cmd = reserveScript.Run(ctx, r.client, batch[0].keys[:], batch[0].args...)
		return
	}
	pipe := r.client.Pipeline()
	cmds := r.sendTo(ctx, pipe, queued)
	for _, req := range batch {
		req.cmd = reserveScript.EvalSha(ctx, pipe, req.keys[:], req.args...)
	}
	_, _ = pipe.Exec(ctx) // each command's outcome is read from it
	r.settle(queued, cmds)
	for _, req := range batch {
		if isNoScript(req.cmd.Err()) { // Redis lost its scripts (restart, SCRIPT FLUSH): Run loads it
			req.cmd = reserveScript.Run(ctx, r.client, req.keys[:], req.args...)
		}
	}
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// Close sends the queued corrections, stops the flusher, and closes the
// Redis client if New created it; a client passed in RedisConfig is the
// caller's to close. Close is idempotent.
func (r *Redis) Close() error {
	var err error
	r.once.Do(func() {
		close(r.stop)
		<-r.stopped
		err = r.Flush(context.Background())
		if r.closer != nil {
			err = errors.Join(err, r.closer.Close())
		}
	})
	return err
}
