package main

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

// activityFilter selects activity_log records beyond what store.Filter
// knows (its payload fields are the gateway's): matched in Go, after the
// store's kind and time filter.
type activityFilter struct {
	scope, operation, caller, status string
}

func (f activityFilter) match(p *record.ActivityLog) bool {
	if f.scope != "" && !strings.EqualFold(f.scope, p.Scope.ID) &&
		!(strings.EqualFold(f.scope, "tenant") && p.Scope.Kind == record.ScopeTenant) {
		return false
	}
	if f.operation != "" && !strings.Contains(strings.ToLower(p.OperationName), strings.ToLower(f.operation)) {
		return false
	}
	if f.caller != "" && !strings.EqualFold(f.caller, p.Caller) && !strings.EqualFold(f.caller, p.Identity.UPN) &&
		!strings.EqualFold(f.caller, p.Identity.OID) && !strings.EqualFold(f.caller, p.Identity.AppID) {
		return false
	}
	if f.status != "" && !strings.EqualFold(f.status, p.Status) {
		return false
	}
	return true
}

func newQueryActivity(e *env) *cobra.Command {
	var q queryFlags
	var af activityFilter
	var limit int
	cmd := &cobra.Command{
		Use:   "activity",
		Short: "List collected Activity Log events, oldest first",
		Example: `  tapline query activity --store tapline.db --since 7d --operation policyAssignments/write
  tapline query activity --config tapline.yaml --scope mg-corp --caller alice@contoso.com --format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The store reads the one scope's records; match checks it again.
			f := store.Filter{Kind: record.KindActivityLog, Scope: af.scope}
			return q.withStore(cmd.Context(), e, &f, func(st *store.Store) error {
				return writeActivity(cmd.Context(), e.stdout, q.format, st, f, af, limit)
			})
		},
	}
	q.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&af.scope, "scope", "", "management group or subscription id, or tenant")
	fl.StringVar(&af.operation, "operation", "", "text in the operation name, e.g. roleAssignments/write (case-insensitive)")
	fl.StringVar(&af.caller, "caller", "", "caller: UPN, object id or app id")
	fl.StringVar(&af.status, "status", "", "event status, e.g. Succeeded, Failed, Started")
	fl.IntVar(&limit, "limit", 0, "at most this many records (0: all)")
	return cmd
}

var activityColumns = []string{"time", "scope", "operation", "status", "level", "caller", "category", "resource_id", "correlation_id"}

func writeActivity(ctx context.Context, w io.Writer, format string, st *store.Store, f store.Filter, af activityFilter, limit int) error {
	return writeKept(ctx, newTableOut(w, format, activityColumns), st, f, limit, af.match,
		func(r record.Record, p *record.ActivityLog) []string {
			scope := p.Scope.Kind
			if p.Scope.ID != "" {
				scope = p.Scope.ID
			}
			return []string{r.Time.UTC().Format(time.RFC3339Nano), scope, p.OperationName, p.Status, p.Level,
				p.Caller, p.Category, p.ResourceID, p.CorrelationID}
		})
}
