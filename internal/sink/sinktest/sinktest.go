// Package sinktest is the conformance suite that every sink.Sink passes.
package sinktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
)

// Target is one sink on its own destination.
type Target struct {
	// Sink writes to the destination. The suite closes it.
	Sink sink.Sink
	// Delivered returns every record the destination holds, in destination
	// order, duplicates included.
	Delivered func(t *testing.T) []record.Record
}

// Harness adapts one sink implementation to the suite.
type Harness struct {
	// New returns a sink on a fresh, empty destination. It is called once
	// per case; it should register its own cleanup with t.Cleanup.
	New func(t *testing.T) Target
	// MaxRecordBytes is the size limit the destination puts on one record,
	// 0 if it has none worth testing. The suite then writes a record with
	// data of 90% of it, which must arrive whole, and one with data over
	// it, which Write must refuse with a *sink.InvalidError naming its
	// index, before writing anything of the batch.
	MaxRecordBytes int
}

// Run runs the conformance suite as subtests of t. Calls to the sink are
// never concurrent, as the Sink contract promises, so the suite does not
// test concurrent use.
func Run(t *testing.T, h Harness) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"EmptyBatchIsNoOp", testEmpty},
		{"OneBatchBothKinds", testOneBatch},
		{"BatchesInOrder", testBatchesInOrder},
		{"RetriedBatch", testRetriedBatch},
		{"DoesNotRetain", testDoesNotRetain},
		{"LargePayload", testLargePayload},
		{"WriteAfterClose", testWriteAfterClose},
		{"Check", testCheck},
		{"RecordSizeLimit", testRecordSizeLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, h) })
	}
}

// Records returns n test records starting at number first, alternating the
// two kinds. Data is compact JSON with nesting, unicode and a number beyond
// 2^53, which a sink must keep byte for byte (DESIGN.md §5).
func Records(first, n int) []record.Record {
	base := time.Date(2026, 11, 22, 21, 0, 0, 123456789, time.UTC)
	recs := make([]record.Record, 0, n)
	for i := first; i < first+n; i++ {
		r := record.Record{
			ID:   fmt.Sprintf("rec-%06d", i),
			Time: base.Add(time.Duration(i) * time.Millisecond),
		}
		if i%2 == 0 {
			r.Kind, r.Version = record.KindGatewayRequest, record.GatewayRequestVersion
			r.Data = json.RawMessage(fmt.Sprintf(
				`{"request_id":"req-%d","status":200,"usage":{"prompt_tokens":%d,"total_tokens":1.5e3},"prompt":"héllo \u2028 wörld"}`, i, i))
		} else {
			r.Kind, r.Version = record.KindActivityLog, record.ActivityLogVersion
			r.Data = json.RawMessage(fmt.Sprintf(
				`{"event_data_id":"ev-%d","event":{"big":12345678901234567890123,"nested":[1,{"a":null}],"n":%d}}`, i, i))
		}
		recs = append(recs, r)
	}
	return recs
}

// Clone returns a deep copy of recs.
func Clone(recs []record.Record) []record.Record {
	out := make([]record.Record, len(recs))
	for i, r := range recs {
		r.Data = bytes.Clone(r.Data)
		out[i] = r
	}
	return out
}

// Diff describes how got differs from want, or returns "" if every record
// has the same id, kind, version, instant and byte-equal data, in order.
func Diff(got, want []record.Record) string {
	var b strings.Builder
	if len(got) != len(want) {
		fmt.Fprintf(&b, "got %d records, want %d\n", len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		if d := diffOne(got[i], want[i]); d != "" {
			fmt.Fprintf(&b, "record %d: %s\n", i, d)
			if b.Len() > 2000 {
				break
			}
		}
	}
	return b.String()
}

func diffOne(g, w record.Record) string {
	var d []string
	if g.ID != w.ID {
		d = append(d, fmt.Sprintf("id %q, want %q", g.ID, w.ID))
	}
	if g.Kind != w.Kind {
		d = append(d, fmt.Sprintf("kind %q, want %q", g.Kind, w.Kind))
	}
	if g.Version != w.Version {
		d = append(d, fmt.Sprintf("version %d, want %d", g.Version, w.Version))
	}
	if !g.Time.Equal(w.Time) {
		d = append(d, fmt.Sprintf("time %s, want %s", g.Time.Format(time.RFC3339Nano), w.Time.Format(time.RFC3339Nano)))
	}
	if !bytes.Equal(g.Data, w.Data) {
		d = append(d, fmt.Sprintf("data %.200q, want %.200q", g.Data, w.Data))
	}
	return strings.Join(d, "; ")
}

func write(t *testing.T, s sink.Sink, recs []record.Record) {
	t.Helper()
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write(%d records): %v", len(recs), err)
	}
}

func closeSink(t *testing.T, s sink.Sink) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func testEmpty(t *testing.T, h Harness) {
	tg := h.New(t)
	write(t, tg.Sink, nil)
	write(t, tg.Sink, []record.Record{})
	if got := tg.Delivered(t); len(got) != 0 {
		t.Errorf("empty writes delivered %d records", len(got))
	}
	closeSink(t, tg.Sink)
}

func testOneBatch(t *testing.T, h Harness) {
	tg := h.New(t)
	recs := Records(0, 10)
	write(t, tg.Sink, recs)
	if d := Diff(tg.Delivered(t), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
	closeSink(t, tg.Sink)
}

func testBatchesInOrder(t *testing.T, h Harness) {
	tg := h.New(t)
	var want []record.Record
	for b := range 5 {
		recs := Records(b*7, 7)
		write(t, tg.Sink, recs)
		want = append(want, recs...)
	}
	if d := Diff(tg.Delivered(t), want); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
	closeSink(t, tg.Sink)
}

// testRetriedBatch writes a batch twice, as the shipper does after an
// unknown outcome: duplicates are allowed, but each is the same record under
// the same id, and the first occurrences keep the write order.
func testRetriedBatch(t *testing.T, h Harness) {
	tg := h.New(t)
	a, b := Records(0, 5), Records(5, 5)
	write(t, tg.Sink, a)
	write(t, tg.Sink, a)
	write(t, tg.Sink, b)
	want := append(Clone(a), b...)
	byID := make(map[string]record.Record, len(want))
	for _, r := range want {
		byID[r.ID] = r
	}
	var first []record.Record
	seen := map[string]bool{}
	for i, r := range tg.Delivered(t) {
		w, ok := byID[r.ID]
		if !ok {
			t.Errorf("delivered record %d has unknown id %q", i, r.ID)
			continue
		}
		if d := diffOne(r, w); d != "" {
			t.Errorf("duplicate of %q differs: %s", r.ID, d)
		}
		if !seen[r.ID] {
			seen[r.ID] = true
			first = append(first, r)
		}
	}
	if d := Diff(first, want); d != "" {
		t.Errorf("first occurrences differ (lost or reordered):\n%s", d)
	}
	closeSink(t, tg.Sink)
}

// testDoesNotRetain mutates the slice and the records' Data after Write
// returns: a sink that kept references would deliver the mutation.
func testDoesNotRetain(t *testing.T, h Harness) {
	tg := h.New(t)
	recs := Records(0, 6)
	want := Clone(recs)
	write(t, tg.Sink, recs)
	for i := range recs {
		for j := range recs[i].Data {
			recs[i].Data[j] = 'X'
		}
		recs[i].ID = "mutated"
		recs[i].Kind = "mutated"
	}
	recs[0] = record.Record{ID: "replaced"}
	more := Records(6, 2)
	write(t, tg.Sink, more)
	want = append(want, more...)
	if d := Diff(tg.Delivered(t), want); d != "" {
		t.Errorf("delivered differs after the caller reused its records:\n%s", d)
	}
	closeSink(t, tg.Sink)
}

func testLargePayload(t *testing.T, h Harness) {
	tg := h.New(t)
	recs := Records(0, 3)
	recs[1].Data = json.RawMessage(`{"blob":"` + strings.Repeat("abcdefgh", 256<<10/8) + `"}`)
	write(t, tg.Sink, recs)
	if d := Diff(tg.Delivered(t), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
	closeSink(t, tg.Sink)
}

func testWriteAfterClose(t *testing.T, h Harness) {
	tg := h.New(t)
	write(t, tg.Sink, Records(0, 1))
	closeSink(t, tg.Sink)
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("Write after Close panicked: %v", p)
			}
		}()
		return tg.Sink.Write(context.Background(), Records(1, 1))
	}()
	if err == nil {
		t.Errorf("Write after Close returned nil")
	}
}

func testCheck(t *testing.T, h Harness) {
	tg := h.New(t)
	c, ok := tg.Sink.(sink.Checker)
	if !ok {
		t.Skip("sink does not implement sink.Checker")
	}
	if err := c.Check(context.Background()); err != nil {
		t.Errorf("Check on a healthy destination: %v", err)
	}
	if got := tg.Delivered(t); len(got) != 0 {
		t.Errorf("Check wrote %d records", len(got))
	}
	closeSink(t, tg.Sink)
}

// Padded returns a record numbered i whose data is a JSON object of exactly
// size bytes (at least 16).
func Padded(i, size int) record.Record {
	r := Records(i, 1)[0]
	const head, tail = `{"pad":"`, `"}`
	pad := strings.Repeat("x", max(size-len(head)-len(tail), 0))
	r.Data = json.RawMessage(head + pad + tail)
	return r
}

func testRecordSizeLimit(t *testing.T, h Harness) {
	if h.MaxRecordBytes == 0 {
		t.Skip("the destination has no per-record size limit")
	}
	tg := h.New(t)
	near := []record.Record{Records(0, 1)[0], Padded(1, h.MaxRecordBytes*9/10), Records(2, 1)[0]}
	write(t, tg.Sink, near)

	over := []record.Record{Records(3, 1)[0], Padded(4, h.MaxRecordBytes+1), Records(5, 1)[0]}
	err := tg.Sink.Write(context.Background(), over)
	var inv *sink.InvalidError
	switch {
	case !errors.As(err, &inv):
		t.Fatalf("Write with a record over the limit: error %v, want *sink.InvalidError", err)
	case len(inv.Indexes) != 1 || inv.Indexes[0] != 1:
		t.Errorf("InvalidError.Indexes = %v, want [1]", inv.Indexes)
	case inv.Reason == "":
		t.Errorf("InvalidError has no reason")
	}
	if _, ok := sink.Retryable(err); ok {
		t.Errorf("a record over the limit is marked retryable")
	}
	rest := []record.Record{over[0], over[2]}
	write(t, tg.Sink, rest)
	if d := Diff(tg.Delivered(t), append(Clone(near), rest...)); d != "" {
		t.Errorf("delivered differs (the near-limit record must arrive whole, nothing of the refused batch):\n%s", d)
	}
	closeSink(t, tg.Sink)
}
