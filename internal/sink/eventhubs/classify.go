package eventhubs

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/go-amqp"
	"github.com/tapline/tapline/internal/sink"
)

// serverBusyRetry is the wait Event Hubs asks for when it throttles
// (com.microsoft:server-busy): "wait at least 4 seconds before any retry"
// (ServerBusyException, azure-eventhubs Java SDK reference).
const serverBusyRetry = 4 * time.Second

// AMQP conditions Event Hubs uses beyond go-amqp's constants.
const (
	condServerBusy     amqp.ErrCond = "com.microsoft:server-busy"
	condTimeout        amqp.ErrCond = "com.microsoft:timeout"
	condCancelled      amqp.ErrCond = "com.microsoft:operation-cancelled"
	condEntityDisabled amqp.ErrCond = "com.microsoft:entity-disabled"
)

// classify turns an SDK error into the sink contract's kinds:
//   - transient (connection lost, network, timeouts, throttling, server
//     busy, 408/429/5xx management replies, a context ending) ->
//     *sink.RetryableError;
//   - credentials or configuration (unauthorized, hub not found, not
//     allowed, entity disabled, 401/403/404 replies) -> the error as is,
//     which the shipper keeps retrying at its longest backoff;
//   - a batch the hub refused as too large -> *sink.InvalidError for the
//     whole batch (the size check before sending makes this rare).
//
// None of these messages holds the SAS key or a token: the SDK signs
// tokens itself and reports only status descriptions.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return retryable(err, 0)
	}
	var ehErr *azeventhubs.Error
	if errors.As(err, &ehErr) {
		switch ehErr.Code {
		case azeventhubs.ErrorCodeUnauthorizedAccess:
			return err
		case azeventhubs.ErrorCodeConnectionLost:
			return retryable(err, 0)
		}
	}
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		switch amqpErr.Condition {
		case condServerBusy:
			return retryable(err, serverBusyRetry)
		case condTimeout, condCancelled, amqp.ErrCondInternalError, amqp.ErrCondConnectionForced,
			amqp.ErrCondDetachForced, amqp.ErrCondTransferLimitExceeded, amqp.ErrCondResourceLimitExceeded:
			return retryable(err, 0)
		case amqp.ErrCondMessageSizeExceeded:
			return sink.Invalid(err, "the event hub refused a batch as over its message size limit")
		case amqp.ErrCondUnauthorizedAccess, amqp.ErrCondNotFound, amqp.ErrCondNotAllowed, condEntityDisabled:
			return err
		}
	}
	// $cbs and $management replies carry an HTTP-like status code.
	var rpc interface{ RPCCode() int }
	if errors.As(err, &rpc) {
		switch rpc.RPCCode() {
		case http.StatusRequestTimeout, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return retryable(err, 0)
		case http.StatusTooManyRequests:
			return retryable(err, serverBusyRetry)
		default:
			return err
		}
	}
	var (
		netErr  net.Error
		connErr *amqp.ConnError
		sessErr *amqp.SessionError
		linkErr *amqp.LinkError
	)
	if errors.Is(err, io.EOF) || errors.As(err, &netErr) || errors.As(err, &connErr) ||
		errors.As(err, &sessErr) || errors.As(err, &linkErr) {
		return retryable(err, 0)
	}
	return err
}

func retryable(err error, after time.Duration) error {
	return &sink.RetryableError{Err: err, After: after}
}
