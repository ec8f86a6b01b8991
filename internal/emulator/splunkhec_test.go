package emulator

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	hecTok      = "11111111-2222-3333-4444-555555555555"
	hecAckTok   = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	hecOffTok   = "dddddddd-0000-0000-0000-000000000000"
	hecChannelA = "0b5a2f6e-3c1d-4e8f-9a7b-1c2d3e4f5a6b"
	hecChannelB = "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910"
)

func newTestHEC(t *testing.T, edit func(*SplunkHECConfig)) (*SplunkHEC, string) {
	t.Helper()
	cfg := SplunkHECConfig{Tokens: []SplunkHECToken{
		{Name: "tapline", Value: hecTok, Indexes: []string{"main", "azure"}},
		{Name: "acked", Value: hecAckTok, IndexerAck: true, DefaultIndex: "azure"},
		{Name: "off", Value: hecOffTok, Disabled: true},
	}}
	if edit != nil {
		edit(&cfg)
	}
	h, err := NewSplunkHEC(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL
}

type hecResp struct {
	status int
	header http.Header
	body   map[string]json.RawMessage
	raw    []byte
}

func (r hecResp) num(t *testing.T, key string) int {
	t.Helper()
	v, ok := r.body[key]
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		t.Fatalf("%s = %s in %s", key, v, r.raw)
	}
	return n
}

// hecDo sends body with the given headers ("Authorization", channel...).
func hecDo(t *testing.T, method, url string, headers map[string]string, body []byte) hecResp {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := hecResp{status: resp.StatusCode, header: resp.Header, raw: raw}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		t.Fatalf("%s %s: %d body %q is not a JSON object: %v", method, url, resp.StatusCode, raw, err)
	}
	return r
}

func auth(tok string) map[string]string { return map[string]string{"Authorization": "Splunk " + tok} }

// hecCodes reads testdata/splunk-hec-codes.tsv: code -> (HTTP status, text).
func hecCodes(t *testing.T) map[int]struct {
	status int
	text   string
} {
	t.Helper()
	f, err := os.Open("testdata/splunk-hec-codes.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[int]struct {
		status int
		text   string
	}{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		cols := strings.Split(sc.Text(), "\t")
		code, err1 := strconv.Atoi(cols[0])
		status, err2 := strconv.Atoi(cols[1])
		if len(cols) != 3 || err1 != nil || err2 != nil {
			t.Fatalf("bad fixture line %q", sc.Text())
		}
		out[code] = struct {
			status int
			text   string
		}{status, cols[2]}
	}
	return out
}

// TestSplunkHECRejections proves each answer of the contract: status, code,
// text (from the fixture), invalid-event-number, and what got indexed.
func TestSplunkHECRejections(t *testing.T) {
	codes := hecCodes(t)
	ev := `{"event":{"a":1}}`
	withChannel := func(tok, ch string) map[string]string {
		h := auth(tok)
		h["X-Splunk-Request-Channel"] = ch
		return h
	}
	cases := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		body    string
		busy    bool
		status  int
		code    int // -1: no code expected
		invalid int // -1: no invalid-event-number
		stored  int
	}{
		{"success", "POST", "/services/collector/event", auth(hecTok), ev + ev, false, 200, 0, -1, 2},
		{"success on /event/1.0", "POST", "/services/collector/event/1.0", auth(hecTok), ev, false, 200, 0, -1, 1},
		{"success on /collector", "POST", "/services/collector", auth(hecTok), ev, false, 200, 0, -1, 1},
		{"token disabled", "POST", "/services/collector/event", auth(hecOffTok), ev, false, 403, 1, -1, 0},
		{"token is required", "POST", "/services/collector/event", nil, ev, false, 401, 2, -1, 0},
		{"bearer is invalid authorization", "POST", "/services/collector/event", map[string]string{"Authorization": "Bearer " + hecTok}, ev, false, 401, 3, -1, 0},
		{"bare token is invalid authorization", "POST", "/services/collector/event", map[string]string{"Authorization": hecTok}, ev, false, 401, 3, -1, 0},
		{"invalid token", "POST", "/services/collector/event", auth("nope"), ev, false, 403, 4, -1, 0},
		{"no data", "POST", "/services/collector/event", auth(hecTok), "", false, 400, 5, -1, 0},
		{"only whitespace", "POST", "/services/collector/event", auth(hecTok), " \n", false, 400, 5, -1, 0},
		{"syntax error in object 1", "POST", "/services/collector/event", auth(hecTok), ev + `{"event":`, false, 400, 6, 1, 1},
		{"not an object", "POST", "/services/collector/event", auth(hecTok), `"x"`, false, 400, 6, 0, 0},
		{"event null", "POST", "/services/collector/event", auth(hecTok), `{"event":null}`, false, 400, 6, 0, 0},
		{"bad time", "POST", "/services/collector/event", auth(hecTok), ev + `{"event":"x","time":"noon"}`, false, 400, 6, 1, 1},
		{"incorrect index in object 2", "POST", "/services/collector/event", auth(hecTok), ev + ev + `{"event":"x","index":"secret"}` + ev, false, 400, 7, 2, 2},
		{"server is busy", "POST", "/services/collector/event", auth(hecTok), ev, true, 503, 9, -1, 0},
		{"data channel is missing", "POST", "/services/collector/event", auth(hecAckTok), ev, false, 400, 10, -1, 0},
		{"invalid data channel", "POST", "/services/collector/event", withChannel(hecAckTok, "not-a-uuid"), ev, false, 400, 11, -1, 0},
		{"event field is required", "POST", "/services/collector/event", auth(hecTok), ev + `{"host":"h"}`, false, 400, 12, 1, 1},
		{"event field cannot be blank", "POST", "/services/collector/event", auth(hecTok), `{"event":" "}`, false, 400, 13, 0, 0},
		{"ack is disabled", "POST", "/services/collector/ack", withChannel(hecTok, hecChannelA), `{"acks":[0]}`, false, 400, 14, -1, 0},
		{"nested indexed field", "POST", "/services/collector/event", auth(hecTok), `{"event":"x","fields":{"a":{"b":1}}}`, false, 400, 15, 0, 0},
		{"health without a token", "GET", "/services/collector/health", nil, "", false, 200, 17, -1, 0},
		{"health/1.0 with a bad token", "GET", "/services/collector/health/1.0", auth("nope"), "", false, 200, 17, -1, 0},
		{"over max_content_length", "POST", "/services/collector/event", auth(hecTok), `{"event":"` + strings.Repeat("x", 2000) + `"}`, false, 413, -1, -1, 0},
		{"deflate is unsupported", "POST", "/services/collector/event", map[string]string{"Authorization": "Splunk " + hecTok, "Content-Encoding": "deflate"}, ev, false, 415, 6, -1, 0},
		{"GET on /event", "GET", "/services/collector/event", auth(hecTok), "", false, 405, 404, -1, 0},
		{"unknown path", "POST", "/services/collector/nope", auth(hecTok), ev, false, 404, 404, -1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, base := newTestHEC(t, func(cfg *SplunkHECConfig) { cfg.MaxContentLength = 1000 })
			if c.busy {
				h.Busy(1, 0)
			}
			r := hecDo(t, c.method, base+c.path, c.headers, []byte(c.body))
			if r.status != c.status || r.num(t, "code") != c.code || r.num(t, "invalid-event-number") != c.invalid {
				t.Fatalf("got %d %s, want %d code %d invalid-event-number %d", r.status, r.raw, c.status, c.code, c.invalid)
			}
			if want, ok := codes[c.code]; ok && c.code < 404 {
				var text string
				_ = json.Unmarshal(r.body["text"], &text)
				if text != want.text || r.status != want.status && r.status != http.StatusUnsupportedMediaType {
					t.Errorf("code %d: %d %q, the contract says %d %q", c.code, r.status, text, want.status, want.text)
				}
			}
			if _, ok := r.body["ackId"]; ok {
				t.Errorf("ackId on a token without indexer ack: %s", r.raw)
			}
			if got := len(h.Events("")); got != c.stored {
				t.Errorf("%d events indexed, want %d", got, c.stored)
			}
		})
	}
}

// TestSplunkHECStoresAsSent: the event and each object's metadata are kept
// byte for byte, nothing carries from one object to the next, and the
// token's defaults fill what an object leaves out.
func TestSplunkHECStoresAsSent(t *testing.T) {
	h, base := newTestHEC(t, nil)
	first := `{"time":1795381200.123456789,"host":"gw1","source":"tapline","sourcetype":"tapline:gateway_request","index":"azure","event":{"big":12345678901234567890123,"s":"h\u00e9\u2028"},"fields":{"id":"rec-1","kind":"gateway_request"}}`
	second := `{"event":"plain"}`
	body := first + "\n" + second
	gz := &bytes.Buffer{}
	zw := gzip.NewWriter(gz)
	_, _ = zw.Write([]byte(body))
	_ = zw.Close()
	r := hecDo(t, "POST", base+"/services/collector/event", map[string]string{"Authorization": "Splunk " + hecTok, "Content-Encoding": "gzip"}, gz.Bytes())
	if r.status != 200 || string(r.raw) != `{"code":0,"text":"Success"}` {
		t.Fatalf("gzip post: %d %s", r.status, r.raw)
	}
	host := strings.TrimPrefix(base, "http://")
	want := []SplunkHECEvent{
		{Index: "azure", Host: "gw1", Source: "tapline", Sourcetype: "tapline:gateway_request", Time: "1795381200.123456789",
			Event:  json.RawMessage(`{"big":12345678901234567890123,"s":"h\u00e9\u2028"}`),
			Fields: json.RawMessage(`{"id":"rec-1","kind":"gateway_request"}`), Raw: json.RawMessage(first)},
		{Index: "main", Host: host, Source: "http:tapline", Sourcetype: "httpevent", Event: json.RawMessage(`"plain"`), Raw: json.RawMessage(second)},
	}
	if d := cmp.Diff(want, h.Events("")); d != "" {
		t.Errorf("stored events (-want +got):\n%s", d)
	}
	if got := h.Events("azure"); len(got) != 1 || got[0].Host != "gw1" {
		t.Errorf("Events(azure) = %+v", got)
	}

	// A gzipped body that inflates past the limit is refused whole.
	h2, base2 := newTestHEC(t, func(c *SplunkHECConfig) { c.MaxContentLength = 1000 })
	gz.Reset()
	zw = gzip.NewWriter(gz)
	_, _ = zw.Write([]byte(`{"event":"` + strings.Repeat("x", 5000) + `"}`))
	_ = zw.Close()
	r = hecDo(t, "POST", base2+"/services/collector/event", map[string]string{"Authorization": "Splunk " + hecTok, "Content-Encoding": "gzip"}, gz.Bytes())
	if r.status != http.StatusRequestEntityTooLarge || len(h2.Events("")) != 0 {
		t.Errorf("gzip bomb: %d %s, %d events", r.status, r.raw, len(h2.Events("")))
	}
}

// TestSplunkHECIndexerAck: ackIds count from 0 per channel, stay false
// until the events are indexed (and the events unsearchable), and an id
// reported true is forgotten.
func TestSplunkHECIndexerAck(t *testing.T) {
	h, base := newTestHEC(t, func(c *SplunkHECConfig) { c.ManualIndexing = true })
	post := func(ch string) int {
		hd := auth(hecAckTok)
		hd["X-Splunk-Request-Channel"] = ch
		r := hecDo(t, "POST", base+"/services/collector/event", hd, []byte(`{"event":"e"}`))
		if r.status != 200 || r.num(t, "code") != 0 {
			t.Fatalf("post on %s: %d %s", ch, r.status, r.raw)
		}
		return r.num(t, "ackId")
	}
	poll := func(ch string, ids string) string {
		hd := auth(hecAckTok)
		hd["X-Splunk-Request-Channel"] = ch
		r := hecDo(t, "POST", base+"/services/collector/ack", hd, []byte(`{"acks":`+ids+`}`))
		if r.status != 200 {
			t.Fatalf("ack poll: %d %s", r.status, r.raw)
		}
		return string(r.raw)
	}
	if a, b, c := post(hecChannelA), post(hecChannelA), post(hecChannelB); a != 0 || b != 1 || c != 0 {
		t.Fatalf("ackIds %d %d %d, want 0 1 0", a, b, c)
	}
	if got := poll(hecChannelA, "[0,1,5]"); got != `{"acks":{"0":false,"1":false,"5":false}}` {
		t.Errorf("before indexing: %s", got)
	}
	if n := len(h.Events("")); n != 0 || h.Pending() != 3 {
		t.Errorf("before indexing: %d searchable, %d pending", n, h.Pending())
	}
	if n := h.Index(); n != 3 {
		t.Errorf("Index() = %d, want 3", n)
	}
	if got := poll(hecChannelA, "[0,1,5]"); got != `{"acks":{"0":true,"1":true,"5":false}}` {
		t.Errorf("after indexing: %s", got)
	}
	if got := poll(hecChannelA, "[0,1]"); got != `{"acks":{"0":false,"1":false}}` {
		t.Errorf("asked again: %s (an id answered true is forgotten)", got)
	}
	if got := poll(hecChannelB, "[0,1]"); got != `{"acks":{"0":true,"1":false}}` {
		t.Errorf("channel B: %s", got)
	}
	if evs := h.Events("azure"); len(evs) != 3 {
		t.Errorf("after indexing: %d events in the token's default index, want 3", len(evs))
	}
}

// TestSplunkHECBusy: an outage of N requests, then one until cleared; the
// 503s carry Retry-After and health stays up.
func TestSplunkHECBusy(t *testing.T) {
	h, base := newTestHEC(t, nil)
	ev := []byte(`{"event":"e"}`)
	h.Busy(2, 1500*time.Millisecond)
	for i := range 2 {
		r := hecDo(t, "POST", base+"/services/collector/event", auth(hecTok), ev)
		if r.status != 503 || r.num(t, "code") != 9 || r.header.Get("Retry-After") != "2" {
			t.Fatalf("busy request %d: %d %s Retry-After %q", i, r.status, r.raw, r.header.Get("Retry-After"))
		}
	}
	if r := hecDo(t, "POST", base+"/services/collector/event", auth(hecTok), ev); r.status != 200 {
		t.Fatalf("after the outage: %d %s", r.status, r.raw)
	}
	h.Busy(-1, 0)
	for range 3 {
		if r := hecDo(t, "POST", base+"/services/collector/event", auth(hecTok), ev); r.status != 503 || r.header.Get("Retry-After") != "" {
			t.Fatalf("open-ended outage: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
		}
	}
	if r := hecDo(t, "GET", base+"/services/collector/health", nil, nil); r.status != 200 {
		t.Errorf("health during the outage: %d", r.status)
	}
	h.ClearBusy()
	if r := hecDo(t, "POST", base+"/services/collector/event", auth(hecTok), ev); r.status != 200 {
		t.Fatalf("after ClearBusy: %d %s", r.status, r.raw)
	}
	if n := len(h.Events("")); n != 2 {
		t.Errorf("%d events indexed, want 2", n)
	}
	reqs := h.Requests()
	if len(reqs) != 8 || reqs[0].Status != 503 || reqs[0].Code != 9 || reqs[2].Events != 1 {
		t.Errorf("request log: %+v", reqs)
	}
}

func TestListenSplunkHEC(t *testing.T) {
	if _, _, _, err := ListenSplunkHEC(context.Background(), "10.0.0.1:0", SplunkHECConfig{}, nil); err == nil {
		t.Errorf("a non-loopback address was accepted")
	}
	if _, err := NewSplunkHEC(SplunkHECConfig{Tokens: []SplunkHECToken{{Value: "a"}, {Value: "a"}}}, nil); err == nil {
		t.Errorf("a repeated token was accepted")
	}
	url, h, stop, err := ListenSplunkHEC(context.Background(), "", SplunkHECConfig{Tokens: []SplunkHECToken{{Name: "t", Value: hecTok}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if r := hecDo(t, "POST", url+"/services/collector/event", auth(hecTok), []byte(`{"event":1}`)); r.status != 200 || len(h.Events("main")) != 1 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	stop()
	if _, err := http.Get(url + "/services/collector/health"); err == nil {
		t.Errorf("server still answering after stop")
	}
}
