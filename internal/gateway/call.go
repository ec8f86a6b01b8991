package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/google/uuid"

	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/usage"
)

// call is the state of one call through the gateway. It is used by one
// goroutine at a time: ServeHTTP and the ReverseProxy hooks it calls.
type call struct {
	g           *Gateway
	id          string
	start       time.Time
	clientCtx   context.Context
	peerTrusted bool
	contentType string
	rec         record.GatewayRequest

	route      route
	info       usage.Request
	body       []byte // the caller's body, as received
	outBody    []byte // what the backend gets
	jsonBody   bool
	dropUsage  bool
	baseBody   []byte     // outBody before its backend-specific changes
	inURL      *url.URL   // the caller's URL, which each backend maps anew
	backend    *backend   // the backend tried last, which answered
	candidates []*backend // the pool's order for this call
	tried      []record.Attempt
	credName   string
	credValue  string

	headersAt    time.Time
	respStatus   int // what the caller was answered, after refusal mapping
	respType     string
	retryAfterMS int64
	tap          *tap
	stream       *usage.Stream
	upstreamErr  error
	refused      bool
	bufs         []*bytes.Buffer

	decision ratelimit.Decision // the limit step's, when admitted
	limit    record.Limit       // what rec.Limit points to, when it is set
	admitted bool               // admitted by the limit step: its headers go on the response
	reserved bool               // admitted with tokens reserved: reconcile at the end
}

func (g *Gateway) newCall(r *http.Request) *call {
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	c := &call{g: g, id: id.String(), start: g.now(), clientCtx: r.Context(),
		contentType: r.Header.Get("Content-Type")}
	xff := strings.Join(r.Header.Values("X-Forwarded-For"), ", ")
	c.rec = record.GatewayRequest{
		RequestID:    c.id,
		Start:        c.start.UTC(),
		ClientIP:     clientIP(r.RemoteAddr, xff, g.trusted),
		ForwardedFor: xff,
		UserAgent:    r.UserAgent(),
		Method:       r.Method,
		Path:         r.URL.Path,
		Operation:    record.OpOther,
		RequestBytes: max(r.ContentLength, 0),
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			c.peerTrusted = isTrusted(a.Unmap(), g.trusted)
		}
	}
	return c
}

// refuse answers a call the gateway will not forward, and marks it denied.
func (c *call) refuse(w http.ResponseWriter, status int, code, message string) {
	c.refused = true
	c.fail(w, status, code, message)
}

// fail answers with an error made by the gateway and records it.
func (c *call) fail(w http.ResponseWriter, status int, code, message string) {
	c.rec.Status = status
	if code == "" {
		code = strconv.Itoa(status)
	}
	c.rec.Error = &record.Error{Code: code, Message: message}
	writeError(w, status, code, message)
}

// marshal renders the record in the given state into buf.
func (c *call) marshal(state string, buf *bytes.Buffer) record.Record {
	c.rec.State = state
	// Room for the whole record, so that the encoder appends in place
	// instead of growing a copy that buf.Write then copies again: 1 KB of
	// fields, and the captured content with some escaping.
	n := 1 << 10
	for _, t := range []*record.Content{c.rec.Prompt, c.rec.Response} {
		if t != nil {
			n += len(t.Text) + len(t.Text)/4
		}
	}
	buf.Grow(n)
	buf.Write(record.AppendGatewayRequest(buf.AvailableBuffer(), &c.rec))
	return record.Record{ID: c.id, Kind: record.KindGatewayRequest, Version: record.GatewayRequestVersion,
		Time: c.start.UTC(), Data: buf.Bytes(), Encoded: true, Gateway: &c.rec}
}

// end completes the record of a call and queues it for the store's next
// group commit: the caller does not wait for that commit. Under strict
// audit the started record was committed before forwarding; this one
// replaces it in place. The queueing runs on a context cut loose from the
// caller's, so a caller that left still gets its call recorded.
func (g *Gateway) end(c *call, w http.ResponseWriter) {
	defer func() {
		for _, b := range c.bufs {
			putBuffer(b)
		}
	}()
	// The caller has its whole answer before the record is worked out: a
	// small response would otherwise wait in the server's write buffer
	// until the handler returns.
	if c.clientCtx.Err() == nil {
		_ = http.NewResponseController(w).Flush()
	}
	g.settle(c)
	// No deadline: the store bounds its own wait for room in its queue.
	ctx := context.WithoutCancel(c.clientCtx)
	// The store keeps the buffer, uncopied, until the commit (record.Journal).
	buf := getBuffer()
	done := func(err error) {
		putBuffer(buf)
		g.recorded(err)
	}
	if err := g.journal.FinishAsync(ctx, c.marshal(c.rec.State, buf), done); err != nil {
		done(err)
	}
	if c.reserved {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		g.reconcile(ctx, c)
	}
}

// recorded handles the outcome of a record's commit. It runs on the store's
// writer goroutine, so it only counts and logs.
func (g *Gateway) recorded(err error) {
	switch {
	case err == nil:
	case !g.strict && errors.Is(err, record.ErrFull):
		n := g.dropped.Add(1)
		if now := time.Now().Unix(); g.lastDrop.Swap(now) != now {
			g.log.Warn("store full: call served but not recorded (standard audit)", "dropped", n)
		}
	default:
		g.log.Error("record call", "err", err)
	}
}

// settle works out the final state, status, usage and content of a call.
func (g *Gateway) settle(c *call) {
	now := g.now()
	rec := &c.rec
	rec.DurationMS = ms(now.Sub(c.start))
	if c.refused {
		rec.State = record.StateDenied
		return
	}
	var res usage.Result
	complete := false
	if c.stream != nil {
		res = c.stream.Result()
		complete = c.stream.Done()
		if ft := c.stream.FirstToken(); !ft.IsZero() {
			rec.TTFTMS = ptr(ms(ft.Sub(c.start)))
		}
	} else if c.tap != nil {
		complete = c.tap.eof
		if c.tap.buf != nil {
			// Without the output text, which only an estimate needs, and
			// most responses report their usage: read again below if not.
			res = usage.ParseJSON(c.route.op, c.tap.buf.Bytes(), 0)
		}
		if !c.tap.first.IsZero() {
			rec.TTFTMS = ptr(ms(c.tap.first.Sub(c.start)))
		}
	}
	if c.tap != nil {
		rec.ResponseBytes = c.tap.n
	}
	rec.ModelReturned = res.Model
	rec.FinishReasons = res.FinishReasons
	rec.ContentFilter = res.ContentFilter
	rec.Usage = res.Usage
	rec.Attempts = 1 + len(c.tried)
	rec.Tried = c.tried

	switch {
	case c.tap == nil && rec.Status == statusClientClosed:
		rec.State = record.StateInterrupted
		rec.Error = &record.Error{Code: "client_closed", Message: "the caller closed the connection before the backend answered"}
	case c.tap == nil: // the backend never answered: errorHandler set status and error
		rec.State = record.StateCompleted
	case !complete && c.clientCtx.Err() != nil:
		rec.Status = statusClientClosed
		rec.State = record.StateInterrupted
		rec.Error = &record.Error{Code: "client_closed",
			Message: fmt.Sprintf("the caller closed the connection after %d bytes of the response", c.tap.n)}
	case !complete:
		rec.Status = http.StatusBadGateway
		rec.State = record.StateInterrupted
		msg := fmt.Sprintf("the response from backend %s ended early, after %d bytes", c.backend.name, c.tap.n)
		if c.tap.err != nil {
			msg += ": " + c.tap.err.Error()
		}
		rec.Error = &record.Error{Code: "upstream_interrupted", Message: msg}
	default:
		rec.Status = c.respStatus
		rec.State = record.StateCompleted
		if rec.Status >= 400 {
			rec.Error = res.Error
			if rec.Error == nil {
				rec.Error = &record.Error{Code: strconv.Itoa(rec.Status), Message: http.StatusText(rec.Status)}
			}
			rec.Error.RetryAfterMS = c.retryAfterMS
		}
	}

	if rec.Usage == nil && c.tap != nil && estimable(c.route.op) && (rec.UpstreamStatus < 400) && c.jsonBody {
		model := rec.ModelReturned
		if model == "" {
			model = rec.Deployment
		}
		if c.stream == nil && c.tap.buf != nil {
			res = usage.ParseJSON(c.route.op, c.tap.buf.Bytes(), g.capture.max)
		}
		u := g.est.Estimate(c.route.op, model, c.body, res.Text)
		if n := int64(len(res.Text)); n > 0 && res.TextBytes > n {
			// Only the first MaxText bytes were kept: scale up to the whole.
			u.CompletionTokens = int(float64(u.CompletionTokens) * float64(res.TextBytes) / float64(n))
			u.TotalTokens = u.PromptTokens + u.CompletionTokens
		}
		rec.Usage = &u
	}

	switch {
	case c.tap == nil:
	case c.stream != nil:
		rec.Response = g.capture.capture(unsafe.Slice(unsafe.StringData(res.Text), len(res.Text)), max(res.TextBytes, int64(len(res.Text))))
	case c.tap.buf != nil:
		rec.Response = g.capture.capture(c.tap.buf.Bytes(), c.tap.n)
	case c.tap.n > 0:
		rec.Response = g.capture.omitted(c.tap.n, "not text: "+c.respType)
	}
}

func estimable(op string) bool {
	switch op {
	case record.OpChatCompletions, record.OpCompletions, record.OpEmbeddings, record.OpResponses:
		return true
	}
	return false
}

// tap sits on the response body as it goes to the caller: it counts bytes,
// notes the first one, keeps up to keep bytes for parsing, and remembers how
// the body ended.
type tap struct {
	rc    io.ReadCloser
	c     *call
	keep  int
	buf   *bytes.Buffer
	n     int64
	first time.Time
	eof   bool
	err   error
}

func (t *tap) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if n > 0 {
		if t.n == 0 {
			t.first = t.c.g.now()
		}
		t.n += int64(n)
		if t.buf != nil && t.buf.Len() < t.keep {
			t.buf.Write(p[:min(n, t.keep-t.buf.Len())])
		}
	}
	switch {
	case err == io.EOF:
		t.eof = true
	case err != nil && t.err == nil:
		t.err = err
	}
	return n, err
}

func (t *tap) Close() error { return t.rc.Close() }

func isJSON(contentType string, body []byte) bool {
	if contentType == "" {
		b := bytes.TrimLeft(body, " \t\r\n")
		return len(b) > 0 && (b[0] == '{' || b[0] == '[')
	}
	if contentType == "application/json" { // what every OpenAI client sends
		return true
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func isText(contentType string) bool {
	return strings.HasPrefix(contentType, "text/")
}

// setModel adds "model" to a JSON object that has none, for OpenAI-style
// backends reached through an Azure deployment path.
func setModel(body []byte, model string) []byte {
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return body
	}
	m, _ := json.Marshal(model)
	out := make([]byte, 0, len(b)+len(m)+10)
	out = append(out, `{"model":`...)
	out = append(out, m...)
	rest := bytes.TrimLeft(b[1:], " \t\r\n")
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}

// retryAfterMS reads the wait a backend asked for, from whichever header it
// used (azure-contracts.md §7.5: Retry-After, retry-after-ms, or none).
func retryAfterMS(h http.Header) int64 {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 {
			return int64(n)
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return int64(n) * 1000
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(time.Until(t).Milliseconds(), 0)
		}
	}
	return 0
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func ptr[T any](v T) *T { return &v }
