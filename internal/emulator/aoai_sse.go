package emulator

import (
	"bytes"
	"errors"
	"net/http"
	"time"
)

// errAOAIClientGone ends a stream whose client left.
var errAOAIClientGone = errors.New("client gone")

// aoaiSSE writes one server-sent event stream: each event flushed at once,
// token events paced, and an injected reset honoured.
type aoaiSSE struct {
	c        *aoaiCall
	rc       *http.ResponseController
	events   int
	resetAt  int           // abort after this many events; 0 never
	interval time.Duration // wait before each token event
}

// startSSE sends the stream headers (aoai-chat-stream-include-usage.request-and-headers.json).
func (c *aoaiCall) startSSE(tokens int) *aoaiSSE {
	c.setSuccessHeaders(tokens)
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	if c.flavor == aoaiOpenAI {
		h.Set("Content-Type", "text/event-stream") // INFERRED
	}
	c.writeHeader(http.StatusOK)
	s := &aoaiSSE{c: c, rc: http.NewResponseController(c.w), resetAt: c.fault.ResetAfterEvents}
	if tps := c.a.cfg.TokensPerSecond; tps > 0 {
		s.interval = time.Duration(float64(time.Second) / tps)
	}
	_ = s.rc.Flush()
	return s
}

// send writes one event: "event: name" first when name is not empty, then
// "data: json". It returns an error when the stream must stop.
func (s *aoaiSSE) send(name string, v any) error {
	var buf bytes.Buffer
	if name != "" {
		buf.WriteString("event: " + name + "\n")
	}
	buf.WriteString("data: ")
	buf.Write(aoaiMarshal(v))
	buf.WriteString("\n\n")
	if _, err := s.c.w.Write(buf.Bytes()); err != nil {
		return errAOAIClientGone
	}
	if err := s.rc.Flush(); err != nil {
		return errAOAIClientGone
	}
	s.events++
	if s.resetAt > 0 && s.events >= s.resetAt {
		aoaiAbort(s.c.w)
	}
	return nil
}

// token paces then sends one token event.
func (s *aoaiSSE) token(name string, v any) error {
	if err := s.c.wait(s.interval); err != nil {
		return errAOAIClientGone
	}
	return s.send(name, v)
}

// done ends a chat or completions stream with [DONE]; with a reset
// pending, it aborts instead, so the client never sees [DONE].
func (s *aoaiSSE) done(withDone bool) {
	if s.resetAt > 0 {
		aoaiAbort(s.c.w)
	}
	if withDone {
		_, _ = s.c.w.Write([]byte("data: [DONE]\n\n"))
		_ = s.rc.Flush()
	}
}

// aoaiAbort closes the connection under the response at once: hijacked and
// closed where the server allows it (HTTP/1), else the handler is aborted,
// which resets the HTTP/2 stream. It does not return.
func aoaiAbort(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
	}
	panic(http.ErrAbortHandler)
}
