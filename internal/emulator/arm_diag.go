package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
)

// armDiagVersions: management-group diagnostic settings are specified in
// 2020-01-01-preview (azure-contracts.md §3); 2021-05-01-preview exists but
// its shapes are not recorded, so it is refused here.
var armDiagVersions = []string{"2020-01-01-preview"}

// armDiagCategories are the log categories of a management group's
// diagnostic settings (SPEC example: Administrative, Policy).
var armDiagCategories = []string{"Administrative", "Policy"}

// armDiagMaxBody bounds a PUT body.
const armDiagMaxBody = 1 << 20

// armDiagSetting is a stored setting in the shape the SPEC example answers
// with: id without a leading slash, type null, location global
// (mg-diagnostic-setting-put.spec-example.json).
type armDiagSetting struct {
	ID         string          `json:"id"`
	Type       *string         `json:"type"`
	Name       string          `json:"name"`
	Location   string          `json:"location"`
	Properties json.RawMessage `json:"properties"`
}

// armDiagProps is what PUT validates; the properties are stored and echoed
// as sent (compacted). The SPEC example's response lacks the request's
// eventHubName; the emulator echoes it (INFERRED: the example is
// hand-written and the field is in the response schema).
type armDiagProps struct {
	StorageAccountID            string          `json:"storageAccountId"`
	ServiceBusRuleID            string          `json:"serviceBusRuleId"`
	EventHubAuthorizationRuleID string          `json:"eventHubAuthorizationRuleId"`
	EventHubName                string          `json:"eventHubName"`
	WorkspaceID                 string          `json:"workspaceId"`
	Metrics                     json.RawMessage `json:"metrics"`
	Logs                        []struct {
		Category *string `json:"category"`
		Enabled  *bool   `json:"enabled"`
	} `json:"logs"`
}

// diagGroup checks the api-version and access for a diagnostic-settings
// request; it returns the group, or nil once it has answered.
func (a *ARM) diagGroup(w http.ResponseWriter, r *http.Request, id string) *armGroupNode {
	action := "microsoft.insights/diagnosticSettings/read"
	if r.Method != http.MethodGet {
		action = "microsoft.insights/diagnosticSettings/write"
	}
	return a.readableGroup(w, r, id, armDiagVersions, action)
}

// serveDiagList answers the list: {"value":[...]}, not paged (§3:
// nextLinkName null), in name order (INFERRED).
func (a *ARM) serveDiagList(w http.ResponseWriter, r *http.Request, id string) {
	g := a.diagGroup(w, r, id)
	if g == nil {
		return
	}
	a.mu.Lock()
	list := make([]armDiagSetting, 0, len(a.diag[strings.ToLower(g.id)]))
	for _, s := range a.diag[strings.ToLower(g.id)] {
		list = append(list, s)
	}
	a.mu.Unlock()
	slices.SortFunc(list, func(x, y armDiagSetting) int { return strings.Compare(x.Name, y.Name) })
	a.writeJSON(w, http.StatusOK, struct {
		Value []armDiagSetting `json:"value"`
	}{list})
}

// serveDiagItem answers GET, PUT and DELETE of one setting. Errors use the
// flat {code,message} shape §3 records for this API; codes and wording are
// INFERRED, as are DELETE's 200 (deleted) and 204 (nothing to delete).
func (a *ARM) serveDiagItem(w http.ResponseWriter, r *http.Request, id, name string) {
	g := a.diagGroup(w, r, id)
	if g == nil {
		return
	}
	gk, nk := strings.ToLower(g.id), strings.ToLower(name)
	switch r.Method {
	case http.MethodGet:
		a.mu.Lock()
		s, ok := a.diag[gk][nk]
		a.mu.Unlock()
		if !ok {
			a.writeFlat(w, http.StatusNotFound, "ResourceNotFound", "The diagnostic setting '"+name+"' doesn't exist.")
			return
		}
		a.writeJSON(w, http.StatusOK, s)
	case http.MethodDelete:
		a.mu.Lock()
		_, ok := a.diag[gk][nk]
		delete(a.diag[gk], nk)
		a.mu.Unlock()
		status := http.StatusNoContent
		if ok {
			status = http.StatusOK
		}
		w.WriteHeader(status)
	case http.MethodPut:
		props, msg := armDiagParse(r.Body)
		if msg != "" {
			a.writeFlat(w, http.StatusBadRequest, "BadRequest", msg)
			return
		}
		s := armDiagSetting{
			ID:       strings.TrimPrefix(ARMGroupScope(g.id), "/") + "/providers/microsoft.insights/diagnosticSettings/" + name,
			Name:     name,
			Location: "global",
			// Properties as sent.
			Properties: props,
		}
		a.mu.Lock()
		if a.diag[gk] == nil {
			a.diag[gk] = make(map[string]armDiagSetting)
		}
		a.diag[gk][nk] = s
		a.mu.Unlock()
		a.writeJSON(w, http.StatusOK, s)
	}
}

// armDiagParse reads a PUT body and returns its compacted properties, or a
// message saying what is wrong.
func armDiagParse(body io.Reader) (json.RawMessage, string) {
	raw, err := io.ReadAll(io.LimitReader(body, armDiagMaxBody+1))
	if err != nil || len(raw) > armDiagMaxBody {
		return nil, "The request body could not be read or is too large."
	}
	var req struct {
		Properties json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(raw, &req); err != nil || len(req.Properties) == 0 || req.Properties[0] != '{' {
		return nil, "The request body must be a JSON object with a properties object."
	}
	var p armDiagProps
	if err := json.Unmarshal(req.Properties, &p); err != nil {
		return nil, "The properties are invalid: " + err.Error()
	}
	if len(p.Metrics) > 0 && string(p.Metrics) != "null" {
		return nil, "Metrics are not supported for management group diagnostic settings."
	}
	if p.StorageAccountID == "" && p.WorkspaceID == "" && p.EventHubAuthorizationRuleID == "" && p.ServiceBusRuleID == "" {
		return nil, "At least one destination (storageAccountId, workspaceId, eventHubAuthorizationRuleId or serviceBusRuleId) is required."
	}
	for _, l := range p.Logs {
		if l.Category == nil || !slices.Contains(armDiagCategories, *l.Category) {
			return nil, "Each log must name a category: Administrative or Policy."
		}
		if l.Enabled == nil {
			return nil, "Each log must say whether it is enabled."
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, req.Properties); err != nil {
		return nil, "The properties are invalid: " + err.Error()
	}
	return buf.Bytes(), ""
}
