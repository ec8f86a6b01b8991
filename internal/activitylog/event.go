package activitylog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/tapline/tapline/internal/record"
)

// ErrMalformedPage is wrapped by the error of a page that is not an
// EventDataCollection.
var ErrMalformedPage = errors.New("malformed activity log page")

// view is b as a string without a copy, for gjson, which parses strings
// (its ParseBytes copies). The callers never write to b afterwards: a page's
// body is read once, and its events are read-only slices of it.
func view(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// decodePage parses an activity-log page, an EventDataCollection
// (azure-contracts.md §2.3): value is required (SPEC), each event an
// object. The page is validated once; each event is then sliced out of it
// as it is, never decoded and re-encoded (gjson: encoding/json would scan
// every byte of a page several times, the collector's main cost).
func decodePage(body []byte) (events []json.RawMessage, next string, err error) {
	if !gjson.ValidBytes(body) {
		return nil, "", fmt.Errorf("%w: not valid JSON", ErrMalformedPage)
	}
	page := gjson.Parse(view(body))
	if !page.IsObject() {
		return nil, "", fmt.Errorf("%w: not an object", ErrMalformedPage)
	}
	value := page.Get("value")
	if !value.IsArray() {
		return nil, "", fmt.Errorf("%w: no value array", ErrMalformedPage)
	}
	value.ForEach(func(_, ev gjson.Result) bool {
		if !ev.IsObject() {
			err = fmt.Errorf("%w: event %d is not an object", ErrMalformedPage, len(events))
			return false
		}
		// The event's bytes in body, not a copy: ev.Raw is a piece of
		// the view of body.
		events = append(events, json.RawMessage(unsafe.Slice(unsafe.StringData(ev.Raw), len(ev.Raw))))
		return true
	})
	if err != nil {
		return nil, "", err
	}
	if events == nil {
		events = []json.RawMessage{}
	}
	if n := page.Get("nextLink"); n.Type == gjson.String {
		next = n.Str
	}
	return events, next, nil
}

// Claim names (azure-contracts.md §2.5: raw JWT claims, long URI keys for
// some). The short forms are checked too.
var (
	oidClaims   = []string{"http://schemas.microsoft.com/identity/claims/objectidentifier", "oid"}
	appIDClaims = []string{"appid", "azp"}
	upnClaims   = []string{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "upn"}
)

// claims picks the caller's oid, appid and upn out of the claims object,
// the first non-empty string of each list of names.
func claims(c gjson.Result) record.Identity {
	var id record.Identity
	c.ForEach(func(k, v gjson.Result) bool {
		if v.Type != gjson.String || v.Str == "" {
			return true
		}
		pick(&id.OID, oidClaims, k.Str, v.Str)
		pick(&id.AppID, appIDClaims, k.Str, v.Str)
		pick(&id.UPN, upnClaims, k.Str, v.Str)
		return true
	})
	return id
}

// pick sets *dst to val when name is in names and ranks before whatever
// set *dst already (names are in order of preference).
func pick(dst *string, names []string, name, val string) {
	for i, n := range names {
		if n != name {
			continue
		}
		if *dst == "" || i == 0 {
			*dst = val
		}
		return
	}
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

// NewRecord builds the activity_log record of one event of scope, read by
// the collection pass run (record.CollectionRunID; "" for none). raw is
// embedded in the record as is. Record time is eventTimestamp; an event
// without a readable one takes submissionTimestamp, else fallback.
func NewRecord(scope Scope, raw json.RawMessage, fallback time.Time, run string) (record.Record, error) {
	if !gjson.ValidBytes(raw) || !gjson.ParseBytes(raw).IsObject() {
		return record.Record{}, fmt.Errorf("%w: an event is not a JSON object", ErrMalformedPage)
	}
	return newRecord(scope, raw, fallback, run)
}

// eventFields are the EventData fields an activity_log record lifts out
// (azure-contracts.md §2.5; LocalizableStrings by their value).
type eventFields struct {
	EventDataID, CorrelationID, OperationName, Category, Level, Status, Caller, ResourceID string
	EventTimestamp, SubmissionTimestamp                                                    string
	Identity                                                                               record.Identity
}

// liftFields reads ev's top-level members once, in order; where a name
// repeats, the first one counts, as for a gjson path. Members that are
// not of the expected type are left empty.
func liftFields(ev gjson.Result) eventFields {
	var f eventFields
	var seen uint16
	str := func(bit uint16, dst *string, v gjson.Result) {
		if seen&bit != 0 {
			return
		}
		seen |= bit
		if v.Type == gjson.String {
			*dst = v.Str
		}
	}
	ev.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "eventDataId":
			str(1<<0, &f.EventDataID, v)
		case "correlationId":
			str(1<<1, &f.CorrelationID, v)
		case "operationName":
			str(1<<2, &f.OperationName, v.Get("value"))
		case "category":
			str(1<<3, &f.Category, v.Get("value"))
		case "level":
			str(1<<4, &f.Level, v)
		case "status":
			str(1<<5, &f.Status, v.Get("value"))
		case "caller":
			str(1<<6, &f.Caller, v)
		case "resourceId":
			str(1<<7, &f.ResourceID, v)
		case "eventTimestamp":
			str(1<<8, &f.EventTimestamp, v)
		case "submissionTimestamp":
			str(1<<9, &f.SubmissionTimestamp, v)
		case "claims":
			if seen&(1<<10) == 0 {
				seen |= 1 << 10
				f.Identity = claims(v)
			}
		}
		return true
	})
	return f
}

// newRecord is NewRecord for an event already known to be a valid JSON
// object (decodePage checked the whole page): the event is read once.
func newRecord(scope Scope, raw json.RawMessage, fallback time.Time, run string) (record.Record, error) {
	f := liftFields(gjson.Parse(view(raw)))
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
		Scope:               record.Scope{Kind: scope.Kind, ID: scope.ID},
		EventDataID:         f.EventDataID,
		CorrelationID:       f.CorrelationID,
		OperationName:       f.OperationName,
		Category:            f.Category,
		Level:               f.Level,
		Status:              f.Status,
		Caller:              f.Caller,
		Identity:            f.Identity,
		ResourceID:          f.ResourceID,
		EventTimestamp:      evTime.UTC(),
		SubmissionTimestamp: subTime.UTC(),
		CollectionRun:       run,
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
