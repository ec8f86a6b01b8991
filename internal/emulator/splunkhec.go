package emulator

// The Splunk HTTP Event Collector (HEC) contract this stand-in follows.
// There is no recording of it in shared/reference, so it was put together
// from these sources (DOC = Splunk's documentation, 3P = third-party code
// or notes, INFERRED = no source says it; each point names its source):
//
//	[DOC-1] help.splunk.com ".../http-event-collector-rest-api-endpoints"
//	[DOC-2] help.splunk.com ".../format-events-for-http-event-collector"
//	[DOC-3] help.splunk.com ".../about-http-event-collector-indexer-acknowledgment"
//	[DOC-4] help.splunk.com Edge Processor "usage information and examples for supported HEC endpoints"
//	[3P-1]  Splunk's own Java client cloudfwd, impl/http/ServerErrors.java (code / HTTP status / text table)
//	[3P-2]  SplunkAdmins app, lookups/splunkadmins_hec_reply_code_lookup.csv (the same table, with causes)
//	[3P-3]  open-telemetry/opentelemetry-collector-contrib receiver/splunkhecreceiver/receiver.go
//	[3P-4]  tenzir accept_splunk operator (a C++ HEC server): check order, codes 11, 14, 413
//	[3P-5]  interop notes of a Splunk HEC client ("logit", splunk-interop results) probing splunk/splunk:10.4.3
//
// Endpoints and auth:
//   - POST /services/collector/event and /services/collector/event/1.0
//     (identical) and /services/collector take the JSON event protocol;
//     POST /services/collector/ack queries indexing status [DOC-1].
//     GET /services/collector/health (and /health/1.0) answers 200
//     {"text":"HEC is healthy","code":17} [3P-3] without looking at the
//     token [3P-5]. A GET on /event answers 405 [3P-5].
//   - The token travels as "Authorization: Splunk <token>" [DOC-2]. (Basic
//     auth and the ?token= query form also exist [DOC-2]; not emulated.)
//
// Body: one or more JSON objects one after the other, not an array [DOC-4],
// each {"time", "host", "source", "sourcetype", "index", "event", "fields"};
// time is epoch seconds, a fraction allowed ("1433188255.500") [DOC-2];
// an index must be in the token's allowed list when it has one [DOC-2];
// no key carries over from one object to the next [3P-5]. gzip
// Content-Encoding is accepted [3P-5]; another encoding answers 415 [3P-5]
// (the body given with it here is INFERRED).
//
// Answers (HTTP status, code, text) [3P-1][3P-2], and where they come from:
//
//	200  0  Success                     + "ackId":N when the token has indexer ack
//	403  1  Token disabled
//	401  2  Token is required           no Authorization header
//	401  3  Invalid authorization       not "Splunk <token>" [3P-2: "the word Splunk is missing"]
//	403  4  Invalid token               unknown token
//	400  5  No data                     empty body; a valid token with an empty body gets
//	                                    this (AWS Firehose probes HEC so [3P-2]): Check relies on it
//	400  6  Invalid data format         + "invalid-event-number":i (object i is not JSON, event null or false [3P-5])
//	400  7  Incorrect index             + "invalid-event-number" (index not allowed for the token)
//	503  9  Server is busy
//	400 10  Data channel is missing     token has indexer ack, no X-Splunk-Request-Channel [3P-5]
//	400 11  Invalid data channel        channel not a UUID [3P-4]
//	400 12  Event field is required     + "invalid-event-number" [3P-3][3P-5]
//	400 13  Event field cannot be blank + "invalid-event-number" ("" or " ") [3P-3][3P-5]
//	400 14  ACK is disabled             /ack on a token without indexer ack [3P-1][3P-4]
//	400 15  Error in handling indexed fields  "fields" holds an object [3P-3][3P-5]
//	413  -  request body over max_content_length: refused whole [3P-5]; the body
//	        text is UNVERIFIED (sources disagree), so clients must look at the status only
//
// Checks run in the order auth, channel, size, body [3P-4] (INFERRED for
// Splunk itself); an injected outage (503) answers before all of them
// (INFERRED). Objects before the one named by invalid-event-number are
// indexed, that one and the rest are not [3P-5]. UNVERIFIED: [3P-5] saw
// code 7 name the object AFTER the bad one (object 1 of 3 reported as 2);
// this stand-in names the bad object itself, as for the other codes.
//
// Indexer acknowledgement [DOC-3][3P-5]: per token; every event request then
// needs a channel (X-Splunk-Request-Channel: <uuid>, or ?channel=) and its
// 200 carries "ackId", counted from 0 per channel. POST /services/collector/ack
// with the same channel and {"acks":[0,1]} answers {"acks":{"0":true,"1":false}};
// an id that was answered true is forgotten (asked again: false) [3P-5].
// A 200 without acknowledgement means only "looks valid" [DOC-3].
//
// max_content_length: Splunk Enterprise's default is 838860800 bytes
// (limits.conf [http_input], 800 MiB) [3P-5]; Splunk Cloud Platform
// documents 1 MB (quoted in third-party notes, UNVERIFIED here). The
// stand-in defaults to 1,000,000 bytes: the smallest limit a real
// deployment commonly has, so that a client tested here fits everywhere
// and the split and 413 paths are cheap to exercise.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// SplunkHECDefaultMaxContentLength is the body limit used when
// SplunkHECConfig.MaxContentLength is 0 (see the contract above for why).
const SplunkHECDefaultMaxContentLength = 1_000_000

// SplunkHECToken is one HEC token (an HTTP input) the stand-in accepts.
type SplunkHECToken struct {
	// Name names the input; events without a source get "http:<Name>".
	Name string
	// Value is the token itself. Required, unique.
	Value string
	// Indexes are the indexes the token may write to; empty allows any.
	Indexes []string
	// DefaultIndex is the index of events that name none; "" means "main".
	DefaultIndex string
	// IndexerAck turns indexer acknowledgement (useACK) on.
	IndexerAck bool
	// Disabled makes every request with the token answer 403 code 1.
	Disabled bool
}

// SplunkHECConfig configures a Splunk HEC stand-in.
type SplunkHECConfig struct {
	Tokens []SplunkHECToken
	// MaxContentLength is the largest body accepted, in bytes, counted both
	// as sent and after gunzip; 0 means SplunkHECDefaultMaxContentLength.
	MaxContentLength int
	// ManualIndexing keeps accepted events pending (unsearchable, their
	// acks false) until Index is called. Off, they are indexed at once.
	ManualIndexing bool
}

// SplunkHECEvent is one event as the stand-in stored it.
type SplunkHECEvent struct {
	Index      string
	Host       string
	Source     string
	Sourcetype string
	// Time is the "time" value exactly as sent, "" if none was.
	Time string
	// Event and Fields are the "event" and "fields" values exactly as sent.
	Event  json.RawMessage
	Fields json.RawMessage
	// Raw is the whole event object exactly as sent.
	Raw json.RawMessage
}

// SplunkHECRequest is one request the stand-in answered.
type SplunkHECRequest struct {
	Method  string
	Path    string
	Channel string
	Bytes   int // body bytes as sent
	Status  int
	Code    int // the HEC code answered, -1 if the answer had none
	Events  int // events accepted
}

type hecToken struct {
	SplunkHECToken
	allowed map[string]bool // nil: any index
}

type hecStored struct {
	ev      SplunkHECEvent
	indexed bool
	ack     hecAckKey // zero channel: no ack
}

type hecAckKey struct {
	channel string
	id      int64
}

// SplunkHEC is an http.Handler standing in for a Splunk HEC endpoint
// (https://splunk:8088): events, indexer acknowledgement and health, with
// the rejections listed in the contract above and an injectable outage. It
// is safe for concurrent use.
type SplunkHEC struct {
	tokens map[string]*hecToken
	max    int
	manual bool
	log    *slog.Logger

	mu         sync.Mutex
	events     []hecStored
	nextAck    map[string]int64   // channel -> next ackId
	acks       map[hecAckKey]bool // issued, not yet reported true; value: indexed
	busy       int                // requests left to answer 503; <0 until cleared
	retryAfter time.Duration      // sent with the 503s when not zero
	requests   []SplunkHECRequest
}

var _ http.Handler = (*SplunkHEC)(nil)

// ListenSplunkHEC serves a Splunk HEC stand-in for cfg on addr, which must be
// a loopback address ("" or ":port" mean 127.0.0.1, port 0 any free one). It
// returns the base URL to use in place of https://splunk:8088, the stand-in
// (for Busy, Index, Events and Requests), and stop, which shuts the server
// down within a few seconds and may be called more than once. The server
// also stops when ctx ends.
func ListenSplunkHEC(ctx context.Context, addr string, cfg SplunkHECConfig, log *slog.Logger) (url string, h *SplunkHEC, stop func(), err error) {
	h, err = NewSplunkHEC(cfg, log)
	if err != nil {
		return "", nil, nil, err
	}
	url, stop, err = listenLoopback(ctx, addr, h, log, "splunkhec")
	if err != nil {
		return "", nil, nil, err
	}
	return url, h, stop, nil
}

// NewSplunkHEC returns a stand-in for cfg. A nil log discards.
func NewSplunkHEC(cfg SplunkHECConfig, log *slog.Logger) (*SplunkHEC, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxContentLength < 0 {
		return nil, fmt.Errorf("splunk hec emulator: max content length %d is negative", cfg.MaxContentLength)
	}
	if cfg.MaxContentLength == 0 {
		cfg.MaxContentLength = SplunkHECDefaultMaxContentLength
	}
	h := &SplunkHEC{
		tokens:  map[string]*hecToken{},
		max:     cfg.MaxContentLength,
		manual:  cfg.ManualIndexing,
		log:     log.With("component", "emulator.splunkhec"),
		nextAck: map[string]int64{},
		acks:    map[hecAckKey]bool{},
	}
	for i, t := range cfg.Tokens {
		if t.Value == "" || h.tokens[t.Value] != nil {
			return nil, fmt.Errorf("splunk hec emulator: token %d (%q) is empty or repeated", i, t.Name)
		}
		ht := &hecToken{SplunkHECToken: t}
		if ht.DefaultIndex == "" {
			ht.DefaultIndex = "main"
		}
		if len(t.Indexes) > 0 {
			ht.allowed = map[string]bool{}
			for _, ix := range t.Indexes {
				ht.allowed[ix] = true
			}
		}
		h.tokens[t.Value] = ht
	}
	return h, nil
}

// Busy makes the next n event and ack requests answer 503 code 9 "Server is
// busy"; n < 0 makes every one answer so until ClearBusy. retryAfter, when
// not zero, is sent as Retry-After in whole seconds, rounded up (whether
// Splunk sends one is UNVERIFIED). Health keeps answering healthy.
func (h *SplunkHEC) Busy(n int, retryAfter time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.busy, h.retryAfter = n, retryAfter
}

// ClearBusy ends an outage started by Busy.
func (h *SplunkHEC) ClearBusy() { h.Busy(0, 0) }

// Index indexes every pending event (ManualIndexing): they become
// searchable and their acks true. It returns how many there were.
func (h *SplunkHEC) Index() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for i := range h.events {
		if st := &h.events[i]; !st.indexed {
			st.indexed = true
			n++
			if st.ack.channel != "" {
				h.acks[st.ack] = true
			}
		}
	}
	return n
}

// Events returns the indexed events of index (every index when index is
// ""), in arrival order, duplicates included.
func (h *SplunkHEC) Events(index string) []SplunkHECEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []SplunkHECEvent
	for _, st := range h.events {
		if st.indexed && (index == "" || st.ev.Index == index) {
			out = append(out, st.ev)
		}
	}
	return out
}

// Pending returns how many accepted events are not indexed yet.
func (h *SplunkHEC) Pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, st := range h.events {
		if !st.indexed {
			n++
		}
	}
	return n
}

// Requests returns a copy of the log of every request answered, in order.
func (h *SplunkHEC) Requests() []SplunkHECRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.requests)
}

// hecAnswer is one response: HTTP status and the JSON body's fields.
type hecAnswer struct {
	status  int
	code    int // -1: no code in the body
	text    string
	invalid int // invalid-event-number; -1: none
	ackID   int64
	hasAck  bool
	acks    map[string]bool
	events  int
}

func hecErr(status, code int, text string) hecAnswer {
	return hecAnswer{status: status, code: code, text: text, invalid: -1}
}

// ServeHTTP serves the endpoints of the contract above.
func (h *SplunkHEC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	channel := r.Header.Get("X-Splunk-Request-Channel")
	if channel == "" {
		channel = r.URL.Query().Get("channel")
	}
	body, readErr := io.ReadAll(io.LimitReader(r.Body, int64(h.max)+1))
	a := h.answer(r, channel, body, readErr)
	h.mu.Lock()
	h.requests = append(h.requests, SplunkHECRequest{
		Method: r.Method, Path: r.URL.Path, Channel: channel, Bytes: len(body),
		Status: a.status, Code: a.code, Events: a.events,
	})
	retryAfter := h.retryAfter
	h.mu.Unlock()
	if a.status == http.StatusServiceUnavailable && retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	writeHEC(w, a)
}

func (h *SplunkHEC) answer(r *http.Request, channel string, body []byte, readErr error) hecAnswer {
	path := strings.TrimSuffix(r.URL.Path, "/")
	var ack bool
	switch path {
	case "/services/collector/health", "/services/collector/health/1.0":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return hecErr(http.StatusMethodNotAllowed, 404, "The requested URL was not found on this server.")
		}
		return hecErr(http.StatusOK, 17, "HEC is healthy")
	case "/services/collector", "/services/collector/event", "/services/collector/event/1.0":
	case "/services/collector/ack":
		ack = true
	default:
		return hecErr(http.StatusNotFound, 404, "The requested URL was not found on this server.")
	}
	if r.Method != http.MethodPost {
		return hecErr(http.StatusMethodNotAllowed, 404, "The requested URL was not found on this server.")
	}
	if h.takeBusy() {
		return hecErr(http.StatusServiceUnavailable, 9, "Server is busy")
	}
	tok, a, ok := h.authenticate(r.Header.Get("Authorization"))
	if !ok {
		return a
	}
	if ack && !tok.IndexerAck {
		return hecErr(http.StatusBadRequest, 14, "ACK is disabled")
	}
	if tok.IndexerAck {
		if channel == "" {
			return hecErr(http.StatusBadRequest, 10, "Data channel is missing")
		}
		if uuid.Validate(channel) != nil {
			return hecErr(http.StatusBadRequest, 11, "Invalid data channel")
		}
	}
	if readErr != nil {
		return hecErr(http.StatusBadRequest, 6, "Invalid data format")
	}
	if len(body) > h.max {
		return hecErr(http.StatusRequestEntityTooLarge, -1, fmt.Sprintf("Content-Length of %d too large (maximum is %d)", max(r.ContentLength, int64(len(body))), h.max))
	}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return hecErr(http.StatusBadRequest, 6, "Invalid data format")
		}
		body, err = io.ReadAll(io.LimitReader(zr, int64(h.max)+1))
		if err != nil {
			return hecErr(http.StatusBadRequest, 6, "Invalid data format")
		}
		if len(body) > h.max {
			return hecErr(http.StatusRequestEntityTooLarge, -1, fmt.Sprintf("Content-Length of %d too large (maximum is %d)", len(body), h.max))
		}
	default:
		return hecErr(http.StatusUnsupportedMediaType, 6, "Invalid data format")
	}
	if ack {
		return h.serveAck(channel, body)
	}
	return h.serveEvents(r, tok, channel, body)
}

func (h *SplunkHEC) takeBusy() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.busy < 0:
		return true
	case h.busy > 0:
		h.busy--
		return true
	}
	return false
}

func (h *SplunkHEC) authenticate(header string) (*hecToken, hecAnswer, bool) {
	if header == "" {
		return nil, hecErr(http.StatusUnauthorized, 2, "Token is required"), false
	}
	scheme, value, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Splunk") || value == "" {
		return nil, hecErr(http.StatusUnauthorized, 3, "Invalid authorization"), false
	}
	tok := h.tokens[value]
	switch {
	case tok == nil:
		return nil, hecErr(http.StatusForbidden, 4, "Invalid token"), false
	case tok.Disabled:
		return nil, hecErr(http.StatusForbidden, 1, "Token disabled"), false
	}
	return tok, hecAnswer{}, true
}

// serveEvents parses the objects of body in order and stores those before
// the first bad one, as Splunk does [3P-5].
func (h *SplunkHEC) serveEvents(r *http.Request, tok *hecToken, channel string, body []byte) hecAnswer {
	if len(bytes.TrimSpace(body)) == 0 {
		return hecErr(http.StatusBadRequest, 5, "No data")
	}
	var evs []SplunkHECEvent
	var fail hecAnswer
	failed := false
	dec := json.NewDecoder(bytes.NewReader(body))
	for i := 0; ; i++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			break
		}
		var ev SplunkHECEvent
		if err == nil {
			ev, fail = h.parseEvent(r, tok, raw)
		} else {
			fail = hecErr(http.StatusBadRequest, 6, "Invalid data format")
		}
		if err != nil || fail.status != 0 {
			fail.invalid, failed = i, true
			break
		}
		evs = append(evs, ev)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a := hecAnswer{status: http.StatusOK, code: 0, text: "Success", invalid: -1, events: len(evs)}
	if failed {
		a = fail
		a.events = len(evs)
	}
	var key hecAckKey
	if tok.IndexerAck && !failed {
		key = hecAckKey{channel: channel, id: h.nextAck[channel]}
		h.nextAck[channel]++
		h.acks[key] = !h.manual
		a.ackID, a.hasAck = key.id, true
	}
	for _, ev := range evs {
		h.events = append(h.events, hecStored{ev: ev, indexed: !h.manual, ack: key})
	}
	return a
}

func (h *SplunkHEC) parseEvent(r *http.Request, tok *hecToken, raw json.RawMessage) (SplunkHECEvent, hecAnswer) {
	invalid := hecErr(http.StatusBadRequest, 6, "Invalid data format")
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		return SplunkHECEvent{}, invalid
	}
	ev := SplunkHECEvent{Index: tok.DefaultIndex, Host: r.Host, Source: "http:" + tok.Name, Sourcetype: "httpevent", Raw: raw}
	event, ok := obj["event"]
	if !ok {
		return ev, hecErr(http.StatusBadRequest, 12, "Event field is required")
	}
	var s string
	switch {
	case string(event) == "null", string(event) == "true", string(event) == "false":
		return ev, invalid
	case json.Unmarshal(event, &s) == nil && strings.TrimSpace(s) == "":
		return ev, hecErr(http.StatusBadRequest, 13, "Event field cannot be blank")
	}
	ev.Event = event
	for key, dst := range map[string]*string{"host": &ev.Host, "source": &ev.Source, "sourcetype": &ev.Sourcetype, "index": &ev.Index} {
		if v, ok := obj[key]; ok {
			if json.Unmarshal(v, dst) != nil {
				return ev, invalid
			}
		}
	}
	if tok.allowed != nil && !tok.allowed[ev.Index] {
		return ev, hecErr(http.StatusBadRequest, 7, "Incorrect index")
	}
	if t, ok := obj["time"]; ok {
		ts := strings.Trim(string(t), `"`)
		if _, err := strconv.ParseFloat(ts, 64); err != nil {
			return ev, invalid
		}
		ev.Time = string(t)
	}
	if f, ok := obj["fields"]; ok {
		var fields map[string]json.RawMessage
		if json.Unmarshal(f, &fields) != nil {
			return ev, invalid
		}
		for _, v := range fields {
			if len(v) > 0 && v[0] == '{' {
				return ev, hecErr(http.StatusBadRequest, 15, "Error in handling indexed fields")
			}
		}
		ev.Fields = f
	}
	return ev, hecAnswer{}
}

// serveAck answers an ack query; an id reported true is forgotten [3P-5].
func (h *SplunkHEC) serveAck(channel string, body []byte) hecAnswer {
	var q struct {
		Acks []int64 `json:"acks"`
	}
	if err := json.Unmarshal(body, &q); err != nil || q.Acks == nil {
		return hecErr(http.StatusBadRequest, 6, "Invalid data format")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]bool, len(q.Acks))
	for _, id := range q.Acks {
		key := hecAckKey{channel: channel, id: id}
		done := h.acks[key]
		if done {
			delete(h.acks, key)
		}
		out[strconv.FormatInt(id, 10)] = done
	}
	return hecAnswer{status: http.StatusOK, code: -1, invalid: -1, acks: out}
}

func writeHEC(w http.ResponseWriter, a hecAnswer) {
	var body []byte
	if a.acks != nil {
		body, _ = json.Marshal(map[string]map[string]bool{"acks": a.acks})
	} else {
		m := map[string]any{"text": a.text}
		if a.code >= 0 {
			m["code"] = a.code
		}
		if a.invalid >= 0 {
			m["invalid-event-number"] = a.invalid
		}
		if a.hasAck {
			m["ackId"] = a.ackID
		}
		body, _ = json.Marshal(m)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(a.status)
	_, _ = w.Write(body)
}
