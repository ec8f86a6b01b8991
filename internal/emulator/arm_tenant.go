package emulator

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ARMTenantScope is the scope of the tenant-level activity log, for
// ARMTenant.Events and ARM.AddEvents.
const ARMTenantScope = "/"

// ARMGroupScope returns the scope (resource id) of management group
// groupID's activity log, for ARMTenant.Events and ARM.AddEvents.
func ARMGroupScope(groupID string) string {
	return "/providers/Microsoft.Management/managementGroups/" + groupID
}

// ARMSubscriptionScope returns the scope (resource id) of a subscription's
// activity log, for ARMTenant.Events and ARM.AddEvents.
func ARMSubscriptionScope(subscriptionID string) string {
	return "/subscriptions/" + subscriptionID
}

// ARMGroup is one management group below the tenant root group.
type ARMGroup struct {
	ID          string // the group's name, unique in the tenant (case-insensitive)
	DisplayName string // "" means ID
	Parent      string // the parent group's id; "" means the tenant root group
}

// ARMSubscription is one subscription, placed under a management group.
type ARMSubscription struct {
	ID          string
	DisplayName string // "" means ID
	Parent      string // the parent group's id; "" means the tenant root group
}

// ARMTenant is a tenant's hierarchy and activity logs. The tenant root group
// is implicit: its id and name are ARMConfig.TenantID.
type ARMTenant struct {
	// RootDisplayName is the root group's display name; "" means "Tenant
	// Root Group" (INFERRED: the portal's default; the recording sanitised it).
	RootDisplayName string
	Groups          []ARMGroup
	Subscriptions   []ARMSubscription
	// Events holds explicit activity-log events by scope (ARMGroupScope,
	// ARMSubscriptionScope, ARMTenantScope). Each is served in exactly the
	// bytes given, at its eventTimestamp (RFC 3339).
	Events map[string][]json.RawMessage
	// Generated adds events generated on demand to every scope's log.
	Generated ARMGenerated
}

// ARMGenerated describes events generated on demand, never stored: every
// scope (each management group including the root, each subscription and the
// tenant) has PerScope events; event i of a scope happens at Start + phase +
// i*Step, where phase in [0, Step) is derived from the scope and Seed. A
// time window therefore maps to an index range by arithmetic, and an event's
// content comes from a PRNG seeded with (Seed, scope, i): the same event has
// the same bytes on every read, and a page costs O(page) to produce.
type ARMGenerated struct {
	PerScope int           // events per scope; 0 generates none
	Start    time.Time     // the earliest possible event time
	Step     time.Duration // spacing between a scope's events; rounded down to 100ns, at least 100ns
	Seed     uint64
}

// ARMTenantSpec describes a generated tenant (see GenerateTenant).
type ARMTenantSpec struct {
	Groups                int // management groups below the root
	Levels                int // depth of the hierarchy below the root; clamped to [1, Groups]
	SubscriptionsPerGroup int // subscriptions under each non-root group
	EventsPerScope        int // activity-log events per scope (groups incl. root, subscriptions, tenant)
	// Start and End bound the events: a scope's events are spread evenly
	// over [Start, End). A zero or inverted range spaces them one minute apart.
	Start, End time.Time
	Seed       uint64
}

// GenerateTenant returns a deterministic tenant for spec: Groups management
// groups over Levels levels under the root (group k sits at level
// 1 + k*Levels/Groups, so every level has groups, and its parent is drawn from
// the level above), SubscriptionsPerGroup subscriptions under each, and
// EventsPerScope generated events per scope. Only the hierarchy is held in
// memory; events are generated when a page needs them.
func GenerateTenant(spec ARMTenantSpec) ARMTenant {
	n := max(spec.Groups, 0)
	levels := min(max(spec.Levels, 1), max(n, 1))
	rng := armRand{s: armMix(spec.Seed ^ 0x5bd1e995)}
	first := func(level int) int { // index of the first group at level (1-based)
		return ((level-1)*n + levels - 1) / levels
	}
	t := ARMTenant{Groups: make([]ARMGroup, n)}
	for k := range n {
		level := 1 + k*levels/n
		g := ARMGroup{
			ID:          fmt.Sprintf("mg-%d-%05d", level, k),
			DisplayName: fmt.Sprintf("Group %d (level %d)", k, level),
		}
		if level > 1 {
			lo, hi := first(level-1), first(level)
			g.Parent = t.Groups[lo+int(rng.next()%uint64(hi-lo))].ID
		}
		t.Groups[k] = g
	}
	for k, g := range t.Groups {
		for j := range max(spec.SubscriptionsPerGroup, 0) {
			t.Subscriptions = append(t.Subscriptions, ARMSubscription{
				ID:          armUUID(rng.next(), rng.next()),
				DisplayName: fmt.Sprintf("Subscription %d-%d", k, j),
				Parent:      g.ID,
			})
		}
	}
	if spec.EventsPerScope > 0 {
		step := time.Minute
		if span := spec.End.Sub(spec.Start); span > 0 {
			step = max(span/time.Duration(spec.EventsPerScope)/100*100, 100)
		}
		t.Generated = ARMGenerated{PerScope: spec.EventsPerScope, Start: spec.Start, Step: step, Seed: spec.Seed}
	}
	return t
}

type armScopeKind uint8

const (
	armScopeTenant armScopeKind = iota
	armScopeGroup
	armScopeSubscription
)

// armScope is one activity log: the tenant's, a group's or a subscription's.
type armScope struct {
	kind      armScopeKind
	id        string // group or subscription id as configured; the tenant id for the tenant
	key       string // armScopeKey of its resource id
	hash      uint64
	resource  string // resource id; "" for the tenant
	ancestors string // the scope's group (a subscription's parent) and its ancestors, nearest first, comma-separated (Policy properties.ancestors)
	hierarchy string // root-first path ending with id, "/"-separated (INFERRED: Administrative properties.hierarchy)
}

type armGroupNode struct {
	id, display string
	parent      *armGroupNode
	groups      []*armGroupNode
	subs        []*armSubNode
	depth       int // 0 for the root
	scope       *armScope
}

type armSubNode struct {
	id, display string
	parent      *armGroupNode
	scope       *armScope
}

// armHierarchy is the tenant's tree, immutable once built.
type armHierarchy struct {
	root        *armGroupNode
	groups      map[string]*armGroupNode // lower-case id
	subs        map[string]*armSubNode   // lower-case id
	order       []*armGroupNode          // pre-order, root first
	scopes      map[string]*armScope     // armScopeKey
	tenantScope *armScope
}

// armScopeKey is the case-insensitive map key of a scope: ARM ids compare
// case-insensitively.
func armScopeKey(scope string) string {
	s := strings.ToLower(strings.TrimSpace(scope))
	if s = strings.TrimRight(s, "/"); s == "" {
		return "/"
	}
	return s
}

// armValidID reports whether id can be a management group, subscription or
// tenant id: 1 to 90 letters, digits, '-', '_', '.', '(' or ')' (the rule
// for group ids as Azure documents it; not in the contracts file, so
// INFERRED here). Ids are written into JSON unescaped, so this also keeps
// generated events well-formed.
func armValidID(id string) bool {
	if id == "" || len(id) > 90 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.()", c) >= 0) {
			return false
		}
	}
	return true
}

func newARMHierarchy(tenantID string, t ARMTenant) (*armHierarchy, error) {
	h := &armHierarchy{
		groups: make(map[string]*armGroupNode, len(t.Groups)+1),
		subs:   make(map[string]*armSubNode, len(t.Subscriptions)),
		scopes: make(map[string]*armScope, len(t.Groups)+len(t.Subscriptions)+2),
	}
	h.root = &armGroupNode{id: tenantID, display: armFirst(t.RootDisplayName, "Tenant Root Group")}
	h.groups[strings.ToLower(tenantID)] = h.root
	for _, g := range t.Groups {
		if !armValidID(g.ID) {
			return nil, fmt.Errorf("arm emulator: group id %q is empty, too long or has characters ids cannot have", g.ID)
		}
		if h.groups[strings.ToLower(g.ID)] != nil {
			return nil, fmt.Errorf("arm emulator: group id %q is not unique", g.ID)
		}
		h.groups[strings.ToLower(g.ID)] = &armGroupNode{id: g.ID, display: armFirst(g.DisplayName, g.ID)}
	}
	parentOf := func(id string) (*armGroupNode, error) {
		if id == "" {
			return h.root, nil
		}
		if p := h.groups[strings.ToLower(id)]; p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("arm emulator: parent group %q is unknown", id)
	}
	for _, g := range t.Groups {
		node := h.groups[strings.ToLower(g.ID)]
		p, err := parentOf(g.Parent)
		if err != nil {
			return nil, err
		}
		node.parent = p
		p.groups = append(p.groups, node)
	}
	for _, s := range t.Subscriptions {
		if !armValidID(s.ID) {
			return nil, fmt.Errorf("arm emulator: subscription id %q is empty, too long or has characters ids cannot have", s.ID)
		}
		if h.subs[strings.ToLower(s.ID)] != nil {
			return nil, fmt.Errorf("arm emulator: subscription id %q is not unique", s.ID)
		}
		p, err := parentOf(s.Parent)
		if err != nil {
			return nil, err
		}
		node := &armSubNode{id: s.ID, display: armFirst(s.DisplayName, s.ID), parent: p}
		h.subs[strings.ToLower(s.ID)] = node
		p.subs = append(p.subs, node)
	}
	// Pre-order walk from the root; a group on a cycle is never reached.
	stack := []*armGroupNode{h.root}
	for len(stack) > 0 {
		g := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if g.parent != nil {
			g.depth = g.parent.depth + 1
		}
		h.order = append(h.order, g)
		for i := len(g.groups) - 1; i >= 0; i-- {
			stack = append(stack, g.groups[i])
		}
	}
	if len(h.order) != len(t.Groups)+1 {
		return nil, fmt.Errorf("arm emulator: the group hierarchy has a cycle")
	}
	h.tenantScope = h.addScope(&armScope{kind: armScopeTenant, id: tenantID, hierarchy: tenantID})
	for _, g := range h.order {
		g.scope = h.addScope(&armScope{
			kind: armScopeGroup, id: g.id, resource: ARMGroupScope(g.id),
			ancestors: armAncestors(g), hierarchy: armPath(g),
		})
		for _, s := range g.subs {
			s.scope = h.addScope(&armScope{
				kind: armScopeSubscription, id: s.id, resource: ARMSubscriptionScope(s.id),
				ancestors: armAncestors(g), hierarchy: armPath(g) + "/" + s.id,
			})
		}
	}
	return h, nil
}

func (h *armHierarchy) addScope(sc *armScope) *armScope {
	sc.key = armScopeKey(sc.resource)
	sc.hash = armHashString(sc.key)
	h.scopes[sc.key] = sc
	return sc
}

// armAncestors lists g and its ancestors, nearest first, comma-separated.
func armAncestors(g *armGroupNode) string {
	var ids []string
	for ; g != nil; g = g.parent {
		ids = append(ids, g.id)
	}
	return strings.Join(ids, ",")
}

// armPath lists the groups from the root down to g, "/"-separated.
func armPath(g *armGroupNode) string {
	var ids []string
	for ; g != nil; g = g.parent {
		ids = append(ids, g.id)
	}
	for i, j := 0, len(ids)-1; i < j; i, j = i+1, j-1 {
		ids[i], ids[j] = ids[j], ids[i]
	}
	return strings.Join(ids, "/")
}

// group returns the group id names, or nil.
func (h *armHierarchy) group(id string) *armGroupNode {
	return h.groups[strings.ToLower(id)]
}

// armRand is splitmix64: small, fast and good enough for synthetic data.
type armRand struct{ s uint64 }

func (r *armRand) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return armMix(r.s)
}

// armMix is splitmix64's finaliser.
func armMix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// armHashString is FNV-1a, 64 bits.
func armHashString(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}

const armHex = "0123456789abcdef"

// armUUID formats two random words as a version-4 UUID.
func armUUID(hi, lo uint64) string {
	var b [36]byte
	return string(armAppendUUID(b[:0], hi, lo))
}

func armAppendUUID(b []byte, hi, lo uint64) []byte {
	hi = hi&^0xf000 | 0x4000                                 // version 4
	lo = lo&^(0xc000<<48) | 0x8000<<48                       // RFC 4122 variant
	for i, shift := 0, 60; i < 16; i, shift = i+1, shift-4 { // hi: 8-4-4
		if i == 8 || i == 12 {
			b = append(b, '-')
		}
		b = append(b, armHex[(hi>>uint(shift))&0xf])
	}
	b = append(b, '-')
	for i, shift := 0, 60; i < 16; i, shift = i+1, shift-4 { // lo: 4-12
		if i == 4 {
			b = append(b, '-')
		}
		b = append(b, armHex[(lo>>uint(shift))&0xf])
	}
	return b
}
