package usage

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

const (
	fixtureChat         = "aoai-chat-completion.recorded.json"
	fixtureEmbeddings   = "aoai-embeddings.recorded.json"
	fixtureResponses    = "aoai-responses-api.docs-sample.json"
	fixture400          = "aoai-error-400-content-filter.recorded.json"
	fixture401          = "aoai-error-401-bad-key.recorded.json"
	fixture404          = "aoai-error-404-deployment-not-found.recorded.json"
	fixtureStream       = "aoai-chat-stream.recorded.sse.txt"
	fixtureStreamUsage  = "aoai-chat-stream-include-usage.recorded.sse.txt"
	fixtureStreamUsageX = "aoai-chat-stream-include-usage.request-and-headers.json"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorded returns a member ("RequestBody", "ResponseBody") of a fixture in
// the SDK recording format, as raw JSON.
func recorded(t testing.TB, name, member string) []byte {
	t.Helper()
	v := gjson.GetBytes(readFixture(t, name), member)
	if !v.IsObject() {
		t.Fatalf("%s has no %s object", name, member)
	}
	return []byte(v.Raw)
}

// fixedClock is a StreamOptions.Now that always returns the same time, so
// that Results of different runs compare equal.
var epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func fixedClock() time.Time { return epoch }

// readStream passes data through a Stream, reading it through wrap (nil:
// as it is) with reads of size buf, and returns what came out.
func readStream(t testing.TB, op string, data []byte, opts StreamOptions, wrap func(io.Reader) io.Reader, buf int) ([]byte, *Stream) {
	t.Helper()
	var r io.Reader = bytes.NewReader(data)
	if wrap != nil {
		r = wrap(r)
	}
	if opts.Now == nil {
		opts.Now = fixedClock
	}
	s := NewStream(op, io.NopCloser(r), opts)
	var out bytes.Buffer
	p := make([]byte, buf)
	for {
		n, err := s.Read(p)
		out.Write(p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	return out.Bytes(), s
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// sizesReader returns reads whose sizes cycle through sizes (0 counts as 1).
type sizesReader struct {
	r     io.Reader
	sizes []byte
	i     int
}

func (c *sizesReader) Read(p []byte) (int, error) {
	n := 1
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)]) + 1
		c.i++
	}
	if len(p) > n {
		p = p[:n]
	}
	return c.r.Read(p)
}

// events splits an SSE text into its events, each with its blank line.
func events(data string) []string {
	var evs []string
	for data != "" {
		i := bytes.Index([]byte(data), []byte("\n\n"))
		if i < 0 {
			evs = append(evs, data)
			break
		}
		evs = append(evs, data[:i+2])
		data = data[i+2:]
	}
	return evs
}
