// Package ship delivers the store's records to every sink, at least once and
// in order: one loop per sink reads from that sink's cursor, batches, writes,
// retries and dead-letters, and moves the cursor only after the destination
// confirmed the batch (DESIGN.md §6).
//
// Retries live here and nowhere else: sinks classify their errors
// (sink.RetryableError, sink.InvalidError) and never sleep. A sink that is
// down delays only its own loop; the others read the same store on their own
// cursors.
package ship

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/store"
)

// Store is what the shipper needs of the store; *store.Store implements it.
type Store interface {
	// Released returns the last released seq and a channel closed when a
	// later one is committed.
	Released() (lastSeq int64, changed <-chan struct{})
	ReadAfter(ctx context.Context, afterSeq int64, limit int) ([]store.Stored, error)
	Cursor(ctx context.Context, sink string) (int64, error)
	Confirm(ctx context.Context, sink string, seq int64, dead []store.DeadLetter) error
	// SinkFailed stores msg as the sink's last error and adds retries to
	// its retry count, in one write.
	SinkFailed(ctx context.Context, sink, msg string, retries int64) error
}

var _ Store = (*store.Store)(nil)

// Batch bounds one Write. A batch is sent as soon as it holds MaxRecords
// records or MaxBytes bytes of data, or MaxWait after its first record was
// read, whichever comes first. A record larger than MaxBytes travels alone.
type Batch struct {
	MaxRecords int           // default 5000
	MaxBytes   int           // default 8 MiB (sum of the records' data)
	MaxWait    time.Duration // default 1s
}

// Retry is the backoff between failed writes of a batch: capped exponential
// with jitter, starting at Min and doubling up to Max. A destination's
// Retry-After hint replaces the backoff, capped at MaxRetryAfter. An error
// that is neither retryable nor invalid (bad credentials, a missing
// container) waits Max: an operator has to fix it, and the shipper keeps
// trying so that the fix is picked up without a restart.
type Retry struct {
	Min           time.Duration // default 500ms
	Max           time.Duration // default 1m
	MaxRetryAfter time.Duration // default 5m
}

// Target is one configured sink.
type Target struct {
	Name string // unique; names the cursor, the metrics and the logs
	Sink sink.Sink
	// Kinds, when not empty, are the record kinds the sink takes; the loop
	// passes over the others (its cursor moves past them). A destination
	// with a stream per kind (Logs Ingestion) runs one loop per kind, so
	// that each batch fills its requests (bench/ship, fill ratio).
	Kinds []record.Kind
	Batch Batch
	Retry Retry
}

// Shipper runs one delivery loop per target.
type Shipper struct {
	st    Store
	loops []*loop
	log   *slog.Logger
}

// New returns a shipper for targets over st. Metrics are registered on reg
// (a private registry when nil). The shipper owns the sinks: Run closes them
// when it returns.
func New(st Store, targets []Target, reg prometheus.Registerer, log *slog.Logger) (*Shipper, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("new shipper: %w", err)
	}
	s := &Shipper{st: st, log: log.With("component", "ship")}
	seen := map[string]bool{}
	for _, t := range targets {
		switch {
		case t.Name == "":
			return nil, errors.New("new shipper: a sink has no name")
		case seen[t.Name]:
			return nil, fmt.Errorf("new shipper: sink name %q is used twice", t.Name)
		case t.Sink == nil:
			return nil, fmt.Errorf("new shipper: sink %q has no destination", t.Name)
		}
		seen[t.Name] = true
		s.loops = append(s.loops, newLoop(st, t, m, s.log.With("sink", t.Name)))
	}
	return s, nil
}

// Names returns the sink names in configuration order: the cursors that
// bound the store's pruning.
func (s *Shipper) Names() []string {
	names := make([]string, len(s.loops))
	for i, l := range s.loops {
		names[i] = l.name
	}
	return names
}

// Run delivers until ctx ends, then closes every sink and returns nil. A
// batch in flight when ctx ends is abandoned without moving the cursor: it
// is delivered again at the next start (at least once).
func (s *Shipper) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, l := range s.loops {
		wg.Go(func() { l.run(ctx) })
	}
	wg.Wait()
	var errs []error
	for _, l := range s.loops {
		if err := l.sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close sink %q: %w", l.name, err))
		}
	}
	return errors.Join(errs...)
}

func (b Batch) withDefaults() Batch {
	if b.MaxRecords <= 0 {
		b.MaxRecords = 5000
	}
	if b.MaxBytes <= 0 {
		b.MaxBytes = 8 << 20
	}
	if b.MaxWait <= 0 {
		b.MaxWait = time.Second
	}
	return b
}

func (r Retry) withDefaults() Retry {
	if r.Min <= 0 {
		r.Min = 500 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = time.Minute
	}
	r.Max = max(r.Max, r.Min)
	if r.MaxRetryAfter <= 0 {
		r.MaxRetryAfter = 5 * time.Minute
	}
	return r
}
