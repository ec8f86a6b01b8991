package ship

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
)

// gauge reads the value of the gauge name for sink from reg, as a scrape
// of metrics.listen would.
func gauge(t *testing.T, reg *prometheus.Registry, name, sinkName string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "sink" && lp.GetValue() == sinkName {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no gauge %s{sink=%q}", name, sinkName)
	return 0
}

// The lag gauges while a sink is down with a backlog: lag_records counts
// the records it has not confirmed (growing as more arrive), lag_seconds
// is the age of the oldest of them on the shipper's clock; both drop to 0
// once the sink recovered and caught up. A healthy sink beside it shows
// no lag at all.
func TestLagGaugesWhileASinkIsDown(t *testing.T) {
	st := openStore(t, "")
	recs := appendN(t, st, 0, 120)
	const behind = 90 * time.Second
	now := recs[0].Time.Add(behind) // the shipper's clock, fixed
	var down atomic.Bool
	down.Store(true)
	slow := &fakeSink{fail: func(int, []record.Record) error {
		if down.Load() {
			return &sink.RetryableError{Err: errors.New("503 service unavailable")}
		}
		return nil
	}}
	fast := &fakeSink{}
	h := startWith(t, st, func(l *loop) { l.now = func() time.Time { return now } },
		Target{Name: "slow", Sink: slow, Batch: Batch{MaxRecords: 50}},
		Target{Name: "fast", Sink: fast, Batch: Batch{MaxRecords: 50}})

	waitFor(t, "the healthy sink", func() bool { return cursor(t, st, "fast") == 120 })
	waitFor(t, "retries of the down sink", func() bool { return testutil.ToFloat64(h.sh.loops[0].m.failed) >= 3 })
	if got := gauge(t, h.reg, "tapline_sink_lag_records", "slow"); got != 120 {
		t.Errorf("lag_records of the down sink = %v, want 120 (nothing confirmed)", got)
	}
	if got := gauge(t, h.reg, "tapline_sink_lag_seconds", "slow"); got != behind.Seconds() {
		t.Errorf("lag_seconds of the down sink = %v, want %v (the oldest record's age)", got, behind.Seconds())
	}

	// More records arrive during the outage: the record lag follows, the
	// oldest undelivered record (and so the age) stays the same.
	recs = append(recs, appendN(t, st, 120, 30)...)
	waitFor(t, "the healthy sink to take the new records", func() bool { return cursor(t, st, "fast") == 150 })
	if got := gauge(t, h.reg, "tapline_sink_lag_records", "slow"); got != 150 {
		t.Errorf("lag_records after 30 more records = %v, want 150", got)
	}
	if got := gauge(t, h.reg, "tapline_sink_lag_seconds", "slow"); got != behind.Seconds() {
		t.Errorf("lag_seconds after 30 more records = %v, want %v", got, behind.Seconds())
	}
	// The loop moves its own cursor a moment after the store's: poll.
	waitFor(t, "no lag on the healthy sink", func() bool { return noLag(t, h.reg, "fast") })

	down.Store(false)
	waitFor(t, "the recovered sink", func() bool { return cursor(t, st, "slow") == 150 })
	waitFor(t, "no lag on the recovered sink", func() bool { return noLag(t, h.reg, "slow") })
	if d := sinktest.Diff(slow.records(), recs); d != "" {
		t.Error(d)
	}
}

// noLag reports whether both lag gauges of sinkName read 0.
func noLag(t *testing.T, reg *prometheus.Registry, sinkName string) bool {
	return gauge(t, reg, "tapline_sink_lag_records", sinkName) == 0 &&
		gauge(t, reg, "tapline_sink_lag_seconds", sinkName) == 0
}

// Between batches, the next one still filling (here it waits for more
// records until its long MaxWait), the age is that of the oldest record the
// sink has not confirmed, read from the store: the gauge does not drop to
// 0 at every batch of a backlog.
func TestLagSecondsBetweenBatches(t *testing.T) {
	st := openStore(t, "")
	recs := appendN(t, st, 0, 10)
	const behind = 45 * time.Second
	now := recs[0].Time.Add(behind)
	sk := &fakeSink{}
	h := startWith(t, st, func(l *loop) { l.now = func() time.Time { return now } },
		Target{Name: "lake", Sink: sk, Batch: Batch{MaxRecords: 10, MaxWait: time.Hour}})
	waitFor(t, "the first batch", func() bool { return cursor(t, st, "lake") == 10 })
	waitFor(t, "no lag once caught up", func() bool { return noLag(t, h.reg, "lake") })

	more := appendN(t, st, 10, 5) // fewer than MaxRecords: the batch waits
	if got := gauge(t, h.reg, "tapline_sink_lag_records", "lake"); got != 5 {
		t.Fatalf("lag_records = %v, want 5", got)
	}
	want := now.Sub(more[0].Time).Seconds()
	if got := gauge(t, h.reg, "tapline_sink_lag_seconds", "lake"); got != want || want <= 0 {
		t.Errorf("lag_seconds while the next batch fills = %v, want %v (the first waiting record's age)", got, want)
	}
}
