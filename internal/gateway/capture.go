package gateway

import (
	"regexp"
	"unicode/utf8"
	"unsafe"

	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/record"
)

// capturer turns prompt and response bytes into recorded content according
// to gateway.capture, gateway.redact and gateway.max_capture_bytes.
type capturer struct {
	mode  string
	max   int
	rules []*regexp.Regexp
}

func newCapturer(g *config.Gateway) *capturer {
	c := &capturer{mode: g.Capture, max: int(g.MaxCaptureBytes)}
	for _, r := range g.Redact {
		c.rules = append(c.rules, regexp.MustCompile(r.Pattern)) // validated by config
	}
	return c
}

// capture records b (text) under the policy: nil for none, sizes only for
// metadata, redacted and truncated text for full. The text is b's memory,
// not a copy: b must hold still until the record is encoded (the call's
// buffers go back to their pool only once end has encoded it).
func (c *capturer) capture(b []byte, total int64) *record.Content {
	switch c.mode {
	case config.CaptureNone:
		return nil
	case config.CaptureMetadata:
		return &record.Content{Bytes: total, Omitted: "capture: metadata"}
	}
	out := &record.Content{Bytes: total}
	if int64(len(b)) < total {
		out.Truncated = true // the caller kept less than the whole body
	}
	for _, re := range c.rules {
		n := 0
		b = re.ReplaceAllFunc(b, func([]byte) []byte { n++; return redacted })
		out.Redactions += n
	}
	if len(b) > c.max {
		b = truncateUTF8(b, c.max)
		out.Truncated = true
	}
	out.Text = unsafe.String(unsafe.SliceData(b), len(b))
	return out
}

// omitted records content that is not text (audio, images, multipart).
func (c *capturer) omitted(total int64, why string) *record.Content {
	if c.mode == config.CaptureNone {
		return nil
	}
	return &record.Content{Bytes: total, Omitted: why}
}

var redacted = []byte("[REDACTED]")

// truncateUTF8 cuts b to at most n bytes without splitting a rune.
func truncateUTF8(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[:n]
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return b
}
