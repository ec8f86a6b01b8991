package eventhubs

import (
	"context"
	"errors"
	"testing"

	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/testenv"
)

// BenchmarkWrite sends batches of 100 records (about 200 bytes each) to the
// stand-in through the real SDK: the sink's packing and the SDK's AMQP path,
// not Event Hubs' own latency. It uses NewEventHubsStub, the stub without a
// testing.TB that the bench harness uses too.
func BenchmarkWrite(b *testing.B) {
	stub, err := testenv.NewEventHubsStub()
	if errors.Is(err, testenv.ErrStubMissing) {
		testenv.Missing(b, "eventhubs-stub", err.Error())
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stub.Stop() })
	s, err := New(Config{ConnectionString: stub.ConnectionString(true), PartitionKey: PartitionByPrincipal}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	recs := sinktest.Records(0, 100)
	ctx := context.Background()
	for b.Loop() {
		if err := s.Write(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}
