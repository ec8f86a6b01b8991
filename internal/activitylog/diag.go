package activitylog

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"

	"github.com/tapline/tapline/internal/azure"
)

// Management-group diagnostic settings, Azure's own export of the log
// (azure-contracts.md §3): REST only, api-version 2020-01-01-preview, log
// categories Administrative and Policy, no metrics, no backfill.
const (
	diagAPIVersion = "2020-01-01-preview"
)

// DiagCategories are the log categories a management group's diagnostic
// setting exports (SPEC example).
var DiagCategories = []string{"Administrative", "Policy"}

// DiagStatus is the diagnostic-settings state of one management group.
type DiagStatus struct {
	Group    string
	Settings []string // names of the group's settings
	// Covered reports whether one setting sends every category of
	// DiagCategories somewhere.
	Covered bool
	Err     error // the group could not be read (e.g. 403)
}

type diagSetting struct {
	Name       string `json:"name"`
	Properties struct {
		StorageAccountID            string `json:"storageAccountId"`
		WorkspaceID                 string `json:"workspaceId"`
		EventHubAuthorizationRuleID string `json:"eventHubAuthorizationRuleId"`
		ServiceBusRuleID            string `json:"serviceBusRuleId"`
		Logs                        []struct {
			Category string `json:"category"`
			Enabled  bool   `json:"enabled"`
		} `json:"logs"`
	} `json:"properties"`
}

func (s *diagSetting) covers() bool {
	p := s.Properties
	if p.StorageAccountID == "" && p.WorkspaceID == "" && p.EventHubAuthorizationRuleID == "" && p.ServiceBusRuleID == "" {
		return false
	}
	for _, c := range DiagCategories {
		if !slices.ContainsFunc(p.Logs, func(l struct {
			Category string `json:"category"`
			Enabled  bool   `json:"enabled"`
		}) bool {
			return l.Enabled && l.Category == c
		}) {
			return false
		}
	}
	return true
}

func diagPath(group string) string {
	return "/providers/Microsoft.Management/managementGroups/" + url.PathEscape(group) + "/providers/microsoft.insights/diagnosticSettings"
}

// AuditDiagnosticSettings reads the diagnostic settings of each group.
// The list is not paged (SPEC: nextLinkName null). A group that cannot be
// read is reported in its DiagStatus, not as an error.
func AuditDiagnosticSettings(ctx context.Context, arm *azure.ARM, groups []string) []DiagStatus {
	out := make([]DiagStatus, len(groups))
	for i, g := range groups {
		out[i] = DiagStatus{Group: g}
		body, err := arm.Get(ctx, arm.URL(diagPath(g), url.Values{"api-version": {diagAPIVersion}}))
		if err != nil {
			out[i].Err = err
			continue
		}
		var l struct {
			Value []diagSetting `json:"value"`
		}
		if err := json.Unmarshal(body, &l); err != nil {
			out[i].Err = fmt.Errorf("decode diagnostic settings: %w", err)
			continue
		}
		for _, s := range l.Value {
			out[i].Settings = append(out[i].Settings, s.Name)
			if s.covers() {
				out[i].Covered = true
			}
		}
	}
	return out
}

// ApplyDiagnosticSetting creates or replaces the setting name of group,
// sending the Administrative and Policy categories to the Log Analytics
// workspace workspaceID (a resource id). PUT is idempotent.
func ApplyDiagnosticSetting(ctx context.Context, arm *azure.ARM, group, name, workspaceID string) error {
	type log struct {
		Category string `json:"category"`
		Enabled  bool   `json:"enabled"`
	}
	var body struct {
		Properties struct {
			WorkspaceID string `json:"workspaceId"`
			Logs        []log  `json:"logs"`
		} `json:"properties"`
	}
	body.Properties.WorkspaceID = workspaceID
	for _, c := range DiagCategories {
		body.Properties.Logs = append(body.Properties.Logs, log{Category: c, Enabled: true})
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	u := arm.URL(diagPath(group)+"/"+url.PathEscape(name), url.Values{"api-version": {diagAPIVersion}})
	if _, err := arm.Put(ctx, u, b); err != nil {
		return fmt.Errorf("put diagnostic setting %s of %s: %w", name, group, err)
	}
	return nil
}
