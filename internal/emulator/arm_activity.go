package emulator

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Activity-log api-versions (azure-contracts.md §2.1): the management-group
// log is documented only with 2017-03-01-preview; the subscription and
// tenant logs with 2015-04-01. That other versions are refused is INFERRED.
var (
	armLogVersions      = []string{"2015-04-01"}
	armGroupLogVersions = []string{"2017-03-01-preview"}
)

// armStored is an explicit event: given in ARMTenant.Events or added later.
type armStored struct {
	ticks    int64
	seq      int64 // insertion order, to order events of equal time
	raw      json.RawMessage
	resource string
	rg       string
	provider string
	corrID   string
}

func parseARMStored(raw json.RawMessage) (armStored, error) {
	var p struct {
		EventTimestamp       string `json:"eventTimestamp"`
		ResourceID           string `json:"resourceId"`
		ResourceGroupName    string `json:"resourceGroupName"`
		CorrelationID        string `json:"correlationId"`
		ResourceProviderName *struct {
			Value string `json:"value"`
		} `json:"resourceProviderName"`
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return armStored{}, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return armStored{}, fmt.Errorf("parse: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, p.EventTimestamp)
	if err != nil {
		return armStored{}, fmt.Errorf("eventTimestamp %q: %w", p.EventTimestamp, err)
	}
	st := armStored{ticks: armTicks(t), raw: bytes.Clone(raw), resource: p.ResourceID, rg: p.ResourceGroupName, corrID: p.CorrelationID}
	if p.ResourceProviderName != nil {
		st.provider = p.ResourceProviderName.Value
	}
	return st, nil
}

// insertLocked adds an explicit event to a scope's log. The log is copied,
// never changed in place, so that pages being served keep a stable view.
func (a *ARM) insertLocked(key string, st armStored) {
	a.seq++
	st.seq = a.seq
	old := a.events[key]
	i := sort.Search(len(old), func(i int) bool { return old[i].ticks > st.ticks })
	evs := make([]armStored, 0, len(old)+1)
	evs = append(append(append(evs, old[:i]...), st), old[i:]...)
	a.events[key] = evs
}

// armKey orders events: by time, then explicit after generated at equal
// times, then by index or insertion. Pages run from the greatest key down.
type armKey struct {
	ticks    int64
	explicit bool
	n        int64
}

func (k armKey) compare(o armKey) int {
	if c := cmp.Compare(k.ticks, o.ticks); c != 0 {
		return c
	}
	if k.explicit != o.explicit {
		if k.explicit {
			return 1
		}
		return -1
	}
	return cmp.Compare(k.n, o.n)
}

// The skip token is opaque to clients (azure-contracts.md §1.4, §2.3): here
// the key of the last event served, so that events added meanwhile neither
// repeat nor shift a page.
func (k armKey) token() string {
	e := 0
	if k.explicit {
		e = 1
	}
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "ev1.%d.%d.%d", k.ticks, e, k.n))
}

func armParseKeyToken(tok string) (armKey, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	parts := strings.Split(string(raw), ".")
	if err != nil || len(parts) != 4 || parts[0] != "ev1" {
		return armKey{}, errors.New("bad skip token")
	}
	ticks, err1 := strconv.ParseInt(parts[1], 10, 64)
	n, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || (parts[2] != "0" && parts[2] != "1") {
		return armKey{}, errors.New("bad skip token")
	}
	return armKey{ticks: ticks, explicit: parts[2] == "1", n: n}, nil
}

// armSkipToken returns the request's $skiptoken (also spelled $skipToken,
// REC PowerShell 2015).
func armSkipToken(r *http.Request) (string, bool) {
	q := r.URL.Query()
	for _, k := range []string{"$skiptoken", "$skipToken"} {
		if v, ok := q[k]; ok {
			return v[0], true
		}
	}
	return "", false
}

// armNextLink is the request's own URL with $skiptoken set to token.
func armNextLink(r *http.Request, token string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	var parts []string
	for p := range strings.SplitSeq(r.URL.RawQuery, "&") {
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); p == "" || (err == nil && strings.EqualFold(uk, "$skiptoken")) {
			continue
		}
		parts = append(parts, p)
	}
	parts = append(parts, "$skiptoken="+url.QueryEscape(token))
	return scheme + "://" + r.Host + r.URL.EscapedPath() + "?" + strings.Join(parts, "&")
}

func (a *ARM) serveGroupLog(w http.ResponseWriter, r *http.Request, id string) {
	// INFERRED: the RBAC action for reading activity logs, over the group.
	g := a.readableGroup(w, r, id, armGroupLogVersions, "Microsoft.Insights/eventtypes/values/read")
	if g == nil {
		return
	}
	a.serveEvents(w, r, g.scope)
}

func (a *ARM) serveSubscriptionLog(w http.ResponseWriter, r *http.Request, id string) {
	if !a.checkAPIVersion(w, r, armLogVersions) {
		return
	}
	s := a.h.subs[strings.ToLower(id)]
	if s == nil {
		// INFERRED: ARM's answer for a subscription it does not know.
		a.writeEnvelope(w, http.StatusNotFound, "SubscriptionNotFound", "The subscription '"+id+"' could not be found.")
		return
	}
	a.serveEvents(w, r, s.scope)
}

func (a *ARM) serveLog(w http.ResponseWriter, r *http.Request, sc *armScope, versions []string) {
	if !a.checkAPIVersion(w, r, versions) {
		return
	}
	a.serveEvents(w, r, sc)
}

// armBuffers recycles page buffers: a page of 200 events is about half a
// megabyte.
var armBuffers = sync.Pool{New: func() any { return new(armPageBuf) }}

type armPageBuf struct{ body, scratch []byte }

// serveEvents answers an activity-log read: $filter validated (§2.2), the
// 90-day retention checked with the recorded body (§2.4), then one page of
// the events in [start, end], newest first (INFERRED: no fixture holds two
// events; the portal and CLI show the log newest first), with nextLink
// carrying $skiptoken until the last page, which has none.
func (a *ARM) serveEvents(w http.ResponseWriter, r *http.Request, sc *armScope) {
	w.Header().Set("Server", "Microsoft-IIS/10.0") // REC, on the activity log's 400
	q := r.URL.Query()
	raw := q.Get("$filter")
	if strings.TrimSpace(raw) == "" {
		// Shape recorded (flat); wording INFERRED from the spec's "required".
		a.writeFlat(w, http.StatusBadRequest, "BadRequest", "The $filter query parameter is required and must contain at least the start time.")
		return
	}
	f, err := armParseFilter(raw, sc.kind == armScopeTenant)
	if err != nil {
		a.writeBadFilter(w, err.Error())
		return
	}
	now := a.now()
	if f.from.Before(now.Add(-armRetention)) {
		a.writeBody(w, http.StatusBadRequest, []byte(armStartTooOld))
		return
	}
	if f.to.Before(f.from) {
		a.writeBadFilter(w, "the end time is before the start time") // INFERRED
		return
	}
	keep, err := armParseSelect(q.Get("$select"))
	if err != nil {
		a.writeFlat(w, http.StatusBadRequest, "BadRequest", "The $select is invalid: "+err.Error()) // INFERRED
		return
	}
	var after *armKey
	if tok, ok := armSkipToken(r); ok {
		k, err := armParseKeyToken(tok)
		if err != nil {
			a.writeFlat(w, http.StatusBadRequest, "BadRequest", "The $skiptoken is invalid.") // INFERRED
			return
		}
		after = &k
	}
	pb := armBuffers.Get().(*armPageBuf)
	defer armBuffers.Put(pb)
	pb.body = append(pb.body[:0], `{"value":[`...)
	last, more, err := a.appendPage(pb, sc, f, keep, after, armTicks(now))
	if err != nil {
		a.writeEnvelope(w, http.StatusInternalServerError, "InternalServerError", err.Error())
		return
	}
	pb.body = append(pb.body, ']')
	if more {
		pb.body = append(pb.body, `,"nextLink":`...)
		pb.body = armAppendString(pb.body, armNextLink(r, last.token()))
	}
	pb.body = append(pb.body, '}')
	a.writeBody(w, http.StatusOK, pb.body)
}

// appendPage appends up to a page of sc's events matching f, newest first,
// starting below after. Generated and explicit events are merged by key;
// generated ones are produced only as the merge reaches them, so a page
// costs O(page) (more with a clause that few events match). It reports the
// key of the last event appended and whether more follow.
func (a *ARM) appendPage(pb *armPageBuf, sc *armScope, f armFilter, keep map[string]bool, after *armKey, nowTicks int64) (last armKey, more bool, err error) {
	t1, t2 := armTicks(f.from), min(armTicks(f.to), nowTicks) // events yet to happen are not served
	a.mu.Lock()
	ex := a.events[sc.key] // never modified in place
	a.mu.Unlock()

	// Explicit events: k runs down from the last one in range.
	k := sort.Search(len(ex), func(i int) bool {
		return ex[i].ticks > t2 || (after != nil && ex[i].key().compare(*after) >= 0)
	}) - 1
	// Generated events: i runs down from gi to glo.
	glo, gi := int64(0), int64(-1)
	if g := a.gen; g != nil && t1 <= t2 {
		glo, gi = g.indexRange(sc, t1, t2)
		gi--
		if after != nil {
			below := armFloorDiv(after.ticks-g.base(sc), g.step) // greatest index at or before after.ticks
			if !after.explicit && g.ticksAt(sc, below) == after.ticks {
				below = min(below, after.n) - 1
			}
			gi = min(gi, below)
		}
	}
	count := 0
	for {
		hasEx := k >= 0 && ex[k].ticks >= t1
		hasGen := gi >= glo
		if !hasEx && !hasGen {
			return last, false, nil
		}
		takeGen := hasGen && (!hasEx || armKey{ticks: a.gen.ticksAt(sc, gi), n: gi}.compare(ex[k].key()) > 0)
		if takeGen {
			key := armKey{ticks: a.gen.ticksAt(sc, gi), n: gi}
			gi--
			if count == a.pageSize && f.field == armFieldNone {
				return last, true, nil
			}
			e := a.gen.event(sc, key.n)
			a.generated.Add(1)
			if !e.matches(f.field, f.value) {
				continue
			}
			if count == a.pageSize {
				return last, true, nil
			}
			if count > 0 {
				pb.body = append(pb.body, ',')
			}
			if keep == nil {
				pb.body, pb.scratch = a.gen.appendEvent(pb.body, pb.scratch, &e)
			} else {
				var full []byte
				full, pb.scratch = a.gen.appendEvent(nil, pb.scratch, &e)
				if pb.body, err = armProject(pb.body, full, keep); err != nil {
					return last, false, err
				}
			}
			count++
			last = key
			continue
		}
		st := &ex[k]
		k--
		if !st.matches(f.field, f.value) {
			continue
		}
		if count == a.pageSize {
			return last, true, nil
		}
		if count > 0 {
			pb.body = append(pb.body, ',')
		}
		if keep == nil {
			pb.body = append(pb.body, st.raw...)
		} else if pb.body, err = armProject(pb.body, st.raw, keep); err != nil {
			return last, false, err
		}
		count++
		last = st.key()
	}
}

func (st *armStored) key() armKey { return armKey{ticks: st.ticks, explicit: true, n: st.seq} }

// matches applies the optional clause; comparisons are case-insensitive, as
// ARM ids are (INFERRED for the other fields).
func (st *armStored) matches(field armField, value string) bool {
	switch field {
	case armFieldResourceGroup:
		return strings.EqualFold(st.rg, value)
	case armFieldResourceURI:
		return strings.EqualFold(st.resource, value)
	case armFieldProvider:
		return strings.EqualFold(st.provider, value)
	case armFieldCorrelation:
		return strings.EqualFold(st.corrID, value)
	}
	return true
}

func (e *armEvent) matches(field armField, value string) bool {
	switch field {
	case armFieldResourceGroup:
		return strings.EqualFold(e.rg, value)
	case armFieldResourceURI:
		return strings.EqualFold(e.resourceID(), value)
	case armFieldProvider:
		return strings.EqualFold(e.provider(), value)
	case armFieldCorrelation:
		return strings.EqualFold(e.correlationID(), value)
	}
	return true
}
