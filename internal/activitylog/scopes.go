package activitylog

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tapline/tapline/internal/azure"
	"github.com/tapline/tapline/internal/record"
)

// API versions (azure-contracts.md §1.1, §2.1): the management-group
// activity log is documented only with 2017-03-01-preview.
const (
	groupsAPIVersion   = "2023-04-01"
	groupLogAPIVersion = "2017-03-01-preview"
	logAPIVersion      = "2015-04-01"
)

// Scope is one Activity Log to pull: a management group's, a
// subscription's, or the tenant's.
type Scope struct {
	Kind string // record.ScopeManagementGroup, record.ScopeTenant or record.ScopeSubscription
	ID   string // the group or subscription id; "" for the tenant
}

// Key names the scope's checkpoint in the store.
func (s Scope) Key() string {
	if s.Kind == record.ScopeTenant {
		return "activity_log/tenant"
	}
	return "activity_log/" + s.Kind + "/" + strings.ToLower(s.ID)
}

// String is the scope as the summary and logs show it.
func (s Scope) String() string {
	if s.Kind == record.ScopeTenant {
		return "tenant"
	}
	return s.Kind + ":" + s.ID
}

// logPath returns the path and api-version of the scope's Activity Log
// (azure-contracts.md §2.1).
func (s Scope) logPath() (path, apiVersion string) {
	const values = "/providers/Microsoft.Insights/eventtypes/management/values"
	switch s.Kind {
	case record.ScopeManagementGroup:
		return "/providers/Microsoft.Management/managementGroups/" + url.PathEscape(s.ID) + values, groupLogAPIVersion
	case record.ScopeSubscription:
		return "/subscriptions/" + url.PathEscape(s.ID) + values, logAPIVersion
	}
	return values, logAPIVersion
}

// groupList is ManagementGroupListResult: it pages with "@nextLink"
// (azure-contracts.md §1.3), unlike every other list here.
type groupList struct {
	Value []struct {
		Name       string `json:"name"`
		Properties struct {
			TenantID string `json:"tenantId"`
		} `json:"properties"`
	} `json:"value"`
	NextLink *string `json:"@nextLink"`
}

// descendantList is DescendantInfoListResult: "nextLink" without the @,
// absent or null on the last page. Subscriptions come as
// "/subscriptions" or "Microsoft.Management/managementGroups/subscriptions"
// (SPEC text and example disagree; accept both).
type descendantList struct {
	Value []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"value"`
	NextLink *string `json:"nextLink"`
}

// maxListPages stops a listing whose nextLink never ends.
const maxListPages = 10000

// listGroups returns the groups List shows (those the identity can read)
// and the tenant id they report.
func listGroups(ctx context.Context, arm *azure.ARM) (ids []string, tenant string, err error) {
	next := arm.URL("/providers/Microsoft.Management/managementGroups", url.Values{"api-version": {groupsAPIVersion}})
	for page := 0; next != ""; page++ {
		if page == maxListPages {
			return nil, "", fmt.Errorf("list management groups: more than %d pages", maxListPages)
		}
		body, err := arm.Get(ctx, next)
		if err != nil {
			return nil, "", fmt.Errorf("list management groups: %w", err)
		}
		var l groupList
		if err := json.Unmarshal(body, &l); err != nil {
			return nil, "", fmt.Errorf("list management groups: decode page %d: %w", page+1, err)
		}
		for _, g := range l.Value {
			ids = append(ids, g.Name)
			if tenant == "" {
				tenant = g.Properties.TenantID
			}
		}
		next = ""
		if l.NextLink != nil {
			next = *l.NextLink
		}
	}
	return ids, tenant, nil
}

// descendantGroups returns the management groups below root, following
// nextLink, subscriptions left out.
func descendantGroups(ctx context.Context, arm *azure.ARM, root string) ([]string, error) {
	var ids []string
	next := arm.URL("/providers/Microsoft.Management/managementGroups/"+url.PathEscape(root)+"/descendants",
		url.Values{"api-version": {groupsAPIVersion}})
	for page := 0; next != ""; page++ {
		if page == maxListPages {
			return nil, fmt.Errorf("list descendants of %s: more than %d pages", root, maxListPages)
		}
		body, err := arm.Get(ctx, next)
		if err != nil {
			return nil, fmt.Errorf("list descendants of %s: %w", root, err)
		}
		var l descendantList
		if err := json.Unmarshal(body, &l); err != nil {
			return nil, fmt.Errorf("list descendants of %s: decode page %d: %w", root, page+1, err)
		}
		for _, d := range l.Value {
			if strings.EqualFold(d.Type, "Microsoft.Management/managementGroups") {
				ids = append(ids, d.Name)
			}
		}
		next = ""
		if l.NextLink != nil {
			next = *l.NextLink
		}
	}
	return ids, nil
}

// ScopeSelection says which Activity Logs to pull.
type ScopeSelection struct {
	AllGroups     bool     // the tenant root group and every descendant
	Groups        []string // used when AllGroups is false
	Tenant        bool     // the tenant-level log
	Subscriptions []string
	// TenantID is the tenant root group's id; "" learns it from List.
	TenantID string
}

// Resolve lists the scopes sel names. With AllGroups it walks the tenant:
// the root group (id = tenant id) and its descendants; groups List shows
// are added too. If the descendants of the root cannot be read (403), the
// groups List shows are used and the root stays in the list, so that its
// failure is reported rather than hidden. The order is stable: root,
// descendants, then List-only groups, then subscriptions, then the tenant.
func Resolve(ctx context.Context, arm *azure.ARM, sel ScopeSelection) ([]Scope, error) {
	var out []Scope
	seen := map[string]bool{}
	add := func(s Scope) {
		if k := s.Key(); !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	if sel.AllGroups {
		listed, tenant, err := listGroups(ctx, arm)
		if err != nil {
			return nil, err
		}
		root := sel.TenantID
		if root == "" {
			root = tenant
		}
		if root == "" {
			return nil, fmt.Errorf("find the tenant root group: List shows no group and azure.tenant_id is not set")
		}
		add(Scope{Kind: record.ScopeManagementGroup, ID: root})
		desc, err := descendantGroups(ctx, arm, root)
		switch {
		case azure.IsStatus(err, http.StatusForbidden):
			// Reported through the root's own failure when it is pulled.
		case err != nil:
			return nil, err
		}
		for _, id := range desc {
			add(Scope{Kind: record.ScopeManagementGroup, ID: id})
		}
		for _, id := range listed {
			add(Scope{Kind: record.ScopeManagementGroup, ID: id})
		}
	} else {
		for _, id := range sel.Groups {
			add(Scope{Kind: record.ScopeManagementGroup, ID: id})
		}
	}
	for _, id := range sel.Subscriptions {
		add(Scope{Kind: record.ScopeSubscription, ID: id})
	}
	if sel.Tenant {
		add(Scope{Kind: record.ScopeTenant})
	}
	return out, nil
}
