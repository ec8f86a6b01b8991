package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/internal/activitylog"
	"github.com/tapline/tapline/internal/azure"
	"github.com/tapline/tapline/internal/record"
)

func newDiagnosticSettings(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diagnostic-settings",
		Short: "Audit or create Azure's own diagnostic settings on management groups",
		Long: `Management groups export their Activity Log only through diagnostic
settings made over the REST API (no portal, no backfill). 'audit' lists the
groups whose settings do not send both categories (Administrative, Policy)
anywhere; 'apply --workspace ID' creates a setting sending them to a Log
Analytics workspace on each such group. The groups are those of
collector.scopes.management_groups, or every group of the tenant.`,
	}
	cmd.AddCommand(newDiagAudit(e), newDiagApply(e))
	return cmd
}

// diagGroups lists the management groups the commands work on.
func diagGroups(cmd *cobra.Command, e *env, cfgPath string) ([]string, *azure.ARM, error) {
	cfg, err := loadConfig(e, cfgPath)
	if err != nil {
		return nil, nil, err
	}
	arm, err := newARM(cfg.Azure, newLogger(e.stderr, slog.LevelWarn))
	if err != nil {
		return nil, nil, err
	}
	sel := activitylog.ScopeSelection{AllGroups: true, TenantID: cfg.Azure.TenantID}
	if cl := cfg.Collector; cl != nil && !cl.Scopes.ManagementGroups.All() {
		sel = activitylog.ScopeSelection{Groups: cl.Scopes.ManagementGroups.IDs}
	}
	scopes, err := activitylog.Resolve(cmd.Context(), arm, sel)
	if err != nil {
		return nil, nil, err
	}
	var groups []string
	for _, s := range scopes {
		if s.Kind == record.ScopeManagementGroup {
			groups = append(groups, s.ID)
		}
	}
	return groups, arm, nil
}

func newDiagAudit(e *env) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "audit --config FILE",
		Short: "List management groups without a diagnostic setting exporting their log",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			groups, arm, err := diagGroups(cmd, e, cfgPath)
			if err != nil {
				return err
			}
			st := activitylog.AuditDiagnosticSettings(cmd.Context(), arm, groups)
			writeDiag(e.stdout, st)
			for _, s := range st {
				if s.Err != nil {
					return fmt.Errorf("diagnostic-settings audit: some groups could not be read")
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "configuration file (YAML)")
	return cmd
}

func newDiagApply(e *env) *cobra.Command {
	var cfgPath, workspace, name string
	cmd := &cobra.Command{
		Use:   "apply --config FILE --workspace ID",
		Short: "Create a diagnostic setting on each management group that lacks one",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !strings.HasPrefix(strings.ToLower(workspace), "/subscriptions/") ||
				!strings.Contains(strings.ToLower(workspace), "/providers/microsoft.operationalinsights/workspaces/") {
				return usagef("--workspace must be a Log Analytics workspace resource id (/subscriptions/.../providers/Microsoft.OperationalInsights/workspaces/NAME)")
			}
			groups, arm, err := diagGroups(cmd, e, cfgPath)
			if err != nil {
				return err
			}
			failed := 0
			for _, s := range activitylog.AuditDiagnosticSettings(cmd.Context(), arm, groups) {
				switch {
				case s.Err != nil:
					failed++
					fmt.Fprintf(e.stdout, "%s\tunreadable: %v\n", s.Group, s.Err)
				case s.Covered:
					fmt.Fprintf(e.stdout, "%s\talready exported\n", s.Group)
				default:
					if err := activitylog.ApplyDiagnosticSetting(cmd.Context(), arm, s.Group, name, workspace); err != nil {
						failed++
						fmt.Fprintf(e.stdout, "%s\tfailed: %v\n", s.Group, err)
						continue
					}
					fmt.Fprintf(e.stdout, "%s\tcreated %s\n", s.Group, name)
				}
			}
			if failed > 0 {
				return fmt.Errorf("diagnostic-settings apply: %d groups failed", failed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "configuration file (YAML)")
	f.StringVar(&workspace, "workspace", "", "Log Analytics workspace resource id")
	f.StringVar(&name, "name", "tapline", "name of the diagnostic setting to create")
	return cmd
}

func writeDiag(w io.Writer, st []activitylog.DiagStatus) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tEXPORTED\tSETTINGS\tERROR")
	missing := 0
	for _, s := range st {
		exported, errText := "no", ""
		if s.Covered {
			exported = "yes"
		} else {
			missing++
		}
		if s.Err != nil {
			exported, errText = "?", s.Err.Error()
		}
		settings := strings.Join(s.Settings, ",")
		if settings == "" {
			settings = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Group, exported, settings, errText)
	}
	fmt.Fprintf(tw, "TOTAL %d groups, %d without an exporting setting\t\t\t\n", len(st), missing)
	tw.Flush()
}
