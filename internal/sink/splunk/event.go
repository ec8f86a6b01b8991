package splunk

import (
	"fmt"
	"strconv"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tidwall/gjson"
)

// span is one request: events [from, to) of the batch.
type span struct{ from, to int }

// encode appends the HEC event of every record to s.buf and returns where
// each one ends. It refuses the batch before anything is sent if a record's
// data is not JSON or its event alone is over MaxRequestBytes.
func (s *Sink) encode(recs []record.Record) (ends []int, err error) {
	s.buf = s.buf[:0]
	ends = make([]int, len(recs))
	var over []int
	overSize := 0
	for i := range recs {
		r := &recs[i]
		// The envelope carries the data byte for byte (DESIGN.md §5); data
		// that is not JSON would break the request for every event in it.
		if len(r.Data) > 0 && !gjson.ValidBytes(r.Data) {
			return nil, sink.InvalidRecords(nil, fmt.Sprintf("record %q has data that is not valid JSON", r.ID), i)
		}
		start := len(s.buf)
		s.buf = s.appendEvent(s.buf, r)
		ends[i] = len(s.buf)
		if n := ends[i] - start; n > s.maxBytes {
			over = append(over, i)
			overSize = n
		}
	}
	if len(over) > 0 {
		reason := fmt.Sprintf("record of %d bytes is over the destination's %d-byte limit", overSize, s.maxBytes)
		if len(over) > 1 {
			reason = fmt.Sprintf("%d records are over the destination's %d-byte limit (the last one has %d bytes)", len(over), s.maxBytes, overSize)
		}
		return nil, sink.InvalidRecords(nil, reason, over...)
	}
	return ends, nil
}

// appendEvent appends r as one HEC event:
// {<metadata>,"time":S.NNNNNNNNN,"event":<envelope>,"fields":{"id":…,"kind":…}}.
func (s *Sink) appendEvent(dst []byte, r *record.Record) []byte {
	dst = append(dst, s.prefix(r.Kind)...)
	// HEC reads time as epoch seconds with a fraction; a time before 1970
	// is left out (Splunk then uses the time of receipt): the envelope keeps
	// the exact time either way.
	if sec := r.Time.Unix(); sec >= 0 {
		dst = append(dst, `"time":`...)
		dst = strconv.AppendInt(dst, sec, 10)
		ns := r.Time.Nanosecond()
		dst = append(dst, '.')
		for d := 100_000_000; d > 0; d /= 10 {
			dst = append(dst, byte('0'+ns/d%10))
		}
		dst = append(dst, ',')
	}
	dst = append(dst, `"event":`...)
	dst = record.AppendJSON(dst, *r)
	dst = append(dst, `,"fields":{"id":`...)
	dst = record.AppendString(dst, r.ID)
	dst = append(dst, `,"kind":`...)
	dst = record.AppendString(dst, string(r.Kind))
	return append(dst, "}}"...)
}

// prefix returns `{"host":…,"source":…,"sourcetype":…,"index":…,` for kind,
// leaving out what is empty, built once per kind.
func (s *Sink) prefix(kind record.Kind) []byte {
	if p, ok := s.prefixes[kind]; ok {
		return p
	}
	p := []byte{'{'}
	field := func(name, v string) {
		if v != "" {
			p = append(p, '"')
			p = append(p, name...)
			p = append(p, `":`...)
			p = record.AppendString(p, v)
			p = append(p, ',')
		}
	}
	field("host", s.host)
	field("source", s.source)
	st, ok := s.types[kind]
	if !ok {
		st = "tapline:" + string(kind)
	}
	field("sourcetype", st)
	ix, ok := s.indexes[kind]
	if !ok {
		ix = s.index
	}
	field("index", ix)
	s.prefixes[kind] = p
	return p
}

// pack cuts the batch into consecutive requests of at most s.maxBytes
// (every event fits alone: encode checked).
func (s *Sink) pack(ends []int) []span {
	var out []span
	from, start := 0, 0
	for i, end := range ends {
		if i > from && end-start > s.maxBytes {
			out = append(out, span{from, i})
			from, start = i, ends[i-1]
		}
	}
	return append(out, span{from, len(ends)})
}

// body returns the bytes of the events of rq.
func (s *Sink) body(rq span, ends []int) []byte {
	start := 0
	if rq.from > 0 {
		start = ends[rq.from-1]
	}
	return s.buf[start:ends[rq.to-1]]
}
