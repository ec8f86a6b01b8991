package ship

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the shipper's Prometheus series, one label value per sink.
type metrics struct {
	sent, failed, retried, dead *prometheus.CounterVec
	reg                         prometheus.Registerer
}

// sinkMetrics are one sink's counters.
type sinkMetrics struct {
	sent, failed, retried, dead prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tapline", Subsystem: "sink", Name: name, Help: help,
		}, []string{"sink"})
	}
	m := &metrics{
		sent:    counter("records_sent_total", "Records the destination confirmed."),
		failed:  counter("write_failures_total", "Writes that failed (the batch is retried)."),
		retried: counter("write_retries_total", "Writes of a batch after a failed one."),
		dead:    counter("dead_letters_total", "Records the destination refused as invalid, moved to the dead-letter table."),
		reg:     reg,
	}
	for _, c := range []*prometheus.CounterVec{m.sent, m.failed, m.retried, m.dead} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register sink metrics: %w", err)
		}
	}
	return m, nil
}

// forSink returns l's counters and registers its lag gauges, which read
// the loop's atomics when scraped.
func (m *metrics) forSink(name string, l *loop) *sinkMetrics {
	labels := prometheus.Labels{"sink": name}
	lagRecords := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "tapline", Subsystem: "sink", Name: "lag_records",
		Help: "Released records in the store after the sink's cursor.", ConstLabels: labels,
	}, func() float64 {
		last, _ := l.st.Released()
		return float64(max(last-l.cursor.Load(), 0))
	})
	lagSeconds := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "tapline", Subsystem: "sink", Name: "lag_seconds",
		Help: "Age, by record time, of the oldest record not yet confirmed by the sink; 0 when caught up.", ConstLabels: labels,
	}, l.lagSeconds)
	// The names are unique per shipper (New checks), so registration can
	// fail only if two shippers share a registry; the counters still work.
	_ = m.reg.Register(lagRecords)
	_ = m.reg.Register(lagSeconds)
	return &sinkMetrics{
		sent:    m.sent.With(labels),
		failed:  m.failed.With(labels),
		retried: m.retried.With(labels),
		dead:    m.dead.With(labels),
	}
}
