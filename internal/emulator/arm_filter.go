package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// armField is the one optional clause an activity-log $filter may end with.
type armField uint8

const (
	armFieldNone armField = iota
	armFieldResourceGroup
	armFieldResourceURI
	armFieldProvider
	armFieldCorrelation
)

// armFields are the clause names of azure-contracts.md §2.2, spelled as the
// spec spells them.
var armFields = map[string]armField{
	"resourceGroupName": armFieldResourceGroup,
	"resourceUri":       armFieldResourceURI,
	"resourceProvider":  armFieldProvider,
	"correlationId":     armFieldCorrelation,
}

// armChannels is the one eventChannels value the tenant grammar shows.
const armChannels = "Admin, Operation"

// armFilter is a parsed activity-log $filter.
type armFilter struct {
	from, to time.Time
	channels bool // the tenant's eventChannels eq 'Admin, Operation' clause was present
	field    armField
	value    string
}

// armToken is one word of a $filter: a bare word or a quoted literal.
type armToken struct {
	text   string
	quoted bool
}

// armTokenize splits a $filter into bare words and quoted literals; within
// a literal, two quotes in a row stand for one, as in OData.
func armTokenize(s string) ([]armToken, error) {
	var toks []armToken
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '\'':
			var b strings.Builder
			i++
			for {
				if i >= len(s) {
					return nil, errors.New("a quoted literal is not closed")
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			toks = append(toks, armToken{text: b.String(), quoted: true})
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n'", rune(s[j])) {
				j++
			}
			toks = append(toks, armToken{text: s[i:j]})
			i = j
		}
	}
	return toks, nil
}

// armParseFilter parses s against the only patterns the activity log allows
// (SPEC text, 2015-04-01: "No other syntax is allowed"; azure-contracts.md
// §2.2):
//
//	eventTimestamp ge '<t1>' and eventTimestamp le '<t2>'
//	    [and eventChannels eq 'Admin, Operation']        (tenant log only)
//	    [and resourceGroupName|resourceUri|resourceProvider|correlationId eq '<value>']
//
// Times may be quoted or bare (azure-cli sends them bare, REC). Names and
// keywords must be spelled as the spec spells them, and the end time is
// required: both stricter than the newer spec text, which asks only for the
// start time (INFERRED strictness; a collector that passes here sends what
// every documented pattern shows).
func armParseFilter(s string, tenant bool) (armFilter, error) {
	var f armFilter
	toks, err := armTokenize(s)
	if err != nil {
		return f, err
	}
	pos := 0
	word := func(want string) error {
		if pos >= len(toks) {
			return fmt.Errorf("expected %q at the end", want)
		}
		t := toks[pos]
		if t.quoted || t.text != want {
			if !t.quoted && strings.EqualFold(t.text, "or") {
				return errors.New("only 'and' may join clauses")
			}
			return fmt.Errorf("expected %q, found %q", want, t.text)
		}
		pos++
		return nil
	}
	timeAt := func() (time.Time, error) {
		if pos >= len(toks) {
			return time.Time{}, errors.New("a time is missing")
		}
		t := toks[pos]
		pos++
		return armParseTime(t.text)
	}
	if err := word("eventTimestamp"); err != nil {
		return f, err
	}
	if err := word("ge"); err != nil {
		return f, err
	}
	if f.from, err = timeAt(); err != nil {
		return f, err
	}
	if pos == len(toks) {
		return f, errors.New("the end time is missing: use eventTimestamp ge '<start>' and eventTimestamp le '<end>'")
	}
	for _, w := range []string{"and", "eventTimestamp", "le"} {
		if err := word(w); err != nil {
			return f, err
		}
	}
	if f.to, err = timeAt(); err != nil {
		return f, err
	}
	for clause := 0; pos < len(toks); clause++ {
		if err := word("and"); err != nil {
			return f, err
		}
		if pos+3 > len(toks) {
			return f, errors.New("a clause is incomplete")
		}
		name, op, val := toks[pos], toks[pos+1], toks[pos+2]
		pos += 3
		if name.quoted || op.quoted || op.text != "eq" {
			return f, fmt.Errorf("expected <name> eq '<value>', found %q %q", name.text, op.text)
		}
		if !val.quoted {
			return f, fmt.Errorf("the value of %s must be quoted", name.text)
		}
		if name.text == "eventChannels" {
			switch {
			case !tenant:
				return f, errors.New("eventChannels is allowed only in the tenant activity log")
			case clause > 0 || f.channels:
				return f, errors.New("eventChannels must directly follow the time range")
			case val.text != armChannels:
				return f, fmt.Errorf("eventChannels must be '%s'", armChannels)
			}
			f.channels = true
			continue
		}
		field, ok := armFields[name.text]
		switch {
		case !ok:
			return f, fmt.Errorf("%q cannot be filtered on; allowed: resourceGroupName, resourceUri, resourceProvider, correlationId", name.text)
		case f.field != armFieldNone:
			return f, errors.New("at most one of resourceGroupName, resourceUri, resourceProvider or correlationId may follow the time range")
		}
		f.field, f.value = field, val.text
	}
	return f, nil
}

// armParseTime accepts ISO 8601 date-times as the service does: RFC 3339
// with or without fractional seconds (REC: azure-cli's
// 2018-01-01T00:00:00+00:00). Without a zone the time is taken as UTC, and a
// bare date as its midnight (both INFERRED).
func armParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an ISO 8601 date-time", s)
}

// armSelectable maps the lower-cased names $select accepts to EventData's
// field names: the spec's list (azure-contracts.md §2.2) and, INFERRED from
// the PowerShell recording's PascalCase list, the other top-level fields;
// resourceUri selects resourceId.
var armSelectable = func() map[string]string {
	m := make(map[string]string)
	for _, n := range []string{
		"authorization", "claims", "correlationId", "description", "eventDataId", "eventName",
		"eventTimestamp", "httpRequest", "level", "operationId", "operationName", "properties",
		"resourceGroupName", "resourceProviderName", "resourceId", "status", "submissionTimestamp",
		"subStatus", "subscriptionId", "caller", "category", "channels", "id", "resourceType",
		"tenantId", "relatedEvents",
	} {
		m[strings.ToLower(n)] = n
	}
	m["resourceuri"] = "resourceId"
	return m
}()

// armParseSelect parses a $select list into the set of field names to keep;
// nil keeps everything.
func armParseSelect(s string) (map[string]bool, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	keep := make(map[string]bool)
	for n := range strings.SplitSeq(s, ",") {
		name, ok := armSelectable[strings.ToLower(strings.TrimSpace(n))]
		if !ok {
			return nil, fmt.Errorf("%q is not a field of EventData", strings.TrimSpace(n))
		}
		keep[name] = true
	}
	return keep, nil
}

// armProject appends the event raw with only the top-level fields in keep,
// each value's bytes unchanged.
func armProject(b, raw []byte, keep map[string]bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return b, errors.New("event is not a JSON object")
	}
	b = append(b, '{')
	first := true
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return b, err
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return b, err
		}
		if !keep[key] {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = armAppendString(b, key)
		b = append(b, ':')
		b = append(b, v...)
	}
	return append(b, '}'), nil
}
