package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Activity-log scope kinds (DESIGN.md §5).
const (
	ScopeManagementGroup = "management_group"
	ScopeTenant          = "tenant"
	ScopeSubscription    = "subscription"
)

// ActivityLog is the payload of an activity_log record: one Activity Log
// event of one scope, with the fields audits ask about lifted out and the
// original event kept exactly as ARM returned it.
type ActivityLog struct {
	Scope               Scope     `json:"scope"`
	EventDataID         string    `json:"event_data_id"`
	CorrelationID       string    `json:"correlation_id,omitempty"`
	OperationName       string    `json:"operation_name,omitempty"`
	Category            string    `json:"category,omitempty"`
	Level               string    `json:"level,omitempty"`
	Status              string    `json:"status,omitempty"`
	Caller              string    `json:"caller,omitempty"`
	Identity            Identity  `json:"identity"`
	ResourceID          string    `json:"resource_id,omitempty"`
	EventTimestamp      time.Time `json:"event_timestamp"`
	SubmissionTimestamp time.Time `json:"submission_timestamp,omitzero"`
	// CollectionRun names the collection pass that first stored the event:
	// the pass's start in UTC, RFC 3339 to the second (CollectionRunID),
	// the same for every scope of the pass. A record stored by a version
	// before the field has none. Sinks group a run's events by it (the
	// runbook layout writes one JSON array per management group and run).
	CollectionRun string `json:"collection_run,omitempty"`
	// Event is the event's JSON in the bytes ARM sent: never decoded into a
	// map and re-encoded, so numbers beyond 2^53, key order and JSON held in
	// strings survive (DESIGN.md §5). encoding/json compacts and
	// HTML-escapes a RawMessage it marshals, so producers splice it in with
	// MarshalActivityLog instead.
	Event json.RawMessage `json:"event,omitempty"`
}

// Scope names whose Activity Log an event came from.
type Scope struct {
	Kind string `json:"kind"` // ScopeManagementGroup, ScopeTenant or ScopeSubscription
	ID   string `json:"id"`   // the group or subscription id; "" for the tenant
}

// Identity is the caller's identity as the event's claims give it.
type Identity struct {
	OID   string `json:"oid,omitempty"`
	AppID string `json:"appid,omitempty"`
	UPN   string `json:"upn,omitempty"`
}

// CollectionRunID returns the CollectionRun of a pass that started at t.
func CollectionRunID(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}

// MarshalActivityLog encodes p with p.Event embedded byte for byte: the
// same bytes as encoding/json with HTML escaping off (as AppendJSON), and
// the event appended as given. p.Event must be one valid JSON value (the
// store validates records). It is written by hand because the collector
// calls it once an event, where encoding/json's reflection was a tenth of
// the collector's CPU.
func MarshalActivityLog(p ActivityLog) ([]byte, error) {
	if len(p.Event) == 0 {
		return nil, errors.New("activity log event is empty")
	}
	out := make([]byte, 0, 512+len(p.Event))
	out = append(out, `{"scope":{"kind":`...)
	out = AppendString(out, p.Scope.Kind)
	out = append(out, `,"id":`...)
	out = AppendString(out, p.Scope.ID)
	out = append(out, `},"event_data_id":`...)
	out = AppendString(out, p.EventDataID)
	out = appendNonEmpty(out, `,"correlation_id":`, p.CorrelationID)
	out = appendNonEmpty(out, `,"operation_name":`, p.OperationName)
	out = appendNonEmpty(out, `,"category":`, p.Category)
	out = appendNonEmpty(out, `,"level":`, p.Level)
	out = appendNonEmpty(out, `,"status":`, p.Status)
	out = appendNonEmpty(out, `,"caller":`, p.Caller)
	out = append(out, `,"identity":{`...)
	mark := len(out)
	for _, f := range [...]struct{ name, v string }{{`"oid":`, p.Identity.OID}, {`"appid":`, p.Identity.AppID}, {`"upn":`, p.Identity.UPN}} {
		if f.v == "" {
			continue
		}
		if len(out) > mark {
			out = append(out, ',')
		}
		out = append(out, f.name...)
		out = AppendString(out, f.v)
	}
	out = append(out, '}')
	out = appendNonEmpty(out, `,"resource_id":`, p.ResourceID)
	var err error
	if out, err = appendTime(append(out, `,"event_timestamp":`...), p.EventTimestamp); err != nil {
		return nil, err
	}
	if !p.SubmissionTimestamp.IsZero() {
		if out, err = appendTime(append(out, `,"submission_timestamp":`...), p.SubmissionTimestamp); err != nil {
			return nil, err
		}
	}
	out = appendNonEmpty(out, `,"collection_run":`, p.CollectionRun)
	out = append(out, `,"event":`...)
	out = append(out, p.Event...)
	return append(out, '}'), nil
}

// appendNonEmpty appends name and v as a JSON member, unless v is empty
// (omitempty).
func appendNonEmpty(dst []byte, name, v string) []byte {
	if v == "" {
		return dst
	}
	return AppendString(append(dst, name...), v)
}

// appendTime appends t as time.Time's MarshalJSON does, with its error for
// a year outside 0..9999.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("encode time: year %d outside of range [0,9999]", y)
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), nil
}
