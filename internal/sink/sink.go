// Package sink defines the Sink interface that delivers records to one
// destination, and the error types by which a sink tells the shipper what to
// do with a failed batch.
package sink

import (
	"context"
	"errors"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// Sink delivers batches of records to one destination, at least once.
// Write returns nil only after the destination durably accepted every record;
// it may be called again with the same records after a failure, so it should
// be idempotent where the destination allows (Record.ID is the key).
// An error wrapping *RetryableError is retried; any other is permanent.
// Write must not retain recs. Calls are never concurrent.
type Sink interface {
	Write(ctx context.Context, recs []record.Record) error
	Close() error
}

// Checker is implemented by sinks that can probe their destination.
//
// Check returns nil if the destination is reachable and the sink is
// authorized to write to it. It must not write any data (`tapline check`
// runs it against production destinations). Errors follow the Write
// convention: an error wrapping *RetryableError means try again later.
type Checker interface {
	Check(ctx context.Context) error
}

// ErrClosed is returned by Write on a sink that has been closed.
var ErrClosed = errors.New("sink closed")

// RetryableError marks a failure that may succeed if the same batch is
// written again, as prometheus storage/remote's RecoverableError does. After,
// when not zero, is the destination's own hint (Retry-After) of how long to
// wait; the shipper caps it and otherwise uses its backoff. Sinks never sleep.
type RetryableError struct {
	Err   error
	After time.Duration
}

// Error returns the message of the wrapped error.
func (e *RetryableError) Error() string {
	if e.Err == nil {
		return "retryable error"
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error.
func (e *RetryableError) Unwrap() error { return e.Err }

// Retryable reports whether err wraps a *RetryableError and, if so, the wait
// it suggests (zero when the destination gave no hint).
func Retryable(err error) (after time.Duration, ok bool) {
	var re *RetryableError
	if errors.As(err, &re) {
		return re.After, true
	}
	return 0, false
}

// InvalidError marks records the destination rejected as invalid: writing
// them again cannot succeed, so the shipper moves them to the dead-letter
// table (DESIGN.md §6) instead of retrying or stopping, and delivers the rest.
//
// Indexes, when not nil, are the positions in the batch of the rejected
// records. A sink that can tell which records a destination will refuse
// (one over its size limit) checks the whole batch before sending anything;
// one that learns it from the destination's answer (Splunk's
// invalid-event-number) may have delivered other records of the batch
// already, which the shipper then writes again: duplicates under the same
// ids, as at-least-once allows. When Indexes is nil the whole batch
// was refused without saying which record was at fault; the shipper then
// splits the batch to find it. Reason is a short, human readable explanation
// (for example "record of 1048577 bytes is over the 1048576-byte limit")
// that must not hold secrets.
type InvalidError struct {
	Err     error
	Reason  string
	Indexes []int
}

// Invalid wraps err as an *InvalidError for the whole batch.
func Invalid(err error, reason string) error {
	return &InvalidError{Err: err, Reason: reason}
}

// InvalidRecords wraps err as an *InvalidError naming the rejected records
// by their positions in the batch.
func InvalidRecords(err error, reason string, indexes ...int) error {
	return &InvalidError{Err: err, Reason: reason, Indexes: indexes}
}

// Error returns the reason followed by the wrapped error's message.
func (e *InvalidError) Error() string {
	switch {
	case e.Err == nil:
		return "invalid batch: " + e.Reason
	case e.Reason == "":
		return "invalid batch: " + e.Err.Error()
	default:
		return "invalid batch: " + e.Reason + ": " + e.Err.Error()
	}
}

// Unwrap returns the wrapped error.
func (e *InvalidError) Unwrap() error { return e.Err }

// Sleep waits d, or until ctx ends and then returns its error: the pause
// between retries and between polls, which a shutdown must cut short.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
