package blob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/tapline/tapline/internal/sink"
)

// StatusError is a response of the storage service that the sink did not
// expect, reduced to what is safe to show: azcore's own message holds the
// whole response body.
type StatusError struct {
	Op     string // "put blob", "get blob", "check container"
	Blob   string // blob name, "" for container operations
	Status int    // HTTP status
	Code   string // x-ms-error-code, e.g. "AuthorizationFailure"
	Hint   string // what the operator can do, may be ""
}

// Error describes the failed operation, its status and error code.
func (e *StatusError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Blob != "" {
		fmt.Fprintf(&b, " %q", e.Blob)
	}
	fmt.Fprintf(&b, ": status %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Hint != "" {
		b.WriteString(": " + e.Hint)
	}
	return b.String()
}

// safeError carries a message with secrets removed and the original error
// for errors.Is and errors.As.
type safeError struct {
	msg string
	err error
}

func (e *safeError) Error() string { return e.msg }
func (e *safeError) Unwrap() error { return e.err }

// classify turns an error of the storage client into what the shipper acts
// on, following the sink contract: transient failures (network, timeouts,
// 408, 429, 500, 502, 503, 504) are retryable with the service's
// Retry-After; credentials or configuration (401, 403, 404 of the
// container, other 4xx) are plain errors; 413 refuses the content. No
// message holds a key, SAS or token.
func (s *Sink) classify(op, name string, err error) error {
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &re):
		return s.classifyStatus(op, name, re)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &sink.RetryableError{Err: &safeError{msg: op + " " + strconv.Quote(name) + ": " + s.redact(err.Error()), err: err}}
	}
	// Credentials (azidentity) mark the failures a retry cannot fix.
	var nr interface{ NonRetriable() }
	if errors.As(err, &nr) {
		return &safeError{msg: op + ": get token: " + s.redact(err.Error()), err: err}
	}
	// Anything else is the network or the transport: a retry may work.
	// *url.Error prints the request URL, which holds a SAS: drop its query.
	var ue *url.Error
	if errors.As(err, &ue) {
		host := "the blob endpoint"
		if u, err := url.Parse(ue.URL); err == nil {
			host = u.Host
		}
		msg := fmt.Sprintf("%s %q on %s: %s", op, name, host, s.redact(ue.Err.Error()))
		return &sink.RetryableError{Err: &safeError{msg: msg, err: ue.Err}}
	}
	return &sink.RetryableError{Err: &safeError{msg: fmt.Sprintf("%s %q: %s", op, name, s.redact(err.Error())), err: err}}
}

func (s *Sink) classifyStatus(op, name string, re *azcore.ResponseError) error {
	se := &StatusError{Op: op, Blob: name, Status: re.StatusCode, Code: re.ErrorCode}
	switch {
	case re.ErrorCode == string(bloberror.ContainerNotFound):
		se.Hint = fmt.Sprintf("container %q does not exist: create it (the sink never creates containers)", s.container)
		return se
	case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
		se.Hint = "check the credential and that it may read and create blobs in the container (role Storage Blob Data Contributor)"
		return se
	case re.StatusCode == http.StatusRequestEntityTooLarge:
		return sink.Invalid(se, "the blob is over the service's size limit")
	case re.StatusCode == http.StatusRequestTimeout, re.StatusCode == http.StatusTooManyRequests,
		re.StatusCode >= 500:
		return &sink.RetryableError{Err: se, After: s.retryAfter(re.RawResponse)}
	default:
		return se
	}
}

// retryAfter reads the wait a response asks for; zero without one.
func (s *Sink) retryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	return sink.RetryAfter(resp.Header, s.now())
}

// redact removes every configured secret from msg.
func (s *Sink) redact(msg string) string {
	for _, sec := range s.secrets {
		if sec != "" {
			msg = strings.ReplaceAll(msg, sec, "[REDACTED]")
		}
	}
	return msg
}

// redactURL returns u without its query (a SAS) and user information.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		if i := strings.IndexAny(u, "?#"); i >= 0 {
			return u[:i]
		}
		return u
	}
	p.RawQuery, p.Fragment, p.User = "", "", nil
	return p.String()
}
