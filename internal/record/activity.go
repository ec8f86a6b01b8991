package record

import (
	"encoding/json"
	"errors"
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
// other fields go through encoding/json, the event is appended as given.
// p.Event must be one valid JSON value (the store validates records).
func MarshalActivityLog(p ActivityLog) ([]byte, error) {
	ev := p.Event
	p.Event = nil
	head, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if len(ev) == 0 {
		return nil, errors.New("activity log event is empty")
	}
	out := make([]byte, 0, len(head)+len(ev)+10)
	out = append(out, head[:len(head)-1]...) // without the closing brace
	out = append(out, `,"event":`...)
	out = append(out, ev...)
	return append(out, '}'), nil
}
