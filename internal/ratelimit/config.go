package ratelimit

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is gateway.limits minus the limits themselves (see Rules): where
// the counters live and what happens when Redis fails.
type Config struct {
	// Redis is a redis:// or rediss:// URL (redis.ParseURL); "" keeps the
	// counters in this node's memory.
	Redis string
	// OnRedisError is FailClosed (the default) or FailLocal.
	OnRedisError OnError
	// Prefix starts every Redis key; "" means "tapline:rl:".
	Prefix string
	// Location sets the day and month boundaries of the quotas; nil is UTC.
	Location *time.Location
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
}

// New builds the limiter that cfg describes: a *Memory without Redis, else a
// *Fallback (whose Stats feed metrics) over a *Redis with a client it owns
// and a *Memory for FailLocal. The result implements io.Closer when it holds
// a Redis client. It does not contact Redis: an unreachable Redis is the
// fallback policy's business, not a reason to refuse to start.
func New(cfg Config, log *slog.Logger) (Limiter, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	local := NewMemory(MemoryConfig{Clock: cfg.Clock, Location: cfg.Location})
	if cfg.Redis == "" {
		if cfg.OnRedisError != "" && cfg.OnRedisError != FailClosed && cfg.OnRedisError != FailLocal {
			return nil, fmt.Errorf("new limiter: unknown policy %q (want fail_closed or local)", cfg.OnRedisError)
		}
		return local, nil
	}
	opts, err := redis.ParseURL(cfg.Redis)
	if err != nil {
		// The URL may hold a password: do not repeat it.
		return nil, errors.New("new limiter: parse gateway.limits.redis: not a valid redis:// URL")
	}
	opts.MaxRetries = -1 // a failed call goes to the fallback policy at once
	client := redis.NewClient(opts)
	log = log.With("component", "ratelimit")
	primary, err := NewRedis(RedisConfig{Client: client, Prefix: cfg.Prefix, Clock: cfg.Clock, Location: cfg.Location, Log: log})
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("new limiter: %w", err)
	}
	primary.closer = client
	f, err := NewFallback(FallbackConfig{Primary: primary, Local: local, Policy: cfg.OnRedisError, Clock: cfg.Clock}, log)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("new limiter: %w", err)
	}
	return f, nil
}
