package loganalytics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/tapline/tapline/internal/sink"
)

// StatusError is a response other than 204 from the Logs Ingestion API.
// Message is the service's own (its error envelope), which names the rule
// but never holds the token.
type StatusError struct {
	Stream  string
	Status  int
	Code    string // x-ms-error-code or error.code
	Message string
}

// Error describes the response.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("stream %s: status %d", e.Stream, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// maxErrorBody bounds the error body read; the service's are a few hundred
// bytes, a proxy's page may be larger.
const maxErrorBody = 16 << 10

// do sends body (gzip JSON) to stream. It returns nil on 204 and the
// status error otherwise; transport failures are retryable.
func (s *Sink) do(ctx context.Context, stream string, body []byte) (*StatusError, error) {
	req, err := runtime.NewRequest(ctx, http.MethodPost, s.base+stream+"?api-version="+apiVersion)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Raw().Header.Set("Content-Encoding", "gzip")
	if err := req.SetBody(streaming.NopCloser(bytes.NewReader(body)), "application/json"); err != nil {
		return nil, fmt.Errorf("set body: %w", err)
	}
	resp, err := s.pl.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("post to stream %s: %w", stream, ctx.Err())
		}
		return nil, &sink.RetryableError{Err: fmt.Errorf("post to stream %s: %w", stream, err)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil
	}
	se := &StatusError{Stream: stream, Status: resp.StatusCode, Code: resp.Header.Get("x-ms-error-code")}
	var env struct {
		Error struct{ Code, Message string }
	}
	if json.Unmarshal(raw, &env) == nil && (env.Error.Code != "" || env.Error.Message != "") {
		se.Message = env.Error.Message
		if se.Code == "" {
			se.Code = env.Error.Code
		}
	} else {
		se.Message = http.StatusText(resp.StatusCode)
	}
	return se, classify(se, resp.Header, s.now())
}

// classify maps a status error to the shipper's error kinds.
func classify(se *StatusError, h http.Header, now time.Time) error {
	switch st := se.Status; {
	case st == http.StatusRequestTimeout || st == http.StatusTooManyRequests || st >= 500:
		return &sink.RetryableError{Err: se, After: sink.RetryAfter(h, now)}
	case st == http.StatusRequestEntityTooLarge:
		return se // the caller splits
	case st == http.StatusBadRequest:
		return sink.Invalid(se, "the Logs Ingestion API refused the rows")
	default: // 401, 403, 404: credentials or configuration
		return se
	}
}

// post sends rows (whose gzip body is body) to stream. On 413 it splits the
// rows in two, at a record boundary near the middle when there is one, and
// sends both halves: the limit may be lower than configured, or a proxy in
// between may have its own.
func (s *Sink) post(ctx context.Context, stream string, rows []row, body []byte) error {
	se, err := s.do(ctx, stream, body)
	if se == nil || se.Status != http.StatusRequestEntityTooLarge {
		return err
	}
	if len(rows) == 1 {
		return sink.Invalid(se, fmt.Sprintf("a request of one row (%d bytes gzipped) is over the destination's size limit", len(body)))
	}
	mid := splitPoint(rows)
	s.log.Debug("request too large, splitting", "stream", stream, "bytes", len(body), "rows", len(rows))
	for _, half := range [][]row{rows[:mid], rows[mid:]} {
		if err := s.post(ctx, stream, half, s.pack.compress(half)); err != nil {
			return err
		}
	}
	return nil
}

// splitPoint returns the record boundary nearest the middle of rows, or
// the middle when rows hold one record.
func splitPoint(rows []row) int {
	mid := len(rows) / 2
	for d := 0; d < len(rows); d++ {
		for _, i := range []int{mid - d, mid + d} {
			if i > 0 && i < len(rows) && rows[i].rec != rows[i-1].rec {
				return i
			}
		}
	}
	return mid
}

// probe posts [] to stream; see Check.
func (s *Sink) probe(ctx context.Context, stream string) error {
	se, err := s.do(ctx, stream, s.pack.compress(nil))
	if se != nil && se.Status == http.StatusBadRequest {
		s.log.Debug("check: the service refused an empty array", "stream", stream, "code", se.Code)
		return nil
	}
	return err
}
