// Package record defines the audit record envelope, its kinds and payloads,
// and the Appender interfaces that producers write to.
package record

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Kind names what a record describes. It selects the payload type of Data.
type Kind string

// The record kinds of DESIGN.md §5.
const (
	KindGatewayRequest Kind = "gateway_request"
	KindActivityLog    Kind = "activity_log"
)

// Current payload versions, one per kind.
const (
	GatewayRequestVersion = 1
	ActivityLogVersion    = 1
)

// Record is the envelope every record travels in, from producer to store to
// sink. ID is stable across retries and re-runs: sinks de-duplicate on it.
type Record struct {
	ID      string          `json:"id"`
	Kind    Kind            `json:"kind"`
	Version int             `json:"version"`
	Time    time.Time       `json:"time"`
	Data    json.RawMessage `json:"data"`
	// Encoded says Data was written by this package's encoder for Kind
	// (AppendGatewayRequest), whose output is valid JSON by construction
	// and is fuzz-tested against encoding/json, so a Journal may skip its
	// own check of the syntax. Any other producer leaves it false. It
	// travels no further than the Journal.
	Encoded bool `json:"-"`
	// Gateway, with Encoded, is the value Data encodes, for a Journal to
	// read the few fields it indexes without parsing Data back. Like
	// Encoded it stays inside the process.
	Gateway *GatewayRequest `json:"-"`
}

// ErrFull is returned by an Appender that cannot take more records because
// its size bound is reached and its policy is to reject (store.when_full).
var ErrFull = errors.New("store full")

// Appender stores records durably.
//
// Append returns nil only after every record in recs is committed. A record
// whose ID is already stored is skipped, not an error: added counts only the
// new ones. Append must not retain recs. Calls may be concurrent.
type Appender interface {
	Append(ctx context.Context, recs []Record) (added int, err error)
}

// Journal is an Appender that can also hold a record back from delivery
// until it is complete: the two phases of strict audit (DESIGN.md §6).
//
// Begin commits rec as pending: durable, visible to queries, not yet given to
// sinks. Finish replaces the record with the same ID and releases it for
// delivery; a Finish without a Begin stores rec as a new, complete record.
// Both return only after commit. Calls may be concurrent.
//
// FinishAsync is Finish without the wait: rec is validated and queued for
// the next group commit, and done, when not nil, is called with the outcome
// from the store's own goroutine (so it must not block). It returns an
// error only if rec could not be queued: ctx bounds the wait for room in a
// full queue, and without a deadline the Journal bounds it itself. A crash
// before that commit leaves the record as Begin stored it (recovered as
// interrupted).
//
// Begin and Finish do not retain rec.Data once they return. FinishAsync
// keeps rec.Data, without a copy, until it calls done: the caller may reuse
// the buffer only then, or at once if FinishAsync returned an error. With
// a nil done the buffer is never the caller's again.
type Journal interface {
	Appender
	Begin(ctx context.Context, rec Record) error
	Finish(ctx context.Context, rec Record) error
	FinishAsync(ctx context.Context, rec Record, done func(error)) error
}
