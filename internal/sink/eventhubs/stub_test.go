package eventhubs

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/tapline/tapline/internal/record"
)

// event is one event read back from the stand-in through the real SDK's
// ConsumerClient.
type event struct {
	rec       record.Record
	partition string
	key       string // x-opt-partition-key, "" if none
	arrival   int64  // the stub's global arrival number
	transfer  int64  // the stub's number of the AMQP transfer (SDK batch)
	props     map[string]any
}

// readEvents reads every event of every partition with a ConsumerClient
// and orders them by the stub's global arrival number. Event Hubs orders
// events only within a partition; the stub numbers arrivals across
// partitions (x-opt-stub-arrival), which makes the order the sink wrote in
// observable, so the conformance suite's ordering checks apply.
func readEvents(t *testing.T, connStr string) []event {
	t.Helper()
	cc, err := azeventhubs.NewConsumerClientFromConnectionString(connStr, "", azeventhubs.DefaultConsumerGroup, nil)
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	return readEventsWith(t, cc)
}

// readEventsWith is readEvents with a given consumer, which it closes.
func readEventsWith(t *testing.T, cc *azeventhubs.ConsumerClient) []event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	defer cc.Close(ctx)
	hp, err := cc.GetEventHubProperties(ctx, nil)
	if err != nil {
		t.Fatalf("get hub properties: %v", err)
	}
	var out []event
	for _, pid := range hp.PartitionIDs {
		pp, err := cc.GetPartitionProperties(ctx, pid, nil)
		if err != nil {
			t.Fatalf("get partition %s properties: %v", pid, err)
		}
		if pp.IsEmpty {
			continue
		}
		n := int(pp.LastEnqueuedSequenceNumber - pp.BeginningSequenceNumber + 1)
		earliest := true
		pc, err := cc.NewPartitionClient(pid, &azeventhubs.PartitionClientOptions{
			StartPosition: azeventhubs.StartPosition{Earliest: &earliest},
		})
		if err != nil {
			t.Fatalf("new partition client %s: %v", pid, err)
		}
		var got []*azeventhubs.ReceivedEventData
		for len(got) < n {
			evs, err := pc.ReceiveEvents(ctx, n-len(got), nil)
			got = append(got, evs...)
			if err != nil && len(got) < n {
				t.Fatalf("partition %s: received %d of %d events: %v", pid, len(got), n, err)
			}
		}
		pc.Close(ctx)
		for _, e := range got {
			out = append(out, decodeEvent(t, pid, e))
		}
	}
	slices.SortStableFunc(out, func(a, b event) int { return int(a.arrival - b.arrival) })
	return out
}

func decodeEvent(t *testing.T, pid string, e *azeventhubs.ReceivedEventData) event {
	t.Helper()
	ev := event{partition: pid, props: e.Properties}
	if err := json.Unmarshal(e.Body, &ev.rec); err != nil {
		t.Fatalf("partition %s seq %d: body %.100q is not a record envelope: %v", pid, e.SequenceNumber, e.Body, err)
	}
	if e.PartitionKey != nil {
		ev.key = *e.PartitionKey
	}
	var ok1, ok2 bool
	ev.arrival, ok1 = e.SystemProperties["x-opt-stub-arrival"].(int64)
	ev.transfer, ok2 = e.SystemProperties["x-opt-stub-transfer"].(int64)
	if !ok1 || !ok2 {
		t.Fatalf("event %q lacks the stub's annotations: %v", ev.rec.ID, e.SystemProperties)
	}
	return ev
}

func records(evs []event) []record.Record {
	out := make([]record.Record, len(evs))
	for i, e := range evs {
		out[i] = e.rec
	}
	return out
}
