package emulator

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// armEpochTicks is the .NET tick count (100ns since 0001-01-01) of the Unix
// epoch: EventData.id ends in /ticks/{.NET ticks of eventTimestamp}
// (azure-contracts.md §2.5; DOC sample 2018-01-29T20:42:31.3810679Z ->
// 636528553513810679).
const armEpochTicks = 621355968000000000

// armTicksPerSecond: timestamps carry 7 fractional digits (100ns ticks).
const armTicksPerSecond = 10_000_000

// armTicks converts t to 100ns ticks since the Unix epoch, truncating.
func armTicks(t time.Time) int64 {
	return t.Unix()*armTicksPerSecond + int64(t.Nanosecond()/100)
}

// armTime converts ticks since the Unix epoch back to a time.
func armTime(ticks int64) time.Time {
	sec := armFloorDiv(ticks, armTicksPerSecond)
	return time.Unix(sec, (ticks-sec*armTicksPerSecond)*100).UTC()
}

// armAppendTimestamp appends ticks as RFC 3339 UTC with exactly 7
// fractional digits, as EventData's timestamps are (azure-contracts.md §2.5).
func armAppendTimestamp(b []byte, ticks int64) []byte {
	sec := armFloorDiv(ticks, armTicksPerSecond)
	frac := ticks - sec*armTicksPerSecond
	b = time.Unix(sec, 0).UTC().AppendFormat(b, "2006-01-02T15:04:05")
	b = append(b, '.')
	for d := int64(armTicksPerSecond / 10); d > 0; d /= 10 {
		b = append(b, byte('0'+frac/d%10))
	}
	return append(b, 'Z')
}

func armFloorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func armCeilDiv(a, b int64) int64 { return -armFloorDiv(-a, b) }

// armGen generates a tenant's events on demand (see ARMGenerated).
type armGen struct {
	n      int64 // events per scope
	start  int64 // ticks
	step   int64 // ticks
	seed   uint64
	tenant string
	iss    string // the v1 issuer of the tenant's tokens
	h      *armHierarchy
}

func newARMGen(tenant string, g ARMGenerated, h *armHierarchy) (*armGen, error) {
	if g.PerScope <= 0 {
		return nil, nil
	}
	if g.Start.Unix() < 0 {
		return nil, fmt.Errorf("arm emulator: generated events need a Start after 1970, got %v", g.Start)
	}
	return &armGen{
		n:      int64(g.PerScope),
		start:  armTicks(g.Start),
		step:   max(int64(g.Step/100), 1),
		seed:   g.Seed,
		tenant: tenant,
		iss:    "https://sts.windows.net/" + tenant + "/",
		h:      h,
	}, nil
}

// base is the time of a scope's event 0: Start plus a per-scope phase, so
// that scopes do not all share timestamps.
func (g *armGen) base(sc *armScope) int64 {
	return g.start + int64(armMix(sc.hash^g.seed)%uint64(g.step))
}

func (g *armGen) ticksAt(sc *armScope, i int64) int64 { return g.base(sc) + i*g.step }

// indexRange returns the indices [lo, hi) of sc's events whose time lies in
// [t1, t2]: O(1), the reason events are evenly spaced.
func (g *armGen) indexRange(sc *armScope, t1, t2 int64) (lo, hi int64) {
	b := g.base(sc)
	lo = min(max(armCeilDiv(t1-b, g.step), 0), g.n)
	hi = min(max(armFloorDiv(t2-b, g.step)+1, 0), g.n)
	return lo, max(hi, lo)
}

type armEventKind uint8

const (
	armKindRoleWrite armEventKind = iota
	armKindRoleDelete
	armKindPolicyAssignmentWrite
	armKindPolicyAudit
	armKindPolicyDeny
	armKindGroupWrite // tenant log: management group create or move (azure-contracts.md §2.1)
)

// armEvent is a generated event's fields, cheap to compute; rendering its
// JSON is the expensive part and happens only for events a page returns.
type armEvent struct {
	sc        *armScope
	ticks     int64
	kind      armEventKind
	dataID    [2]uint64
	corrID    [2]uint64
	opID      [2]uint64
	reqID     [2]uint64
	svcReqID  [2]uint64
	target    [2]uint64 // role assignment name, storage account suffix
	principal [2]uint64
	caller    *armCallerInfo
	role      *armRoleInfo
	rg        string        // resource group, "" outside subscriptions
	assign    string        // policy assignment name
	group     *armGroupNode // tenant log: the group written
	delay     int64         // submission delay, ticks
	odd       bool          // carries the description with unusual escapes
}

// armOddEvery: every event whose index is armOddPhase modulo armOddEvery has
// a description full of escapes, to prove clients keep bytes intact.
const (
	armOddEvery = 97
	armOddPhase = 13
)

// event computes the fields of sc's event i from a PRNG seeded with
// (Seed, scope, i).
func (g *armGen) event(sc *armScope, i int64) armEvent {
	r := armRand{s: armMix(g.seed ^ sc.hash ^ armMix(uint64(i)+1))}
	e := armEvent{sc: sc, ticks: g.ticksAt(sc, i), odd: i%armOddEvery == armOddPhase}
	roll := r.next() % 100
	switch {
	case sc.kind == armScopeTenant && roll < 60:
		e.kind = armKindGroupWrite
	case sc.kind == armScopeTenant:
		e.kind = armKindRoleWrite
	case roll < 35:
		e.kind = armKindRoleWrite
	case roll < 45:
		e.kind = armKindRoleDelete
	case roll < 60:
		e.kind = armKindPolicyAssignmentWrite
	case roll < 90:
		e.kind = armKindPolicyAudit
	default:
		e.kind = armKindPolicyDeny
	}
	pair := func() [2]uint64 { return [2]uint64{r.next(), r.next()} }
	e.dataID, e.corrID, e.opID, e.reqID, e.svcReqID, e.target, e.principal = pair(), pair(), pair(), pair(), pair(), pair(), pair()
	e.caller = &armCallers[r.next()%uint64(len(armCallers))]
	e.role = &armRoles[r.next()%uint64(len(armRoles))]
	e.assign = armAssignments[r.next()%uint64(len(armAssignments))]
	if sc.kind == armScopeSubscription && e.kind != armKindPolicyAssignmentWrite {
		e.rg = armResourceGroups[r.next()%uint64(len(armResourceGroups))]
	}
	if e.kind == armKindGroupWrite {
		groups := g.h.order
		if len(groups) > 1 {
			groups = groups[1:] // the root group is not created or moved
		}
		e.group = groups[r.next()%uint64(len(groups))]
	}
	e.delay = int64(5+r.next()%295) * armTicksPerSecond
	return e
}

// resourceID is the resource the event is about; for management-group logs
// it is MG-scoped (azure-contracts.md §2.6, INFERRED).
func (e *armEvent) resourceID() string {
	var b [256]byte
	return string(e.appendResourceID(b[:0]))
}

func (e *armEvent) appendResourceID(b []byte) []byte {
	sc := e.sc
	switch e.kind {
	case armKindGroupWrite:
		return append(b, ARMGroupScope(e.group.id)...)
	case armKindPolicyAssignmentWrite:
		b = append(b, sc.resource...)
		b = append(b, "/providers/Microsoft.Authorization/policyAssignments/"...)
		return append(b, e.assign...)
	}
	b = append(b, sc.resource...)
	if e.rg != "" {
		b = append(b, "/resourceGroups/"...)
		b = append(b, e.rg...)
	}
	if sc.kind == armScopeSubscription && (e.kind == armKindPolicyAudit || e.kind == armKindPolicyDeny) {
		b = append(b, "/providers/Microsoft.Storage/storageAccounts/st"...)
		return strconv.AppendUint(b, e.target[0]%1e10, 36)
	}
	b = append(b, "/providers/Microsoft.Authorization/roleAssignments/"...)
	return armAppendUUID(b, e.target[0], e.target[1])
}

// resourceType is the type of the resource the event is about.
func (e *armEvent) resourceType() string {
	switch {
	case e.kind == armKindGroupWrite:
		return "Microsoft.Management/managementGroups"
	case e.kind == armKindPolicyAssignmentWrite:
		return "Microsoft.Authorization/policyAssignments"
	case e.sc.kind == armScopeSubscription && (e.kind == armKindPolicyAudit || e.kind == armKindPolicyDeny):
		return "Microsoft.Storage/storageAccounts"
	}
	return "Microsoft.Authorization/roleAssignments"
}

// provider is resourceProviderName.value: the namespace of resourceType.
func (e *armEvent) provider() string {
	t := e.resourceType()
	for i := range len(t) {
		if t[i] == '/' {
			return t[:i]
		}
	}
	return t
}

func (e *armEvent) correlationID() string { return armUUID(e.corrID[0], e.corrID[1]) }

// operation returns operationName's value and localized value, and the HTTP
// method of the request behind the event. Localized values are INFERRED
// except "End request"/"Begin request" (DOC and SPEC samples).
func (e *armEvent) operation() (value, localized, method string) {
	switch e.kind {
	case armKindRoleDelete:
		return "Microsoft.Authorization/roleAssignments/delete", "Delete role assignment", "DELETE"
	case armKindPolicyAssignmentWrite:
		return "Microsoft.Authorization/policyAssignments/write", "Create policy assignment", "PUT"
	case armKindPolicyAudit:
		return "Microsoft.Authorization/policies/audit/action", "'audit' Policy action.", "PUT"
	case armKindPolicyDeny:
		return "Microsoft.Authorization/policies/deny/action", "'deny' Policy action.", "PUT"
	case armKindGroupWrite:
		return "Microsoft.Management/managementGroups/write", "Create or Update Management Group", "PUT"
	}
	return "Microsoft.Authorization/roleAssignments/write", "Create role assignment", "PUT"
}

// armCallerInfo is one identity that makes changes in generated tenants.
type armCallerInfo struct {
	upn, given, family string // users only
	name               string
	oid, appid         string // appid: a user's client application, or the application itself
	app                bool
	ip                 string
	aio                string
}

// armCallers: two users signing in through Azure CLI and the portal, and two
// applications (service principals). Addresses are documentation ranges.
var armCallers = []armCallerInfo{
	{upn: "alice@contoso.com", given: "Alice", family: "Smith", name: "Alice Smith", oid: "8d3e63c1-5a1f-4c1e-9d6b-0c1f2a3b4c5d",
		appid: "04b07795-8ddb-461a-bbee-02f9e1bf7b46", ip: "203.0.113.10", aio: "AVQAq/8TAAAAx0cl3XzCnH0hZ6c4q5W2bY"},
	{upn: "bob.admin@contoso.com", given: "Bob", family: "Jones", name: "Bob Jones", oid: "2b7c9e10-8f4d-4a6b-b3e2-7d5c1a9f0e8b",
		appid: "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", ip: "198.51.100.24", aio: "E2ZgYNhQ9nF3x1vK7sT0wq8bRAA="},
	{name: "tapline-deployer", oid: "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9", appid: "3c5d7e9f-1a2b-4c3d-8e5f-6a7b8c9d0e1f",
		app: true, ip: "192.0.2.7", aio: "k2BgYJi9ZWS7wLwXz6P1c3vQAQA="},
	{name: "policy-remediation", oid: "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d", appid: "7e6d5c4b-3a29-4817-b6a5-94837261504f",
		app: true, ip: "192.0.2.99", aio: "42dgYPC1lf2nUk4xRM3aTRvAAA=="},
}

// armRoleInfo is a built-in role (well-known definition ids).
type armRoleInfo struct{ name, id string }

var armRoles = []armRoleInfo{
	{"Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"},
	{"Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"},
	{"Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7"},
	{"User Access Administrator", "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"},
}

var armResourceGroups = []string{"rg-network", "rg-identity", "rg-app-prod", "rg-app-dev", "rg-data", "rg-shared"}

var armAssignments = []string{"Deny-Public-IP", "Audit-Storage-TLS", "Enforce-Tags", "Allowed-Locations", "Deploy-Diag-Logs"}

// armOddDescription is a JSON string literal, already escaped, written
// verbatim: escaped quotes, tab and newline escapes, \u escapes of
// characters that need none, an escaped solidus and a surrogate pair.
const armOddDescription = `"Escapes kept verbatim: \"quoted\"\ttab\nnewline \u00e9t\u00e9 \u2028 \u003c/script\u003e back\\slash \/ solidus \ud83d\ude00  two  spaces "`

// armAppendString appends s as a JSON string, escaping what JSON requires.
// Bytes of 0x80 and above are copied: the emulator's own strings are valid
// UTF-8. It is not record.AppendString because it also takes the []byte
// scratch buffers that hold JSON-in-string properties, so that generating
// millions of events converts and allocates nothing per property.
func armAppendString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', armHex[c>>4], armHex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// armAppendUTI appends a token id claim (uti): 22 base64url characters.
func armAppendUTI(b []byte, v [2]uint64) []byte {
	var raw [16]byte
	for i := range 8 {
		raw[i] = byte(v[0] >> (8 * i))
		raw[8+i] = byte(v[1] >> (8 * i))
	}
	return base64.RawURLEncoding.AppendEncode(b, raw[:])
}
