package splunk

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/tapline/tapline/internal/sink"
)

// HEC paths and codes (the contract is written out in
// internal/emulator/splunkhec.go with its sources).
const (
	pathEvent  = "/services/collector/event"
	pathAck    = "/services/collector/ack"
	pathHealth = "/services/collector/health"

	codeNoData         = 5
	codeInvalidFormat  = 6
	codeIncorrectIndex = 7
	codeChannelMissing = 10
	codeInvalidChannel = 11
	codeEventRequired  = 12
	codeEventBlank     = 13
	codeAckDisabled    = 14
	codeIndexedFields  = 15

	channelHeader       = "X-Splunk-Request-Channel"
	retryAfterHeader    = "Retry-After"
	authorizationHeader = "Authorization"
	contentTypeJSON     = "application/json"
)

// Client limits.
const (
	maxReplyBytes = 64 << 10               // HEC answers are small JSON objects
	ackPollFirst  = 100 * time.Millisecond // first wait between ack queries, doubling
	ackPollMax    = 2 * time.Second        // longest wait between ack queries
)

// ackChannel is the channel header of event requests: only with IndexerAck.
func (s *Sink) ackChannel() string {
	if s.ack {
		return s.channel
	}
	return ""
}

// reply is a HEC answer body; fields a body lacks stay nil.
type reply struct {
	Text    string          `json:"text"`
	Code    *int            `json:"code"`
	Invalid *int            `json:"invalid-event-number"`
	AckID   *int64          `json:"ackId"`
	Acks    map[string]bool `json:"acks"`
}

func (r reply) code() int {
	if r.Code == nil {
		return -1
	}
	return *r.Code
}

// answer is one HTTP exchange with HEC.
type answer struct {
	status int
	header http.Header
	reply  reply
}

// describe names the answer for an error: HTTP status, HEC code and text.
func (a answer) describe() string {
	if a.reply.Code == nil {
		return fmt.Sprintf("HTTP %d", a.status)
	}
	return fmt.Sprintf("HTTP %d, code %d %q", a.status, *a.reply.Code, a.reply.Text)
}

// do sends one request, with the token when authorized and channel as the
// request channel when not "". A transport failure is retryable, except a
// certificate that does not verify; the token never appears in what it
// returns.
func (s *Sink) do(ctx context.Context, method, path string, body []byte, authorized bool, channel string) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentTypeJSON)
	}
	if authorized {
		req.Header.Set(authorizationHeader, "Splunk "+s.token)
	}
	if channel != "" {
		req.Header.Set(channelHeader, channel)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// A certificate that does not verify is configuration, not weather.
		var verify *tls.CertificateVerificationError
		if ctx.Err() != nil || errors.As(err, &verify) {
			return answer{}, s.scrub(err)
		}
		return answer{}, &sink.RetryableError{Err: s.scrub(err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return answer{}, &sink.RetryableError{Err: fmt.Errorf("read answer: %w", s.scrub(err))}
	}
	a := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(raw, &a.reply) // a proxy's HTML page leaves it empty
	a.reply.Text = strings.ReplaceAll(a.reply.Text, s.token, "[token]")
	return a, nil
}

// scrub removes the token from err's message, should anything echo it.
func (s *Sink) scrub(err error) error {
	if err == nil || !strings.Contains(err.Error(), s.token) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), s.token, "[token]"))
}

// send posts the events of rq and returns the request's ackId.
func (s *Sink) send(ctx context.Context, rq span, ends []int) (int64, error) {
	body := s.body(rq, ends)
	a, err := s.do(ctx, http.MethodPost, pathEvent, body, true, s.ackChannel())
	if err != nil {
		return 0, fmt.Errorf("post events: %w", err)
	}
	if a.status == http.StatusOK {
		if s.ack && a.reply.AckID == nil {
			return 0, errors.New("post events: indexer_ack is set but Splunk returned no ackId: turn indexer acknowledgement on for the token, or indexer_ack off")
		}
		if a.reply.AckID != nil {
			return *a.reply.AckID, nil
		}
		return 0, nil
	}
	if a.status == http.StatusBadRequest && a.reply.Invalid != nil {
		switch code := a.reply.code(); code {
		case codeInvalidFormat, codeIncorrectIndex, codeEventRequired, codeEventBlank, codeIndexedFields:
			// The number counts events of this request; Splunk indexed
			// the ones before it (see the package comment).
			n := *a.reply.Invalid
			if n < 0 || n >= rq.to-rq.from {
				return 0, sink.Invalid(fmt.Errorf("post events: %s", a.describe()),
					fmt.Sprintf("invalid-event-number %d is outside the request's %d events", n, rq.to-rq.from))
			}
			// The dead letter's reason carries Splunk's own answer.
			reason := "Splunk refused the event (" + a.describe() + ")"
			if code == codeIncorrectIndex {
				reason += ": its index is not allowed for the token, or missing; check indexes and the token's allowed indexes"
			}
			return 0, sink.InvalidRecords(fmt.Errorf("post events: %s", a.describe()), reason, rq.from+n)
		}
	}
	if a.status == http.StatusRequestEntityTooLarge {
		return 0, fmt.Errorf("post events: request of %d bytes refused (%s): lower max_request_bytes under the server's max_content_length", len(body), a.describe())
	}
	return 0, fmt.Errorf("post events: %w", s.classify(a))
}

// classify turns a failed answer into an error: retryable for overload and
// server errors, plain (with the setting to fix) for the rest.
func (s *Sink) classify(a answer) error {
	desc := a.describe()
	switch {
	case a.status == http.StatusRequestTimeout, a.status == http.StatusTooManyRequests, a.status >= 500:
		return &sink.RetryableError{Err: fmt.Errorf("splunk hec: %s", desc), After: sink.RetryAfter(a.header, s.now())}
	case a.status == http.StatusUnauthorized, a.status == http.StatusForbidden:
		return fmt.Errorf("splunk hec refused the token (%s): check the token and that it is enabled", desc)
	case a.status == http.StatusNotFound:
		return fmt.Errorf("splunk hec: %s from %s: check the url", desc, s.base)
	case a.reply.code() == codeChannelMissing:
		return fmt.Errorf("splunk hec: %s: the token has indexer acknowledgement on: set indexer_ack", desc)
	case a.reply.code() == codeInvalidChannel:
		return fmt.Errorf("splunk hec: %s: Splunk does not accept the request channel (a proxy rewriting it?)", desc)
	case a.reply.code() == codeAckDisabled:
		return fmt.Errorf("splunk hec: %s: indexer_ack is set but the token has indexer acknowledgement off", desc)
	}
	return fmt.Errorf("splunk hec: %s", desc)
}

// waitAcks polls /services/collector/ack until Splunk reports every id
// indexed, or fails as retryable once AckTimeout has passed.
func (s *Sink) waitAcks(ctx context.Context, ids []int64) error {
	pending := make(map[int64]bool, len(ids))
	for _, id := range ids {
		pending[id] = true
	}
	deadline := s.now().Add(s.ackTimeout)
	wait := ackPollFirst
	for {
		if err := s.pollAcks(ctx, pending); err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		left := deadline.Sub(s.now())
		if left <= 0 {
			return &sink.RetryableError{Err: fmt.Errorf("indexer acknowledgement of %d of %d requests not received within %s (the batch is resent)",
				len(pending), len(ids), s.ackTimeout)}
		}
		if err := s.sleep(ctx, min(wait, left)); err != nil {
			return fmt.Errorf("wait for indexer acknowledgement: %w", err)
		}
		wait = min(wait*2, ackPollMax)
	}
}

// pollAcks asks once for the pending ids and removes those indexed. Splunk
// forgets an id once it has answered true, so each is asked until then only.
func (s *Sink) pollAcks(ctx context.Context, pending map[int64]bool) error {
	q := struct {
		Acks []int64 `json:"acks"`
	}{}
	for id := range pending {
		q.Acks = append(q.Acks, id)
	}
	body, _ := json.Marshal(q)
	a, err := s.do(ctx, http.MethodPost, pathAck, body, true, s.channel)
	if err != nil {
		return fmt.Errorf("query indexer acknowledgement: %w", err)
	}
	if a.status != http.StatusOK {
		return fmt.Errorf("query indexer acknowledgement: %w", s.classify(a))
	}
	for id := range pending {
		if a.reply.Acks[strconv.FormatInt(id, 10)] {
			delete(pending, id)
		}
	}
	return nil
}

// Check probes HEC without indexing anything: health must answer 200, and
// an event request with an empty body must answer 400 code 5 "No data",
// which Splunk gives only to a valid, enabled token (401 or 403 otherwise).
// With IndexerAck it also asks for the status of an id on a fresh channel,
// which fails with code 14 if the token has acknowledgement off. Without
// it, a token that has acknowledgement on fails with code 10. Whether the
// token may write the configured indexes cannot be checked without writing.
func (s *Sink) Check(ctx context.Context) error {
	a, err := s.do(ctx, http.MethodGet, pathHealth, nil, false, "")
	if err != nil {
		return fmt.Errorf("check splunk sink: health: %w", err)
	}
	if a.status != http.StatusOK {
		return fmt.Errorf("check splunk sink: health: %w", s.classify(a))
	}
	// A channel of its own, so that Check never consumes an ack that a
	// Write is waiting for (Splunk forgets an id once answered true).
	channel := ""
	if s.ack {
		channel = uuid.NewString()
	}
	a, err = s.do(ctx, http.MethodPost, pathEvent, []byte{}, true, channel)
	if err != nil {
		return fmt.Errorf("check splunk sink: token: %w", err)
	}
	if a.status != http.StatusBadRequest || a.reply.code() != codeNoData {
		if a.status == http.StatusOK {
			return fmt.Errorf("check splunk sink: token: an empty request answered %s, want 400 code 5: is the url a Splunk HEC?", a.describe())
		}
		return fmt.Errorf("check splunk sink: token: %w", s.classify(a))
	}
	if !s.ack {
		return nil
	}
	a, err = s.do(ctx, http.MethodPost, pathAck, []byte(`{"acks":[0]}`), true, channel)
	if err != nil {
		return fmt.Errorf("check splunk sink: indexer acknowledgement: %w", err)
	}
	if a.status != http.StatusOK {
		return fmt.Errorf("check splunk sink: indexer acknowledgement: %w", s.classify(a))
	}
	return nil
}
