package usage

import (
	"bytes"
	"io"
	"sync"
	"time"

	"github.com/tapline/tapline/internal/record"
)

const (
	// maxEvent caps the bytes of one event held for parsing. A longer event
	// is passed through unparsed and counted (Stream.Skipped).
	maxEvent = 1 << 20
	// keepEvent is the largest event buffer kept between events; a larger
	// one, grown for a rare big event, is released so it is not pinned for
	// the rest of a long stream.
	keepEvent = 64 << 10
	// readSize is the upstream read buffer with DropUsage.
	readSize = 16 << 10
)

// StreamOptions configure a Stream.
type StreamOptions struct {
	// DropUsage says the gateway injected stream_options.include_usage
	// (InjectIncludeUsage): the usage-only chunk is removed, and the
	// "usage" member from every other chunk, so that the caller gets byte
	// for byte what it would have got without the injection. Only chat and
	// completions streams carry these; Responses API streams pass unchanged.
	DropUsage bool
	// MaxText caps the assembled output text kept in Result.Text; 0 keeps
	// none. Result.TextBytes counts it all.
	MaxText int
	// Now is the clock for FirstToken; nil means time.Now.
	Now func() time.Time
}

// Stream is an io.ReadCloser that passes a server-sent events response
// (Content-Type: text/event-stream) through while parsing it on the side.
//
// Read never waits for more upstream data when it has bytes to return, so
// each token reaches the caller as soon as it arrives: without DropUsage,
// every upstream read is returned as it is; with DropUsage, at most the one
// incomplete event is held back. Memory stays flat with stream length: at
// most one event is held (up to 1 MiB), plus the text kept (MaxText).
//
// Read and Close must not be called concurrently with each other; Result,
// FirstToken, Done, Events and Skipped may be called at any time, from any
// goroutine, also while a Read is blocked upstream.
type Stream struct {
	r    io.ReadCloser
	op   string
	drop bool
	now  func() time.Time

	// Framing, owned by Read.
	line     lineState
	ev       []byte // the current event's bytes so far
	oversize bool   // the current event passed maxEvent: not held, not parsed
	ended    bool   // the end of the upstream was handled
	joined   []byte // data of an event with several data lines

	// DropUsage only, owned by Read.
	inbuf *[]byte // from readBufs, returned at the end of the stream
	in    []byte  // upstream bytes not yet framed
	out   []byte  // bytes ready for the caller
	outEv bool    // out is (a part of) ev: reset ev once it is sent
	rerr  error   // the upstream's error, returned once in and out are empty

	mu      sync.Mutex
	c       collector
	first   time.Time
	done    bool
	events  int
	skipped int
}

var _ io.ReadCloser = (*Stream)(nil)

// readBufs are the upstream read buffers of DropUsage streams, shared
// because a gateway runs many streams and each needs one only while it
// lasts.
var readBufs = sync.Pool{New: func() any {
	b := make([]byte, readSize)
	return &b
}}

// NewStream returns a Stream reading r, a response body of operation op
// (one of the record.Op* constants). op selects the Responses API event
// shapes for record.OpResponses; any other op is read as chat or
// completions chunks. Closing the Stream closes r.
func NewStream(op string, r io.ReadCloser, opts StreamOptions) *Stream {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Stream{
		r:    r,
		op:   op,
		drop: opts.DropUsage && op != record.OpResponses,
		now:  now,
		c:    collector{maxText: opts.MaxText},
	}
}

// Read implements io.Reader.
func (s *Stream) Read(p []byte) (int, error) {
	if s.drop {
		return s.readDrop(p)
	}
	n, err := s.r.Read(p)
	if n > 0 && n <= len(p) {
		s.feed(p[:n])
	}
	if err == io.EOF {
		s.finish()
	}
	return n, err
}

// Close closes the upstream body.
func (s *Stream) Close() error {
	return s.r.Close()
}

// Result returns the facts seen so far; it is valid mid-stream too, for
// example after the client or the upstream went away.
func (s *Stream) Result() Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c.result()
}

// FirstToken returns when the first event carrying output (a content, text
// or refusal delta, or a tool-call delta) passed; zero if none has.
func (s *Stream) FirstToken() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

// Done reports whether the terminal event was seen: data [DONE], or for
// the Responses API response.completed, response.failed or
// response.incomplete. A stream that ends without it was cut short.
func (s *Stream) Done() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Events returns the number of events with data seen so far, including
// those skipped.
func (s *Stream) Events() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events
}

// Skipped returns the number of events longer than 1 MiB that were passed
// through without being parsed.
func (s *Stream) Skipped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped
}

// feed frames and parses bytes already passed to the caller.
func (s *Stream) feed(b []byte) {
	for len(b) > 0 {
		st, k, end := s.line.scan(b)
		s.line = st
		if !s.oversize {
			if len(s.ev)+k > maxEvent {
				s.oversize = true
				s.ev = s.ev[:0]
			} else {
				s.ev = append(s.ev, b[:k]...)
			}
		}
		b = b[k:]
		if end {
			s.dispatch()
			s.resetEvent()
		}
	}
}

// finish handles the end of the upstream: an event without its final
// blank line is parsed all the same.
func (s *Stream) finish() {
	if s.ended {
		return
	}
	s.ended = true
	if s.oversize || len(s.ev) > 0 {
		s.dispatch()
		s.resetEvent()
	}
}

// readDrop is Read with DropUsage: events are framed before they are
// passed on, so that the usage chunk can be left out. One Read hands over
// every complete event already received that fits in p (each write to the
// caller is a flush, so one event per Read would cost a syscall per
// token), but never waits for more once it has something to give.
func (s *Stream) readDrop(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	for {
		if len(s.out) > 0 {
			c := copy(p[n:], s.out)
			n += c
			s.out = s.out[c:]
			if len(s.out) == 0 && s.outEv {
				s.outEv = false
				s.resetEvent()
			}
			if n == len(p) {
				return n, nil
			}
			continue
		}
		if len(s.in) > 0 {
			s.step()
			continue
		}
		if n > 0 {
			return n, nil
		}
		if s.rerr != nil {
			if !s.ended {
				s.ended = true
				switch {
				case s.rerr == io.EOF && (s.oversize || len(s.ev) > 0):
					s.emit(s.dispatch())
				case len(s.ev) > 0:
					// Cut short: pass the partial event on unparsed, as the
					// caller would have got it.
					s.emit(s.ev)
				}
				continue
			}
			if s.inbuf != nil { // in and out are empty: nothing refers to it
				readBufs.Put(s.inbuf)
				s.inbuf = nil
			}
			return 0, s.rerr
		}
		if s.inbuf == nil {
			s.inbuf = readBufs.Get().(*[]byte)
		}
		buf := *s.inbuf
		n, err := s.r.Read(buf)
		n = max(0, min(n, len(buf)))
		s.in, s.rerr = buf[:n], err
		if n == 0 && err == nil {
			return 0, nil
		}
	}
}

// step frames the bytes in s.in up to the end of the current event.
func (s *Stream) step() {
	st, k, end := s.line.scan(s.in)
	if s.oversize {
		// Past maxEvent: pass the rest of this event through as it comes.
		s.line = st
		s.out, s.in = s.in[:k], s.in[k:]
		if end {
			s.dispatch()
			s.resetEvent()
		}
		return
	}
	if len(s.ev)+k > maxEvent {
		// Send what is held and pass the rest through unparsed. The line
		// state is not advanced: the next step frames these bytes again.
		s.oversize = true
		if len(s.ev) > 0 {
			s.out, s.outEv = s.ev, true
		}
		return
	}
	s.line = st
	s.ev = append(s.ev, s.in[:k]...)
	s.in = s.in[k:]
	if end {
		s.emit(s.dispatch())
	}
}

// emit makes b, which is ev or a part of it, the bytes to send.
func (s *Stream) emit(b []byte) {
	if len(b) == 0 {
		s.resetEvent()
		return
	}
	s.out, s.outEv = b, true
}

// resetEvent empties the event buffer.
func (s *Stream) resetEvent() {
	if cap(s.ev) > keepEvent {
		s.ev = nil
	} else {
		s.ev = s.ev[:0]
	}
	if cap(s.joined) > keepEvent {
		s.joined = nil
	}
}

// dispatch ends the current event: it parses it and returns the bytes to
// send on for it with DropUsage: ev as it is, ev with the usage member cut
// out, or nothing for the usage-only chunk (and for an oversize event,
// whose bytes were already sent).
func (s *Stream) dispatch() []byte {
	ev := s.ev
	if s.oversize {
		s.oversize = false
		s.mu.Lock()
		s.events++
		s.skipped++
		s.mu.Unlock()
		return nil
	}
	f := parseFields(ev, &s.joined)
	if !f.hasData {
		return ev
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events++
	if string(f.data) == "[DONE]" {
		s.done = true
		return ev
	}
	js := bytesString(f.data)
	if s.op == record.OpResponses || bytes.HasPrefix(f.name, []byte("response.")) {
		output, done := s.c.responseEvent(bytesString(f.name), js)
		s.output(output)
		s.done = s.done || done
		return ev
	}
	output, um := s.c.chunk(js)
	s.output(output)
	// Cut only from a well-formed chunk, and only a chunk on one data line
	// (as Azure and OpenAI send them all).
	if !s.drop || !um.present || !um.wellFormed || f.dataOff < 0 {
		return ev
	}
	if um.object && !um.choices {
		return nil // the usage-only chunk
	}
	start, end := memberSpan(js, um.keyAt, um.valEnd)
	if end == 0 {
		return ev
	}
	a, b := f.dataOff+start, f.dataOff+end
	n := copy(ev[a:], ev[b:])
	return ev[:a+n]
}

// output records the first output event's time. s.mu is held.
func (s *Stream) output(output bool) {
	if output && s.first.IsZero() {
		s.first = s.now()
	}
}

// lineState is the framing state: the length of the current line so far
// and its first byte.
type lineState struct {
	n     int
	first byte
}

// scan returns how many bytes of b belong to the current event, whether
// the event ends with them (a blank line: "\n" or "\r\n"), and the line
// state after them.
func (l lineState) scan(b []byte) (lineState, int, bool) {
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			if rest := b[i:]; len(rest) > 0 {
				if l.n == 0 {
					l.first = rest[0]
				}
				l.n += len(rest)
			}
			return l, len(b), false
		}
		n, first := l.n+j, l.first
		if l.n == 0 && j > 0 {
			first = b[i]
		}
		i += j + 1
		l = lineState{}
		if n == 0 || n == 1 && first == '\r' {
			return l, i, true
		}
	}
}

// fields are the parts of one event that matter here.
type fields struct {
	name    []byte // the event: field
	data    []byte // the data: fields, joined by "\n"
	dataOff int    // offset of data in the event; -1 when joined
	hasData bool
}

// parseFields splits an event into its fields (the SSE format: "field:
// value" lines, one optional space after the colon, ":" comments). joined
// is scratch space for data spread over several lines.
func parseFields(ev []byte, joined *[]byte) fields {
	f := fields{dataOff: -1}
	ndata := 0
	for off := 0; off < len(ev); {
		start := off
		line := ev[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
			off += i + 1
		} else {
			off = len(ev)
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 || line[0] == ':' {
			continue
		}
		name, value, voff := line, []byte(nil), start+len(line)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value, voff = line[:i], line[i+1:], start+i+1
			if len(value) > 0 && value[0] == ' ' {
				value, voff = value[1:], voff+1
			}
		}
		switch string(name) {
		case "data":
			ndata++
			switch ndata {
			case 1:
				f.data, f.dataOff = value, voff
			case 2:
				*joined = append(append(append((*joined)[:0], f.data...), '\n'), value...)
				f.data, f.dataOff = *joined, -1
			default:
				*joined = append(append(*joined, '\n'), value...)
				f.data = *joined
			}
		case "event":
			f.name = value
		}
	}
	f.hasData = ndata > 0
	return f
}
