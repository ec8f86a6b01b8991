package eventhubs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/testenv"
)

// stdLimit is Standard tier's message size limit, which the stub's links
// announce by default.
const stdLimit = 1 << 20

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinktest.Target {
			cs := testenv.StartEventHubsStub(t)
			s := newSink(t, Config{ConnectionString: cs})
			return sinktest.Target{
				Sink:      s,
				Delivered: func(t *testing.T) []record.Record { return records(readEvents(t, cs)) },
			}
		},
		MaxRecordBytes: stdLimit,
	})
}

// gatewayRec is a gateway_request record of the given principal.
func gatewayRec(i int, principal string) record.Record {
	r := sinktest.Records(i, 1)[0]
	r.Kind, r.Version = record.KindGatewayRequest, record.GatewayRequestVersion
	r.Data = json.RawMessage(fmt.Sprintf(`{"state":"completed","request_id":"req-%d","principal":%s,"status":200}`, i, principal))
	return r
}

// activityRec is an activity_log record of the given scope.
func activityRec(i int, scope string) record.Record {
	r := sinktest.Records(i, 1)[0]
	r.Kind, r.Version = record.KindActivityLog, record.ActivityLogVersion
	r.Data = json.RawMessage(fmt.Sprintf(`{"scope":%s,"event_data_id":"ev-%d","event":{"n":%d}}`, scope, i, i))
	return r
}

func TestPartitionKeyPrincipal(t *testing.T) {
	cs := testenv.StartEventHubsStub(t, testenv.EventHubsPartitions(4))
	s := newSink(t, Config{ConnectionString: cs, PartitionKey: PartitionByPrincipal})
	principals := []struct{ json, key string }{
		{`{"kind":"key","key_name":"team-a"}`, "key:team-a"},
		{`{"kind":"entra_user","oid":"0000-1","upn":"ada@contoso.com"}`, "ada@contoso.com"},
		{`{"kind":"entra_app","oid":"0000-2","appid":"app-2"}`, "0000-2"},
		{`{"kind":"entra_user","oid":"0000-3","upn":"bob@contoso.com"}`, "bob@contoso.com"},
	}
	var recs []record.Record
	want := map[string]string{} // record id -> key
	for i := range 24 {
		p := principals[(i*7/3)%len(principals)] // runs of one principal, interleaved
		r := gatewayRec(i, p.json)
		recs = append(recs, r)
		want[r.ID] = p.key
	}
	unkeyed := activityRec(100, `{"kind":"subscription","id":"sub-1"}`) // other kind: no key
	recs = append(recs, unkeyed)
	want[unkeyed.ID] = ""
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}

	evs := readEvents(t, cs)
	if d := sinktest.Diff(records(evs), recs); d != "" {
		t.Fatalf("delivered differs:\n%s", d)
	}
	partOf := map[string]string{} // key -> partition
	for _, e := range evs {
		if e.key != want[e.rec.ID] {
			t.Errorf("record %s has partition key %q, want %q", e.rec.ID, e.key, want[e.rec.ID])
		}
		if e.key == "" {
			continue
		}
		if p, ok := partOf[e.key]; ok && p != e.partition {
			t.Errorf("principal %q landed in partitions %s and %s", e.key, p, e.partition)
		}
		partOf[e.key] = e.partition
	}
	if len(partOf) != len(principals) {
		t.Errorf("saw %d keyed principals, want %d", len(partOf), len(principals))
	}
}

func TestPartitionKeyScope(t *testing.T) {
	cs := testenv.StartEventHubsStub(t, testenv.EventHubsPartitions(4))
	s := newSink(t, Config{ConnectionString: cs, PartitionKey: PartitionByScope})
	recs := []record.Record{
		activityRec(0, `{"kind":"subscription","id":"sub-1"}`),
		activityRec(1, `{"kind":"management_group","id":"mg-root"}`),
		activityRec(2, `{"kind":"tenant","id":""}`),
		activityRec(3, `{"kind":"subscription","id":"sub-1"}`),
		gatewayRec(4, `{"kind":"key","key_name":"team-a"}`), // other kind: no key
	}
	wantKeys := []string{"sub-1", "mg-root", "tenant", "sub-1", ""}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	evs := readEvents(t, cs)
	if d := sinktest.Diff(records(evs), recs); d != "" {
		t.Fatalf("delivered differs:\n%s", d)
	}
	for i, e := range evs {
		if e.key != wantKeys[i] {
			t.Errorf("record %s has partition key %q, want %q", e.rec.ID, e.key, wantKeys[i])
		}
	}
	if evs[0].partition != evs[3].partition {
		t.Errorf("scope sub-1 landed in partitions %s and %s", evs[0].partition, evs[3].partition)
	}
}

func TestApplicationProperties(t *testing.T) {
	cs := testenv.StartEventHubsStub(t)
	s := newSink(t, Config{ConnectionString: cs, Properties: map[string]string{"env": "prod"}})
	recs := sinktest.Records(0, 2)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	evs := readEvents(t, cs)
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	for i, e := range evs {
		// The stub re-encodes numbers with the smallest AMQP type, so
		// values are compared as text.
		want := map[string]string{"id": recs[i].ID, "kind": string(recs[i].Kind), "version": "1", "env": "prod"}
		for k, v := range want {
			if got := fmt.Sprint(e.props[k]); got != v {
				t.Errorf("event %d property %q = %q, want %q", i, k, got, v)
			}
		}
	}
}

// TestLargeBatchSplit writes more than one message's worth of records: the
// SDK's batch fills up and the sink sends several, all arriving in order.
func TestLargeBatchSplit(t *testing.T) {
	const limit = 64 << 10
	stub := testenv.LaunchEventHubsStub(t, testenv.EventHubsMaxMessageSize(limit))
	cs := stub.ConnectionString(false)
	s := newSink(t, Config{ConnectionString: cs, Hub: stub.Hub})
	var recs []record.Record
	for i := range 120 {
		recs = append(recs, sinktest.Padded(i, 2000)) // ~2.2 KB each, ~260 KB in all
	}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	evs := readEvents(t, cs+";EntityPath="+stub.Hub)
	if d := sinktest.Diff(records(evs), recs); d != "" {
		t.Fatalf("delivered differs:\n%s", d)
	}
	transfers := map[int64]int{}
	last := int64(-1)
	for _, e := range evs {
		if e.transfer < last {
			t.Fatalf("record %s came in transfer %d after transfer %d", e.rec.ID, e.transfer, last)
		}
		last = e.transfer
		transfers[e.transfer]++
	}
	if len(transfers) < 4 {
		t.Errorf("records came in %d transfers, want at least 4 batches of <= %d bytes", len(transfers), limit)
	}
	for tr, n := range transfers {
		if n*2000 > limit {
			t.Errorf("transfer %d held %d records, over the %d-byte limit", tr, n, limit)
		}
	}
}

// TestOversizeReason checks the dead-letter reason names the record, its
// size and the limit the link announced, and nothing was sent.
func TestOversizeReason(t *testing.T) {
	const limit = 32 << 10
	cs := testenv.StartEventHubsStub(t, testenv.EventHubsMaxMessageSize(limit))
	s := newSink(t, Config{ConnectionString: cs})
	recs := []record.Record{sinktest.Padded(0, 100), sinktest.Padded(1, limit), sinktest.Padded(2, 100), sinktest.Padded(3, 2*limit)}
	err := s.Write(context.Background(), recs)
	var inv *sink.InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("Write: %v, want *sink.InvalidError", err)
	}
	if fmt.Sprint(inv.Indexes) != "[1 3]" {
		t.Errorf("Indexes = %v, want [1 3]", inv.Indexes)
	}
	for _, want := range []string{`"rec-000001"`, fmt.Sprintf("%d-byte", limit), "2 records"} {
		if !strings.Contains(inv.Reason, want) {
			t.Errorf("reason %q lacks %q", inv.Reason, want)
		}
	}
	if got := readEvents(t, cs); len(got) != 0 {
		t.Errorf("a refused Write sent %d events", len(got))
	}
}
