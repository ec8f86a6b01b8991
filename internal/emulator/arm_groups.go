package emulator

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// armGroupVersions are the Management Groups api-versions served
// (azure-contracts.md §1.1: 2023-04-01 latest, 2021-04-01 recorded; shapes
// identical). Older stable versions exist but are refused here: their shapes
// are not recorded.
var armGroupVersions = []string{"2020-05-01", "2021-04-01", "2023-04-01"}

const (
	armGroupType            = "Microsoft.Management/managementGroups"
	armChildSubType         = "/subscriptions"                                      // children of Get (SPEC example)
	armDescendantSubType    = "Microsoft.Management/managementGroups/subscriptions" // descendants (SPEC example)
	armExpandRecurseMessage = "`$expand=children` must be passed up if `$recurse` is set to true."
)

// armGroupInfo is ManagementGroupInfo, an entry of List (REC mg-list).
type armGroupInfo struct {
	ID         string            `json:"id"`
	Type       string            `json:"type"`
	Name       string            `json:"name"`
	Properties armGroupInfoProps `json:"properties"`
}

type armGroupInfoProps struct {
	TenantID    string `json:"tenantId"`
	DisplayName string `json:"displayName"`
}

// armGroupList is ManagementGroupListResult: "@nextLink", null on the last
// page (REC mg-list, azure-contracts.md §1.3).
type armGroupList struct {
	Value    []armGroupInfo `json:"value"`
	NextLink *string        `json:"@nextLink"`
}

// armGroup is ManagementGroup as Get returns it (REC mg-get, SPEC examples).
type armGroup struct {
	ID         string        `json:"id"`
	Type       string        `json:"type"`
	Name       string        `json:"name"`
	Properties armGroupProps `json:"properties"`
}

type armGroupProps struct {
	TenantID    string          `json:"tenantId"`
	DisplayName string          `json:"displayName"`
	Details     armGroupDetails `json:"details"`
	Children    []armChild      `json:"children,omitempty"`
}

type armGroupDetails struct {
	Version     int    `json:"version"`
	UpdatedTime string `json:"updatedTime"`
	UpdatedBy   string `json:"updatedBy"`
	// Parent is null for the root group (INFERRED).
	Parent         *armParentInfo   `json:"parent"`
	Path           []armPathElement `json:"path,omitempty"`
	AncestorsChain []armPathElement `json:"managementGroupAncestorsChain,omitempty"`
}

type armParentInfo struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
}

type armPathElement struct {
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
}

// armChild is ManagementGroupChildInfo: displayName at the top level, not
// under properties; children only when there are some (SPEC
// mg-get-expand-recurse).
type armChild struct {
	ID          string     `json:"id"`
	Type        string     `json:"type"`
	Name        string     `json:"name"`
	DisplayName string     `json:"displayName"`
	Children    []armChild `json:"children,omitempty"`
}

// armDescendant is DescendantInfo (SPEC mg-descendants).
type armDescendant struct {
	ID         string             `json:"id"`
	Type       string             `json:"type"`
	Name       string             `json:"name"`
	Properties armDescendantProps `json:"properties"`
}

type armDescendantProps struct {
	DisplayName string   `json:"displayName"`
	Parent      armIDRef `json:"parent"`
}

type armIDRef struct {
	ID string `json:"id"`
}

// armDescendantList is DescendantInfoListResult: "nextLink" without the @,
// absent on the last page (REC mg-descendants).
type armDescendantList struct {
	Value    []armDescendant `json:"value"`
	NextLink string          `json:"nextLink,omitempty"`
}

// armOffsetToken and armParseOffset make the opaque skip tokens of the
// group listings: an offset into the listing, tagged by kind.
func armOffsetToken(kind string, off int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + "." + strconv.Itoa(off)))
}

func armParseOffset(kind, tok string) (int, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	k, n, ok := strings.Cut(string(raw), ".")
	off, err2 := strconv.Atoi(n)
	if err != nil || !ok || k != kind || err2 != nil || off < 0 {
		return 0, errors.New("bad skip token")
	}
	return off, nil
}

// serveList answers List with the groups the caller may read, in hierarchy
// order, GroupPageSize a page.
func (a *ARM) serveList(w http.ResponseWriter, r *http.Request) {
	if !a.checkAPIVersion(w, r, armGroupVersions) {
		return
	}
	off := 0
	if tok, ok := armSkipToken(r); ok {
		var err error
		if off, err = armParseOffset("mg1", tok); err != nil {
			a.writeEnvelope(w, http.StatusBadRequest, "BadRequest", "The $skiptoken is invalid.") // INFERRED
			return
		}
	}
	a.mu.Lock()
	readable := make([]*armGroupNode, 0, len(a.h.order))
	for _, g := range a.h.order {
		if !a.denied[strings.ToLower(g.id)] {
			readable = append(readable, g)
		}
	}
	a.mu.Unlock()
	off = min(off, len(readable))
	end := min(off+a.groupPageSize, len(readable))
	resp := armGroupList{Value: make([]armGroupInfo, 0, end-off)}
	for _, g := range readable[off:end] {
		resp.Value = append(resp.Value, armGroupInfo{
			ID: ARMGroupScope(g.id), Type: armGroupType, Name: g.id,
			Properties: armGroupInfoProps{TenantID: a.tenant, DisplayName: g.display},
		})
	}
	if end < len(readable) {
		next := armNextLink(r, armOffsetToken("mg1", end))
		resp.NextLink = &next
	}
	a.writeJSON(w, http.StatusOK, resp)
}

// serveGet answers Get, with $expand=children|path|ancestors, $recurse and
// the one $filter the spec shows (children.childType ne Subscription).
// Wording of the 400s is INFERRED except the $recurse one, which quotes the
// spec's parameter description.
func (a *ARM) serveGet(w http.ResponseWriter, r *http.Request, id string) {
	g := a.readableGroup(w, r, id, armGroupVersions, "Microsoft.Management/managementGroups/read")
	if g == nil {
		return
	}
	q := r.URL.Query()
	expand := q.Get("$expand")
	if expand != "" && expand != "children" && expand != "path" && expand != "ancestors" {
		a.writeEnvelope(w, http.StatusBadRequest, "BadRequest", "The value '"+expand+"' is not valid for $expand; allowed: children, path, ancestors.")
		return
	}
	recurse := false
	switch v := strings.ToLower(q.Get("$recurse")); v {
	case "", "false":
	case "true":
		recurse = true
	default:
		a.writeEnvelope(w, http.StatusBadRequest, "BadRequest", "The value '"+q.Get("$recurse")+"' is not valid for $recurse.")
		return
	}
	if recurse && expand != "children" {
		a.writeEnvelope(w, http.StatusBadRequest, "BadRequest", armExpandRecurseMessage)
		return
	}
	noSubs := false
	switch filter := q.Get("$filter"); {
	case filter == "":
	case strings.EqualFold(filter, "children.childType ne Subscription"):
		noSubs = true
	default:
		a.writeEnvelope(w, http.StatusBadRequest, "BadRequest", "The $filter '"+filter+"' is not supported; allowed: children.childType ne Subscription.")
		return
	}
	resp := armGroup{
		ID: ARMGroupScope(g.id), Type: armGroupType, Name: g.id,
		Properties: armGroupProps{TenantID: a.tenant, DisplayName: g.display, Details: a.details(g)},
	}
	switch expand {
	case "children":
		resp.Properties.Children = armChildren(g, recurse, noSubs)
	case "path":
		for p := g; p != nil; p = p.parent {
			resp.Properties.Details.Path = append([]armPathElement{{Name: p.id, DisplayName: p.display}}, resp.Properties.Details.Path...)
		}
	case "ancestors":
		for p := g.parent; p != nil; p = p.parent {
			resp.Properties.Details.AncestorsChain = append(resp.Properties.Details.AncestorsChain, armPathElement{Name: p.id, DisplayName: p.display})
		}
	}
	a.writeJSON(w, http.StatusOK, resp)
}

// details are stable per group: version 1, an update time and updater
// derived from the group (values INFERRED, shape REC mg-get).
func (a *ARM) details(g *armGroupNode) armGroupDetails {
	h := g.scope.hash
	d := armGroupDetails{
		Version:     1,
		UpdatedTime: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(h%(180*24*3600*1e6)) * time.Microsecond).Format(time.RFC3339Nano),
		UpdatedBy:   armCallers[h%uint64(len(armCallers))].oid,
	}
	if p := g.parent; p != nil {
		d.Parent = &armParentInfo{ID: ARMGroupScope(p.id), Name: p.id, DisplayName: p.display}
	}
	return d
}

// armChildren lists g's child groups, then its subscriptions; with recurse,
// each child group with its own children.
func armChildren(g *armGroupNode, recurse, noSubs bool) []armChild {
	var out []armChild
	for _, c := range g.groups {
		ch := armChild{ID: ARMGroupScope(c.id), Type: armGroupType, Name: c.id, DisplayName: c.display}
		if recurse {
			ch.Children = armChildren(c, true, noSubs)
		}
		out = append(out, ch)
	}
	if !noSubs {
		for _, s := range g.subs {
			out = append(out, armChild{ID: ARMSubscriptionScope(s.id), Type: armChildSubType, Name: s.id, DisplayName: s.display})
		}
	}
	return out
}

// serveDescendants answers descendants: every group and subscription below
// the group, depth first (INFERRED order), $top a page (default
// GroupPageSize, INFERRED), nextLink until the last page.
func (a *ARM) serveDescendants(w http.ResponseWriter, r *http.Request, id string) {
	g := a.readableGroup(w, r, id, armGroupVersions, "Microsoft.Management/managementGroups/descendants/read")
	if g == nil {
		return
	}
	size := a.groupPageSize
	if top := r.URL.Query().Get("$top"); top != "" {
		n, err := strconv.Atoi(top)
		if err != nil || n < 1 {
			a.writeEnvelope(w, http.StatusBadRequest, "BadRequest", "The value '"+top+"' is not valid for $top.") // INFERRED
			return
		}
		size = n
	}
	off := 0
	if tok, ok := armSkipToken(r); ok {
		var err error
		if off, err = armParseOffset("d1", tok); err != nil {
			a.writeEnvelope(w, http.StatusBadRequest, "BadRequest", "The $skiptoken is invalid.") // INFERRED
			return
		}
	}
	all := armDescendants(g, nil)
	off = min(off, len(all))
	end := min(off+size, len(all))
	resp := armDescendantList{Value: append([]armDescendant{}, all[off:end]...)}
	if end < len(all) {
		resp.NextLink = armNextLink(r, armOffsetToken("d1", end))
	}
	a.writeJSON(w, http.StatusOK, resp)
}

func armDescendants(g *armGroupNode, out []armDescendant) []armDescendant {
	parent := armIDRef{ID: ARMGroupScope(g.id)}
	for _, c := range g.groups {
		out = append(out, armDescendant{ID: ARMGroupScope(c.id), Type: armGroupType, Name: c.id,
			Properties: armDescendantProps{DisplayName: c.display, Parent: parent}})
		out = armDescendants(c, out)
	}
	for _, s := range g.subs {
		out = append(out, armDescendant{ID: ARMSubscriptionScope(s.id), Type: armDescendantSubType, Name: s.id,
			Properties: armDescendantProps{DisplayName: s.display, Parent: parent}})
	}
	return out
}

// readableGroup checks the api-version against allowed, then that the
// group exists and the identity may read it; it returns the group, or nil
// once it has answered. An unknown group is a 403 like a denied one: ARM
// answers AuthorizationFailed, not 404 (azure-contracts.md §1.6).
func (a *ARM) readableGroup(w http.ResponseWriter, r *http.Request, id string, allowed []string, action string) *armGroupNode {
	if !a.checkAPIVersion(w, r, allowed) {
		return nil
	}
	g := a.h.group(id)
	if g == nil || a.isDenied(g.id) {
		a.writeForbidden(w, r, action, ARMGroupScope(id))
		return nil
	}
	return g
}
