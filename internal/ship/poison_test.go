package ship

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/sink/splunk"
	"github.com/tapline/tapline/internal/store"
)

// A poison record end to end, refused by the destination itself: the
// shipper ships 400 records to the real Splunk sink on the HEC emulator,
// with indexer acknowledgement. One of them is an activity_log record,
// which the sink sends to an index the token may not write; Splunk answers
// that request with 400 code 7 "Incorrect index" and invalid-event-number
// naming it (the emulator's contract, [3P-1][3P-5]), after indexing the
// events before it. The record is dead-lettered with Splunk's answer as
// the reason, the cursor passes it, every other record arrives in store
// order (the resend of the batch may repeat some, under the same id), and
// no backoff was spent on it.
func TestPoisonRecordRefusedBySplunk(t *testing.T) {
	const (
		n     = 400
		pos   = 277 // the third batch of 100, in its second request
		token = "hec-poison-token"
		max   = 20_000 // a batch of 100 takes two requests
	)
	st := openStore(t, "")
	var recs []record.Record
	for i := range n {
		if i == pos {
			recs = append(recs, sinktest.Records(2*i+1, 1)[0]) // odd: activity_log
			continue
		}
		recs = append(recs, sinktest.Records(2*i, 1)[0]) // even: gateway_request
	}
	poison := recs[pos]
	if poison.Kind != record.KindActivityLog {
		t.Fatalf("the poison is a %s record", poison.Kind)
	}
	if _, err := st.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}

	url, hec, stop, err := emulator.ListenSplunkHEC(t.Context(), "127.0.0.1:0", emulator.SplunkHECConfig{
		Tokens:           []emulator.SplunkHECToken{{Name: "tapline", Value: token, Indexes: []string{"main"}, IndexerAck: true}},
		MaxContentLength: max,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	sp, err := splunk.New(splunk.Config{URL: url, Token: token, Index: "main", IndexerAck: true, MaxRequestBytes: max,
		Indexes: map[record.Kind]string{record.KindActivityLog: "azure_activity"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, st, Target{Name: "splunk", Sink: sp, Batch: Batch{MaxRecords: 100}})
	waitFor(t, "the cursor past every record", func() bool { return cursor(t, st, "splunk") == n })

	refused := 0
	for _, rq := range hec.Requests() {
		if rq.Status == 400 {
			refused++
			if rq.Code != 7 {
				t.Errorf("Splunk refused a request with code %d, want 7 (Incorrect index)", rq.Code)
			}
		}
	}
	if refused != 1 {
		t.Errorf("Splunk refused %d requests, want 1 (the one with the poison record)", refused)
	}

	var dead []store.DeadLetter
	if err := st.DeadLetters(t.Context(), "", func(d store.DeadLetter) error { dead = append(dead, d); return nil }); err != nil {
		t.Fatal(err)
	}
	switch {
	case len(dead) != 1:
		t.Fatalf("dead letters = %+v, want the poison record alone", dead)
	case dead[0].Sink != "splunk" || dead[0].Seq != pos+1:
		t.Errorf("dead letter of sink %q at seq %d, want splunk at %d", dead[0].Sink, dead[0].Seq, pos+1)
	case !strings.Contains(dead[0].Reason, `code 7 "Incorrect index"`):
		t.Errorf("dead letter reason %q does not carry Splunk's answer (code 7 \"Incorrect index\")", dead[0].Reason)
	}
	if d := sinktest.Diff([]record.Record{dead[0].Record}, []record.Record{poison}); d != "" {
		t.Errorf("dead-lettered record differs from the poison record: %s", d)
	}

	// Every other record in store order, first deliveries; a repeat is the
	// same record (the events Splunk indexed before the refused one).
	byID := map[string]record.Record{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	var got []record.Record
	for _, ev := range hec.Events("") {
		var r record.Record
		if err := json.Unmarshal(ev.Event, &r); err != nil {
			t.Fatalf("event %.80q is not a record envelope: %v", ev.Event, err)
		}
		if r.ID == poison.ID {
			t.Fatalf("the poison record was indexed (index %q)", ev.Index)
		}
		if d := sinktest.Diff([]record.Record{r}, []record.Record{byID[r.ID]}); d != "" {
			t.Fatalf("an indexed event differs from its record: %s", d)
		}
		got = append(got, r)
	}
	want := append(sinktest.Clone(recs[:pos]), recs[pos+1:]...)
	if d := sinktest.Diff(firsts(got), want); d != "" {
		t.Errorf("delivered records differ:\n%s", d)
	}
	t.Logf("%d events indexed for %d records (%d repeated by the resend)", len(got), n-1, len(got)-(n-1))

	l := h.sh.loops[0]
	if got := testutil.ToFloat64(l.m.dead); got != 1 {
		t.Errorf("dead-letter metric = %v, want 1", got)
	}
	if w := h.waitsOf("splunk"); len(w) != 0 {
		t.Errorf("the refused record cost backoff waits %v", w)
	}
}
