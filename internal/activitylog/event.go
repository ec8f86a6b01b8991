package activitylog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// page is an EventDataCollection (azure-contracts.md §2.3). Each event is
// kept as a json.RawMessage: encoding/json copies the value's bytes as they
// are in the body, so the event is never re-encoded.
type page struct {
	Value    *[]json.RawMessage `json:"value"`
	NextLink *string            `json:"nextLink"`
}

// ErrMalformedPage is wrapped by the error of a page that is not an
// EventDataCollection.
var ErrMalformedPage = errors.New("malformed activity log page")

// decodePage parses an activity-log page. value is required (SPEC).
func decodePage(body []byte) (events []json.RawMessage, next string, err error) {
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrMalformedPage, err)
	}
	if p.Value == nil {
		return nil, "", fmt.Errorf("%w: no value array", ErrMalformedPage)
	}
	for i, ev := range *p.Value {
		if len(ev) == 0 || ev[0] != '{' {
			return nil, "", fmt.Errorf("%w: event %d is not an object", ErrMalformedPage, i)
		}
	}
	if p.NextLink != nil {
		next = *p.NextLink
	}
	return *p.Value, next, nil
}

// localizable is a LocalizableString {value, localizedValue}; value may be
// null (azure-contracts.md §2.5).
type localizable struct {
	Value *string `json:"value"`
}

func (l *localizable) String() string {
	if l == nil || l.Value == nil {
		return ""
	}
	return *l.Value
}

// eventFields are the EventData fields an activity_log record lifts out.
type eventFields struct {
	EventDataID         string                     `json:"eventDataId"`
	CorrelationID       string                     `json:"correlationId"`
	OperationName       *localizable               `json:"operationName"`
	Category            *localizable               `json:"category"`
	Level               string                     `json:"level"`
	Status              *localizable               `json:"status"`
	Caller              string                     `json:"caller"`
	Claims              map[string]json.RawMessage `json:"claims"`
	ResourceID          string                     `json:"resourceId"`
	EventTimestamp      string                     `json:"eventTimestamp"`
	SubmissionTimestamp string                     `json:"submissionTimestamp"`
}

// Claim names (azure-contracts.md §2.5: raw JWT claims, long URI keys for
// some). The short forms are checked too.
var (
	oidClaims   = []string{"http://schemas.microsoft.com/identity/claims/objectidentifier", "oid"}
	appIDClaims = []string{"appid", "azp"}
	upnClaims   = []string{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "upn"}
)

func claim(m map[string]json.RawMessage, names []string) string {
	for _, n := range names {
		var s string
		if raw, ok := m[n]; ok && json.Unmarshal(raw, &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

// RecordID returns the record id of an event: "al-" and its eventDataId,
// so that every read of the same event, in any window and any run, has the
// same id and the store keeps it once. An event without eventDataId (none
// has been seen; the schema lists it for every event) gets "al-sha256-"
// and the hash of its bytes: stable for identical bytes only.
func RecordID(eventDataID string, raw []byte) string {
	if eventDataID != "" {
		return "al-" + strings.ToLower(eventDataID)
	}
	sum := sha256.Sum256(raw)
	return "al-sha256-" + hex.EncodeToString(sum[:])
}

// NewRecord builds the activity_log record of one event of scope. raw is
// embedded in the record as is. Record time is eventTimestamp; an event
// without a readable one takes submissionTimestamp, else fallback.
func NewRecord(scope Scope, raw json.RawMessage, fallback time.Time) (record.Record, error) {
	var f eventFields
	if err := json.Unmarshal(raw, &f); err != nil {
		return record.Record{}, fmt.Errorf("%w: decode event: %w", ErrMalformedPage, err)
	}
	evTime, errT := time.Parse(time.RFC3339Nano, f.EventTimestamp)
	subTime, _ := time.Parse(time.RFC3339Nano, f.SubmissionTimestamp)
	at := evTime
	switch {
	case errT == nil:
	case !subTime.IsZero():
		at = subTime
	default:
		at = fallback
	}
	p := record.ActivityLog{
		Scope:         record.Scope{Kind: scope.Kind, ID: scope.ID},
		EventDataID:   f.EventDataID,
		CorrelationID: f.CorrelationID,
		OperationName: f.OperationName.String(),
		Category:      f.Category.String(),
		Level:         f.Level,
		Status:        f.Status.String(),
		Caller:        f.Caller,
		Identity: record.Identity{
			OID:   claim(f.Claims, oidClaims),
			AppID: claim(f.Claims, appIDClaims),
			UPN:   claim(f.Claims, upnClaims),
		},
		ResourceID:          f.ResourceID,
		EventTimestamp:      evTime.UTC(),
		SubmissionTimestamp: subTime.UTC(),
		Event:               raw,
	}
	if errT != nil {
		p.EventTimestamp = at.UTC()
	}
	data, err := record.MarshalActivityLog(p)
	if err != nil {
		return record.Record{}, fmt.Errorf("encode record: %w", err)
	}
	return record.Record{
		ID:      RecordID(f.EventDataID, raw),
		Kind:    record.KindActivityLog,
		Version: record.ActivityLogVersion,
		Time:    at.UTC(),
		Data:    data,
	}, nil
}
