package emulator

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ARM defaults (azure-contracts.md §2.3: activity-log pages hold at most
// about 200 events; the management-group page size is INFERRED).
const (
	armDefaultPageSize      = 200
	armDefaultGroupPageSize = 100
)

// ARMConfig configures an Azure Resource Manager stand-in for one tenant:
// its management-group hierarchy, the activity logs of its groups,
// subscriptions and the tenant itself, and management-group diagnostic
// settings (azure-contracts.md §1 to §3).
type ARMConfig struct {
	// TenantID is the tenant's id, which is also the id and name of the
	// tenant root group. Required.
	TenantID string
	// Tenant is the hierarchy under the root group and its events; see
	// GenerateTenant for a large generated one.
	Tenant ARMTenant
	// Token reports whether a bearer token is accepted. Nil accepts any
	// non-empty bearer token.
	Token func(token string) bool
	// PageSize is the number of events per activity-log page; 0 means 200,
	// the observed maximum.
	PageSize int
	// GroupPageSize is the number of management groups per List page, and
	// the default number of entries per descendants page; 0 means 100.
	GroupPageSize int
	// Now is the clock for the 90-day retention check, for hiding events
	// that have not happened yet and for request times; nil means time.Now.
	Now func() time.Time
}

// ARMFault makes requests fail. Faults are matched in the order they were
// injected, after authentication succeeded.
type ARMFault struct {
	// Path is a substring of the request path the fault applies to; ""
	// matches any request.
	Path string
	// Status is the status to answer with, e.g. 429, 500 or 503, with an
	// ARM error body. Ignored when Malformed is set.
	Status int
	// RetryAfter is sent as Retry-After in whole seconds, rounded up. A 429
	// always carries Retry-After: 0 means 1 second.
	RetryAfter time.Duration
	// Malformed answers the request normally but cuts a 200 body in the
	// middle of its JSON (Content-Length matches the bytes sent).
	Malformed bool
	// Count is how many matching requests fail; 0 means 1.
	Count int
}

// ARMRequest is one request the stand-in received.
type ARMRequest struct {
	Time   time.Time
	Method string
	Path   string
	Query  string // the raw query string
	Status int
}

// ARM is an http.Handler standing in for management.azure.com: management
// groups (List, Get, descendants), the activity logs of management groups,
// subscriptions and the tenant, and management-group diagnostic settings.
// Activity-log events may be generated on demand, so that a tenant of
// millions of events costs memory only for what a page holds. It is safe for
// concurrent use.
type ARM struct {
	tenant        string
	now           func() time.Time
	token         func(string) bool
	pageSize      int
	groupPageSize int
	log           *slog.Logger
	h             *armHierarchy // immutable after NewARM
	gen           *armGen       // nil when no events are generated

	// generated counts generated events (each one's fields), so that tests
	// can prove a page costs O(page) whatever the size of the tenant.
	generated atomic.Int64

	mu       sync.Mutex
	faults   []ARMFault
	requests []ARMRequest
	denied   map[string]bool                      // lower-case group id
	events   map[string][]armStored               // scope key -> explicit events, ascending (ticks, seq)
	seq      int64                                // insertion order of explicit events
	diag     map[string]map[string]armDiagSetting // lower-case group id -> name -> setting
	quota    armQuota
}

var _ http.Handler = (*ARM)(nil)

// NewARM returns a stand-in for cfg. It validates the hierarchy (unique
// group ids, known parents, no cycles) and the explicit events (known scopes,
// each a JSON object with an RFC 3339 eventTimestamp). A nil log discards.
func NewARM(cfg ARMConfig, log *slog.Logger) (*ARM, error) {
	if !armValidID(cfg.TenantID) {
		return nil, fmt.Errorf("arm emulator: tenant id %q is empty or not a valid id", cfg.TenantID)
	}
	if cfg.PageSize < 0 || cfg.GroupPageSize < 0 {
		return nil, fmt.Errorf("arm emulator: negative page size")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &ARM{
		tenant:        cfg.TenantID,
		now:           cfg.Now,
		token:         cfg.Token,
		pageSize:      cfg.PageSize,
		groupPageSize: cfg.GroupPageSize,
		log:           log.With("component", "emulator.arm"),
		denied:        make(map[string]bool),
		events:        make(map[string][]armStored),
		diag:          make(map[string]map[string]armDiagSetting),
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.pageSize == 0 {
		a.pageSize = armDefaultPageSize
	}
	if a.groupPageSize == 0 {
		a.groupPageSize = armDefaultGroupPageSize
	}
	h, err := newARMHierarchy(cfg.TenantID, cfg.Tenant)
	if err != nil {
		return nil, err
	}
	a.h = h
	if a.gen, err = newARMGen(cfg.TenantID, cfg.Tenant.Generated, h); err != nil {
		return nil, err
	}
	for scope, evs := range cfg.Tenant.Events {
		sc, ok := h.scopes[armScopeKey(scope)]
		if !ok {
			return nil, fmt.Errorf("arm emulator: events for unknown scope %q", scope)
		}
		for i, raw := range evs {
			st, err := parseARMStored(raw)
			if err != nil {
				return nil, fmt.Errorf("arm emulator: event %d of scope %q: %w", i, scope, err)
			}
			a.insertLocked(sc.key, st)
		}
	}
	a.quota.reset(a.now())
	return a, nil
}

// Inject queues f: the next f.Count requests whose path contains f.Path fail
// this way.
func (a *ARM) Inject(f ARMFault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	a.mu.Lock()
	a.faults = append(a.faults, f)
	a.mu.Unlock()
}

// Deny takes read access to the management group groupID away from the
// caller: its GET, descendants, activity log and diagnostic settings answer
// 403 AuthorizationFailed, and List leaves it out (azure-contracts.md §1.3,
// §1.6). The group still shows as a child or descendant of the groups around
// it (INFERRED: getEntities lists groups the caller has "noaccess" to).
func (a *ARM) Deny(groupID string) {
	a.mu.Lock()
	a.denied[strings.ToLower(groupID)] = true
	a.mu.Unlock()
}

// AddEvents adds late-arriving events to the activity log of scope (see
// ARMGroupScope, ARMSubscriptionScope, ARMTenantScope). They are served from
// now on, each at its own eventTimestamp, which may lie in the past, in
// exactly the bytes given. AddEvents panics if scope is unknown or an event
// is not a JSON object with an RFC 3339 eventTimestamp: that is a mistake in
// the test calling it.
func (a *ARM) AddEvents(scope string, evs ...json.RawMessage) {
	sc, ok := a.h.scopes[armScopeKey(scope)]
	if !ok {
		panic(fmt.Sprintf("arm emulator: AddEvents: unknown scope %q", scope))
	}
	parsed := make([]armStored, 0, len(evs))
	for i, raw := range evs {
		st, err := parseARMStored(raw)
		if err != nil {
			panic(fmt.Sprintf("arm emulator: AddEvents: event %d: %v", i, err))
		}
		parsed = append(parsed, st)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, st := range parsed {
		a.insertLocked(sc.key, st)
	}
}

// Requests returns a copy of the log of every request received, rejected
// ones included, in order of arrival.
func (a *ARM) Requests() []ARMRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

func (a *ARM) isDenied(groupID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.denied[strings.ToLower(groupID)]
}

// takeFault removes one use of the first fault matching path.
func (a *ARM) takeFault(path string) (ARMFault, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.faults {
		f := &a.faults[i]
		if !strings.Contains(path, f.Path) {
			continue
		}
		got := *f
		if f.Count--; f.Count == 0 {
			a.faults = slices.Delete(a.faults, i, i+1)
		}
		return got, true
	}
	return ARMFault{}, false
}

// ServeHTTP serves (paths case-insensitive, as ARM's):
//
//	GET /providers/Microsoft.Management/managementGroups                        List
//	GET /providers/Microsoft.Management/managementGroups/{id}                   Get
//	GET /providers/Microsoft.Management/managementGroups/{id}/descendants       descendants
//	GET .../managementGroups/{id}/providers/Microsoft.Insights/eventtypes/management/values   MG activity log
//	GET /providers/Microsoft.Insights/eventtypes/management/values              tenant activity log
//	GET /subscriptions/{id}/providers/Microsoft.Insights/eventtypes/management/values         subscription activity log
//	GET .../managementGroups/{id}/providers/microsoft.insights/diagnosticSettings             list settings
//	GET|PUT|DELETE .../diagnosticSettings/{name}                                one setting
func (a *ARM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := a.now()
	// The entry is logged first and its status set as the status is
	// written, before the client can see a byte of the response: a client
	// that has its answer finds its request in the log.
	a.mu.Lock()
	i := len(a.requests)
	a.requests = append(a.requests, ARMRequest{Time: start, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery})
	a.mu.Unlock()
	rec := &armStatusWriter{ResponseWriter: w, logged: func(status int) {
		a.mu.Lock()
		a.requests[i].Status = status
		a.mu.Unlock()
	}}
	a.setCommonHeaders(rec, r, start)
	if !a.authenticate(rec, r) {
		return
	}
	if f, ok := a.takeFault(r.URL.Path); ok {
		a.serveFault(rec, r, f)
		return
	}
	a.route(rec, r)
}

// armStatusWriter logs the status written, for the request log.
type armStatusWriter struct {
	http.ResponseWriter
	status int
	logged func(status int)
}

func (w *armStatusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
		w.logged(status)
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *armStatusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// armRoute names what a request path addresses.
type armRoute int

const (
	armRouteNone armRoute = iota
	armRouteList
	armRouteGet
	armRouteDescendants
	armRouteGroupLog
	armRouteTenantLog
	armRouteSubscriptionLog
	armRouteDiagList
	armRouteDiagItem
)

// armParse maps a path to its route and the group or subscription id and
// setting name in it. ARM compares path segments case-insensitively
// (azure-contracts.md §2.1: "microsoft.insights" and "Microsoft.Insights"
// both recorded).
func armParse(path string) (rt armRoute, id, name string) {
	seg := strings.Split(strings.Trim(path, "/"), "/")
	is := func(i int, want string) bool { return i < len(seg) && strings.EqualFold(seg[i], want) }
	values := func(i int) bool {
		return len(seg) == i+3 && is(i, "eventtypes") && is(i+1, "management") && is(i+2, "values")
	}
	switch {
	case is(0, "providers") && is(1, "Microsoft.Management") && is(2, "managementGroups"):
		switch {
		case len(seg) == 3:
			return armRouteList, "", ""
		case len(seg) == 4 && seg[3] != "":
			return armRouteGet, seg[3], ""
		case len(seg) == 5 && is(4, "descendants"):
			return armRouteDescendants, seg[3], ""
		case is(4, "providers") && is(5, "Microsoft.Insights") && values(6):
			return armRouteGroupLog, seg[3], ""
		case len(seg) == 7 && is(4, "providers") && is(5, "Microsoft.Insights") && is(6, "diagnosticSettings"):
			return armRouteDiagList, seg[3], ""
		case len(seg) == 8 && is(4, "providers") && is(5, "Microsoft.Insights") && is(6, "diagnosticSettings") && seg[7] != "":
			return armRouteDiagItem, seg[3], seg[7]
		}
	case is(0, "providers") && is(1, "Microsoft.Insights") && values(2):
		return armRouteTenantLog, "", ""
	case is(0, "subscriptions") && len(seg) > 1 && seg[1] != "" && is(2, "providers") && is(3, "Microsoft.Insights") && values(4):
		return armRouteSubscriptionLog, seg[1], ""
	}
	return armRouteNone, "", ""
}

func (a *ARM) route(w http.ResponseWriter, r *http.Request) {
	rt, id, name := armParse(r.URL.Path)
	if rt == armRouteNone {
		a.writeNotFound(w, r)
		return
	}
	methods := []string{http.MethodGet}
	if rt == armRouteDiagItem {
		methods = []string{http.MethodGet, http.MethodPut, http.MethodDelete}
	}
	if !slices.Contains(methods, r.Method) {
		w.Header().Set("Allow", strings.Join(methods, ", "))
		a.writeEnvelope(w, http.StatusMethodNotAllowed, "MethodNotAllowed", // INFERRED
			"The requested method '"+r.Method+"' is not allowed for this resource.")
		return
	}
	switch rt {
	case armRouteList:
		a.serveList(w, r)
	case armRouteGet:
		a.serveGet(w, r, id)
	case armRouteDescendants:
		a.serveDescendants(w, r, id)
	case armRouteGroupLog:
		a.serveGroupLog(w, r, id)
	case armRouteTenantLog:
		a.serveLog(w, r, a.h.tenantScope, armLogVersions)
	case armRouteSubscriptionLog:
		a.serveSubscriptionLog(w, r, id)
	case armRouteDiagList:
		a.serveDiagList(w, r, id)
	case armRouteDiagItem:
		a.serveDiagItem(w, r, id, name)
	}
}
