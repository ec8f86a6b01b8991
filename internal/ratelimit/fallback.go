package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"
)

// OnError is what a Fallback does while its primary limiter fails.
type OnError string

// The policies of gateway.limits.on_redis_error.
const (
	// FailClosed refuses every request with Reason Unavailable (503).
	FailClosed OnError = "fail_closed"
	// FailLocal admits against this node's own counters (Local).
	FailLocal OnError = "local"
)

// FallbackConfig configures a Fallback.
type FallbackConfig struct {
	// Primary is the shared limiter (Redis). Required.
	Primary Limiter
	// Local serves while Primary fails; required with FailLocal.
	Local Limiter
	// Policy is FailClosed or FailLocal; "" means FailClosed.
	Policy OnError
	// ProbeEvery is how often, while Primary fails, one request tries it
	// again (the others do not wait for it); 0 means 1s.
	ProbeEvery time.Duration
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
}

// FallbackStats are counters for metrics.
type FallbackStats struct {
	Degraded   bool   // Primary is failing now
	Outages    uint64 // switches from Primary to the policy
	Recoveries uint64 // switches back to Primary
	Errors     uint64 // failed calls to Primary
}

// Fallback is a Limiter that uses Primary and, when Primary fails, applies
// the configured policy until a probe finds Primary working again. It logs
// the first failure and the recovery, not each failed call.
type Fallback struct {
	primary, local Limiter
	policy         OnError
	probe          time.Duration
	clock          func() time.Time
	log            *slog.Logger

	degraded   atomic.Bool
	nextProbe  atomic.Int64 // unix ns
	outages    atomic.Uint64
	recoveries atomic.Uint64
	errors     atomic.Uint64
}

var _ Limiter = (*Fallback)(nil)

// NewFallback returns a Fallback.
func NewFallback(cfg FallbackConfig, log *slog.Logger) (*Fallback, error) {
	if cfg.Primary == nil {
		return nil, errors.New("new fallback limiter: no primary limiter")
	}
	switch cfg.Policy {
	case "":
		cfg.Policy = FailClosed
	case FailClosed:
	case FailLocal:
		if cfg.Local == nil {
			return nil, errors.New("new fallback limiter: policy local needs a local limiter")
		}
	default:
		return nil, fmt.Errorf("new fallback limiter: unknown policy %q (want fail_closed or local)", cfg.Policy)
	}
	f := &Fallback{primary: cfg.Primary, local: cfg.Local, policy: cfg.Policy,
		probe: cfg.ProbeEvery, clock: cfg.Clock, log: log}
	if f.probe <= 0 {
		f.probe = time.Second
	}
	if f.clock == nil {
		f.clock = time.Now
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f, nil
}

// Reserve implements Limiter. A failure of Primary is not returned: the
// policy decides. An error is returned only when ctx itself ended.
func (f *Fallback) Reserve(ctx context.Context, key string, lim Limits, cost Cost) (Decision, error) {
	if f.degraded.Load() && !f.takeProbe() {
		return f.degradedReserve(ctx, key, lim, cost)
	}
	d, err := f.primary.Reserve(ctx, key, lim, cost)
	if err == nil {
		if f.degraded.CompareAndSwap(true, false) {
			f.recoveries.Add(1)
			f.log.Info("shared rate limiter recovered; using shared limits again")
		}
		return d, nil
	}
	if ctx.Err() != nil {
		return Decision{}, err // the caller went away: not the backend's fault
	}
	f.failed(err)
	return f.degradedReserve(ctx, key, lim, cost)
}

// takeProbe reports whether this call may try Primary while degraded: one
// call per ProbeEvery, so a down Redis is not hammered.
func (f *Fallback) takeProbe() bool {
	now := f.clock().UnixNano()
	next := f.nextProbe.Load()
	return now >= next && f.nextProbe.CompareAndSwap(next, now+f.probe.Nanoseconds())
}

func (f *Fallback) failed(err error) {
	f.errors.Add(1)
	if f.degraded.CompareAndSwap(false, true) {
		f.nextProbe.Store(f.clock().Add(f.probe).UnixNano())
		f.outages.Add(1)
		f.log.Error("shared rate limiter unreachable; applying policy until it returns",
			"policy", string(f.policy), "err", err)
	}
}

func (f *Fallback) degradedReserve(ctx context.Context, key string, lim Limits, cost Cost) (Decision, error) {
	if f.policy == FailLocal {
		d, err := f.local.Reserve(ctx, key, lim, cost)
		d.Reservation.local = true
		return d, err
	}
	return Decision{
		Reason:            Unavailable,
		RetryAfter:        f.probe,
		RemainingRequests: -1,
		RemainingTokens:   -1,
	}, nil
}

// Reconcile implements Limiter: a reservation is reconciled where it was
// made. An error from Primary is returned (the correction is lost) and
// counted.
func (f *Fallback) Reconcile(ctx context.Context, res Reservation, actual int64) error {
	if res.local {
		return f.local.Reconcile(ctx, res, actual)
	}
	err := f.primary.Reconcile(ctx, res, actual)
	if err != nil {
		f.errors.Add(1)
	}
	return err
}

// Stats returns the counters.
func (f *Fallback) Stats() FallbackStats {
	return FallbackStats{
		Degraded:   f.degraded.Load(),
		Outages:    f.outages.Load(),
		Recoveries: f.recoveries.Load(),
		Errors:     f.errors.Load(),
	}
}

// Close closes the primary limiter if it is an io.Closer.
func (f *Fallback) Close() error {
	if c, ok := f.primary.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
