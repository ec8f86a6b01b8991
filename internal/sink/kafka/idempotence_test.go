package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produced is the idempotence header of one record batch in a produce
// request, as the broker received it.
type produced struct {
	producerID int64
	epoch      int16
	firstSeq   int32
	records    int32
}

// produceLog records the header of every batch of every produce request
// the cluster receives, and counts InitProducerID requests, without
// answering them: kfake handles them as usual.
type produceLog struct {
	mu      sync.Mutex
	batches []produced
	inits   int
}

func watchProduce(t *testing.T, c *kfake.Cluster) *produceLog {
	l := &produceLog{}
	c.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.inits++
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.ProduceRequest)
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				var b kmsg.RecordBatch
				if err := b.ReadFrom(rp.Records); err != nil {
					t.Errorf("produce request with an unreadable batch: %v", err)
					continue
				}
				l.batches = append(l.batches, produced{b.ProducerID, b.ProducerEpoch, b.FirstSequence, b.NumRecords})
			}
		}
		return nil, nil, false
	})
	return l
}

func (l *produceLog) snapshot() ([]produced, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]produced(nil), l.batches...), l.inits
}

// TestProducerIsIdempotent: the broker appends the first produce request
// but answers REQUEST_TIMED_OUT, as a broker does whose replicas were slow
// (the reply is as good as lost: the client cannot know the batch was
// written). franz-go resends the batch with the same producer id, epoch
// and sequence numbers, the broker recognises it, and the topic holds
// every record exactly once. A producer that is not idempotent sends
// producer id -1 and the resend is written a second time.
func TestProducerIsIdempotent(t *testing.T) {
	c := newCluster(t, newTestCA(t), MechanismPlain, testUser, testPass, 1)
	watch := watchProduce(t, c.c)
	fault := c.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: testTopic, Err: kerr.RequestTimedOut})
	s := newSink(t, c.config())

	first := sinktest.Records(0, 50)
	if err := s.Write(context.Background(), first); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if fault.Hits() != 1 {
		t.Fatalf("the REQUEST_TIMED_OUT fault answered %d requests, want 1", fault.Hits())
	}
	second := sinktest.Records(50, 30)
	if err := s.Write(context.Background(), second); err != nil {
		t.Fatalf("second Write: %v", err)
	}
	if d := sinktest.Diff(c.delivered(t), append(first, second...)); d != "" {
		t.Errorf("the topic does not hold each record exactly once, in order:\n%s", d)
	}

	batches, inits := watch.snapshot()
	if inits == 0 {
		t.Error("the producer never asked for a producer id (InitProducerID)")
	}
	// Every batch carries the producer id; the batches cover sequence
	// numbers 0..79 without a gap; one batch went twice, unchanged.
	seen := map[produced]int{}
	covered := map[int32]bool{}
	var resent []produced
	for _, b := range batches {
		if b.producerID < 0 || b.epoch < 0 || b.firstSeq < 0 {
			t.Errorf("batch %+v has no producer id, epoch or sequence: the producer is not idempotent", b)
		}
		if seen[b]++; seen[b] == 2 {
			resent = append(resent, b)
		}
		for i := range b.records {
			covered[b.firstSeq+i] = true
		}
	}
	if len(resent) != 1 || resent[0].firstSeq != 0 {
		t.Errorf("batches %+v: want the first batch (sequence 0) sent twice with the same id and sequence", batches)
	}
	for seq := range int32(80) {
		if !covered[seq] {
			t.Errorf("no batch carried sequence number %d (batches %+v)", seq, batches)
			break
		}
	}
	if len(covered) != 80 {
		t.Errorf("batches carried %d sequence numbers for 80 records", len(covered))
	}
}

// TestProducerRetriesAreBounded: while the broker refuses every produce
// with a retriable error (NOT_ENOUGH_REPLICAS: nothing is written),
// franz-go resends on its own only recordRetries times; then Write fails
// with the broker's error, as retryable, and not with a timeout: the
// shipper's backoff takes over. Once the broker accepts again, the next
// Write delivers, once.
func TestProducerRetriesAreBounded(t *testing.T) {
	c := newCluster(t, newTestCA(t), MechanismPlain, testUser, testPass, 1)
	fault := c.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: testTopic, Err: kerr.NotEnoughReplicas, Count: -1})
	cfg := c.config()
	cfg.Timeout = DefaultTimeout // long: it must not be what ends the Write
	s := newSink(t, cfg)

	recs := sinktest.Records(0, 20)
	err := s.Write(context.Background(), recs)
	if _, ok := sink.Retryable(err); !ok {
		t.Fatalf("Write while the broker refuses: %v, want a retryable error", err)
	}
	if !errors.Is(err, kerr.NotEnoughReplicas) || errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Write: %v, want franz-go to give up after its retries with the broker's error, not a timeout", err)
	}
	if n := fault.Hits(); n != recordRetries+1 {
		t.Errorf("franz-go sent %d produce requests, want 1 and %d resends", n, recordRetries)
	}

	fault.Remove()
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write after the broker recovered: %v", err)
	}
	if d := sinktest.Diff(c.delivered(t), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
}

// TestClientOptions: the client the sink builds is idempotent with
// acks=all, and its own retrying is bounded by count, backoff and time.
func TestClientOptions(t *testing.T) {
	s := newSink(t, Config{Brokers: []string{"127.0.0.1:9092"}, Topic: "t", Timeout: 7e9})
	for _, tc := range []struct {
		opt  any
		want string
	}{
		{kgo.DisableIdempotentWrite, "false"},
		{kgo.RecordRetries, fmt.Sprint(recordRetries)},
		{kgo.MetadataMinAge, fmt.Sprint(metadataMinAge)},
		{kgo.RecordDeliveryTimeout, "7s"},
		{kgo.RequiredAcks, fmt.Sprint(kgo.AllISRAcks())},
	} {
		if got := fmt.Sprint(s.cl.OptValue(tc.opt)); got != tc.want {
			t.Errorf("option %T = %s, want %s", tc.opt, got, tc.want)
		}
	}
	for fails := range 12 {
		if d := retryBackoff(fails); d <= 0 || d > retryBackoffMax*6/5 {
			t.Errorf("retryBackoff(%d) = %v, want in (0, %v]", fails, d, retryBackoffMax*6/5)
		}
	}
}
