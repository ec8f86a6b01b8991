package ship

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/store"
)

// loop delivers to one sink. Only its own goroutine touches its fields,
// except the atomics that the metrics read.
type loop struct {
	name  string
	sink  sink.Sink
	kinds []record.Kind // nil: every kind
	st    Store
	batch Batch
	retry Retry
	m     *sinkMetrics
	log   *slog.Logger

	// Seams for tests.
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(n int64) int64 // uniform in [0, n)

	cursor  atomic.Int64 // last confirmed seq
	oldest  atomic.Int64 // record time (unix nanos) of the first undelivered record in hand, 0 if none
	failing string       // the error of the outage in progress, "" when healthy
	since   time.Time    // when that outage began
	tries   int          // failed writes in that outage
	// unsaved is the failed writes not yet added to the store's retry
	// count: a SinkFailed that failed leaves them to the next one.
	unsaved     int64
	unsavedWarn bool // the failed SinkFailed was logged
}

func newLoop(st Store, t Target, m *metrics, log *slog.Logger) *loop {
	l := &loop{
		name:   t.Name,
		sink:   t.Sink,
		kinds:  t.Kinds,
		st:     st,
		batch:  t.Batch.withDefaults(),
		retry:  t.Retry.withDefaults(),
		log:    log,
		now:    time.Now,
		sleep:  sink.Sleep,
		jitter: rand.Int64N,
	}
	l.m = m.forSink(t.Name, l)
	return l
}

// run delivers batches until ctx ends. Only the end of ctx stops it: store
// and sink failures are logged, shown in the metrics and retried. The next
// batch is read from the store while the current one is written, so that
// the destination's latency (an fsync, a round trip) and the store's read
// overlap.
func (l *loop) run(ctx context.Context) {
	for attempt := 1; ; attempt++ {
		c, err := l.st.Cursor(ctx, l.name)
		if err == nil {
			l.cursor.Store(c)
			break
		}
		if l.pause(ctx, attempt, fmt.Errorf("read cursor: %w", err)) != nil {
			return
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan span, 1)
	go l.read(ctx, l.cursor.Load(), batches)
	for b := range batches {
		var dead []store.DeadLetter
		if len(b.recs) > 0 {
			var err error
			if dead, err = l.deliver(ctx, b.recs); err != nil {
				return // ctx ended; the batch is delivered again at the next start
			}
		}
		if err := l.confirm(ctx, b.through, dead); err != nil {
			return
		}
	}
}

// lagSeconds is the age, by record time, of the oldest record the sink
// has not confirmed: the first of the batch in hand, or between batches
// (the next one still filling) the first record of the sink's kinds after
// its cursor, read from the store, so that the gauge does not drop to 0
// for a moment at every batch of a backlog.
func (l *loop) lagSeconds() float64 {
	age := func(nanos int64) float64 { return max(l.now().Sub(time.Unix(0, nanos)).Seconds(), 0) }
	if oldest := l.oldest.Load(); oldest != 0 {
		return age(oldest)
	}
	cur := l.cursor.Load()
	if last, _ := l.st.Released(); last <= cur {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	next, err := l.st.ReadAfter(ctx, cur, lagScan)
	if err != nil {
		return 0 // a scrape cannot wait on a failing store; the loop reports it
	}
	for _, s := range next {
		if l.takes(s.Record.Kind) {
			return age(s.Record.Time.UnixNano())
		}
	}
	return 0 // none of the next records is the sink's: its cursor passes them
}

// lagScan bounds the records lagSeconds reads looking for one of the
// sink's kinds.
const lagScan = 64

// span is a batch and the last seq it stands for: records of kinds the
// sink does not take are passed over, and its cursor moves past them too.
type span struct {
	recs    []store.Stored
	through int64
}

// read sends batches of the records after seq after, in order, until ctx
// ends; then it closes out. A failing store read is logged and retried.
func (l *loop) read(ctx context.Context, after int64, out chan<- span) {
	defer close(out)
	failures := 0
	for {
		b, err := l.fill(ctx, after)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			if failures == 1 {
				l.log.Warn("read store; retrying", "error", err)
			}
			if sink.Sleep(ctx, l.wait(failures, 0, true)) != nil {
				return
			}
			continue
		}
		failures = 0
		select {
		case out <- b:
			after = b.through
		case <-ctx.Done():
			return
		}
	}
}

// fill waits for records after seq after and returns a batch of those
// the sink takes, once the batch is full or MaxWait after the first record
// was read.
func (l *loop) fill(ctx context.Context, after int64) (span, error) {
	var (
		b        = span{through: after}
		bytes    int
		deadline <-chan time.Time
		timer    *time.Timer
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		last, changed := l.st.Released()
		if last > b.through {
			more, err := l.st.ReadAfter(ctx, b.through, l.batch.MaxRecords-len(b.recs))
			if err != nil {
				return span{}, err
			}
			if len(more) == 0 {
				// Records after the cursor were removed (drop_oldest): there
				// is nothing to deliver up to last.
				b.through = last
				continue
			}
			for i, s := range more {
				if !l.takes(s.Record.Kind) {
					b.through = s.Seq
					continue
				}
				size := len(s.Record.Data)
				if len(b.recs) > 0 && bytes+size > l.batch.MaxBytes {
					return b, nil // full by bytes: the rest waits for the next batch
				}
				b.recs = append(b.recs, more[i])
				b.through = s.Seq
				bytes += size
			}
			if len(b.recs) >= l.batch.MaxRecords || bytes >= l.batch.MaxBytes {
				return b, nil
			}
			if timer == nil {
				timer = time.NewTimer(l.batch.MaxWait)
				deadline = timer.C
			}
			select {
			case <-deadline:
				return b, nil
			default:
				continue // read on while records are there
			}
		}
		select {
		case <-ctx.Done():
			return span{}, ctx.Err()
		case <-deadline:
			return b, nil
		case <-changed:
		}
	}
}

// takes reports whether the sink delivers records of kind k.
func (l *loop) takes(k record.Kind) bool {
	return len(l.kinds) == 0 || slices.Contains(l.kinds, k)
}

// deliver writes batch until the destination accepted every record that
// it does not refuse as invalid, and returns those refused as dead letters.
// It returns an error only when ctx ends.
func (l *loop) deliver(ctx context.Context, batch []store.Stored) ([]store.DeadLetter, error) {
	l.oldest.Store(batch[0].Record.Time.UnixNano())
	var dead []store.DeadLetter
	recs := make([]record.Record, 0, len(batch))
	for attempt := 1; ; attempt++ {
		recs = recs[:0]
		for _, s := range batch {
			recs = append(recs, s.Record)
		}
		err := l.sink.Write(ctx, recs)
		if err == nil {
			l.m.sent.Add(float64(len(batch)))
			l.recovered()
			return dead, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var inv *sink.InvalidError
		if !errors.As(err, &inv) {
			l.m.failed.Inc()
			l.unsaved++
			if l.pause(ctx, attempt, err) != nil {
				return nil, ctx.Err()
			}
			l.m.retried.Inc()
			continue
		}
		refused, ok := indexes(inv.Indexes, len(batch))
		switch {
		case ok:
		case len(batch) == 1:
			refused = []int{0}
		default:
			// The destination refused the batch without naming the record
			// at fault: deliver each half on its own to find it.
			mid := len(batch) / 2
			d1, err := l.deliver(ctx, batch[:mid])
			if err != nil {
				return nil, err
			}
			d2, err := l.deliver(ctx, batch[mid:])
			if err != nil {
				return nil, err
			}
			return slices.Concat(dead, d1, d2), nil
		}
		reason := inv.Reason
		if reason == "" {
			reason = err.Error()
		}
		at := l.now()
		kept := batch[:0:0]
		for i, s := range batch {
			if slices.Contains(refused, i) {
				dead = append(dead, store.DeadLetter{Sink: l.name, Seq: s.Seq, Record: s.Record, Reason: reason, At: at})
				l.log.Error("record refused by the destination; dead-lettered", "record_id", s.Record.ID, "seq", s.Seq, "reason", reason)
				continue
			}
			kept = append(kept, s)
		}
		l.m.dead.Add(float64(len(refused)))
		if len(kept) == 0 {
			l.recovered()
			return dead, nil
		}
		batch, attempt = kept, 0
	}
}

// confirm moves the cursor past the delivered batch, with its dead letters,
// retrying a failing store until ctx ends.
func (l *loop) confirm(ctx context.Context, seq int64, dead []store.DeadLetter) error {
	for attempt := 1; ; attempt++ {
		err := l.st.Confirm(ctx, l.name, seq, dead)
		if err == nil {
			l.cursor.Store(seq)
			l.oldest.Store(0)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := l.pause(ctx, attempt, fmt.Errorf("confirm batch: %w", err)); err != nil {
			return err
		}
	}
}

// indexes returns the valid, distinct positions in idx, and whether there
// was at least one and all were valid.
func indexes(idx []int, n int) ([]int, bool) {
	if len(idx) == 0 {
		return nil, false
	}
	out := slices.Clone(idx)
	slices.Sort(out)
	out = slices.Compact(out)
	if out[0] < 0 || out[len(out)-1] >= n {
		return nil, false
	}
	return out, true
}

// pause reports a failure and waits before the next attempt. The first
// failure of an outage, or one with a new message, is logged; repeats are
// only counted. Every failed write is stored, with its message as the
// sink's last error, so that the store's retry count grows through an
// outage (one store call, whose rate the backoff bounds); a failure that is
// not a write (the store's own) is stored only when its message is new.
func (l *loop) pause(ctx context.Context, attempt int, err error) error {
	msg := err.Error()
	hint, retryable := sink.Retryable(err)
	if l.failing == "" {
		l.since = l.now()
	}
	l.tries++
	if msg != l.failing {
		level := slog.LevelWarn
		if !retryable {
			level = slog.LevelError
		}
		l.log.Log(ctx, level, "sink write failed; retrying", "error", msg, "attempt", attempt, "retryable", retryable)
	}
	if msg != l.failing || l.unsaved > 0 {
		l.report(ctx, msg)
	}
	l.failing = msg
	return l.sleep(ctx, l.wait(attempt, hint, retryable))
}

// report records msg and the unsaved failed writes in the store; a store
// that fails keeps them for the next call and is logged once.
func (l *loop) report(ctx context.Context, msg string) {
	if err := l.st.SinkFailed(context.WithoutCancel(ctx), l.name, msg, l.unsaved); err != nil {
		if !l.unsavedWarn {
			l.log.Warn("store sink failure", "error", err)
			l.unsavedWarn = true
		}
		return
	}
	l.unsaved, l.unsavedWarn = 0, false
}

// recovered logs the end of an outage.
func (l *loop) recovered() {
	if l.failing == "" {
		return
	}
	l.log.Info("sink recovered", "failed_attempts", l.tries, "down_for", l.now().Sub(l.since).Round(time.Millisecond))
	l.failing, l.tries = "", 0
}

// wait is the pause before attempt+1: the destination's hint when it gave
// one (capped), the longest backoff for an error that is not retryable,
// else capped exponential backoff with jitter (half fixed, half random, so
// that sinks that failed together do not retry together).
func (l *loop) wait(attempt int, hint time.Duration, retryable bool) time.Duration {
	if hint > 0 {
		return min(hint, l.retry.MaxRetryAfter)
	}
	d := l.retry.Max
	if retryable && attempt < 32 {
		d = min(l.retry.Min<<(attempt-1), l.retry.Max)
	}
	half := d / 2
	return half + time.Duration(l.jitter(int64(d-half)+1))
}
