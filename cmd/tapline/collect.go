package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tapline/tapline/internal/activitylog"
	"github.com/tapline/tapline/internal/config"
)

func newCollect(e *env) *cobra.Command {
	var cfgPath, since string
	var once, dryRun, debug bool
	cmd := &cobra.Command{
		Use:   "collect --config FILE [--once] [--since 7d] [--dry-run]",
		Short: "Pull the Activity Logs of management groups into the store",
		Long: `Collects the Activity Logs the collector section selects: each scope's window
runs from its checkpoint less collector.overlap (or collector.backfill back
on the first run) to now less collector.lag, never past the 90-day
retention. Events are stored once each, by eventDataId; a scope's
checkpoint moves only with its last records. A summary per scope follows;
the exit code is 1 if any scope failed (it is retried from its checkpoint
next time). Without --once, a pass runs every collector.every until SIGINT.`,
		Example: `  tapline collect --config tapline.yaml --once
  tapline collect --config tapline.yaml --once --since 30d --dry-run`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var sinceD time.Duration
			if since != "" {
				d, err := config.ParseDuration(since)
				if err != nil || d <= 0 {
					return usagef("--since: %q is not a positive duration (24h, 7d)", since)
				}
				sinceD = d
			}
			hasCollector := func(cfg *config.Config) error {
				if cfg.Collector == nil {
					return usagef("%s has no collector section: nothing to collect", cfgPath)
				}
				return nil
			}
			ctx := cmd.Context()
			cfg, st, log, err := start(ctx, e, cfgPath, hasCollector, slog.LevelWarn, debug)
			if err != nil {
				return err
			}
			defer st.Close()
			c, err := newCollector(cfg, st, log)
			if err != nil {
				return err
			}
			if !once && !dryRun {
				if *cfg.Collector.Every <= 0 {
					return usagef("collector.every is 0: use --once")
				}
				return collectEvery(ctx, c, cfg.Collector.Every.D(), newLogger(e.stderr, slog.LevelInfo))
			}
			opts := activitylog.RunOptions{Since: sinceD, DryRun: dryRun}
			progress(e.stderr, &opts)
			sum, err := c.Run(ctx, opts)
			writeSummary(e.stdout, sum)
			if err != nil {
				return fmt.Errorf("collect: %w", err)
			}
			if n := sum.Failed(); n > 0 {
				return fmt.Errorf("collect: %d of %d scopes failed; they keep their checkpoints and are retried next run", n, len(sum.Scopes))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "configuration file (YAML)")
	f.BoolVar(&once, "once", false, "run one pass and exit (cron, Kubernetes CronJob, Container Apps Job)")
	f.StringVar(&since, "since", "", "backfill: start every window this far back (e.g. 30d; at most 90d is available)")
	f.BoolVar(&dryRun, "dry-run", false, "read every page, write nothing (implies --once)")
	f.BoolVar(&debug, "debug", false, "log at debug level")
	return cmd
}

// progress shows a bar on stderr when it is a terminal, and plain lines
// (one per finished scope) otherwise.
func progress(w io.Writer, opts *activitylog.RunOptions) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		var bar *progressbar.ProgressBar
		opts.Scopes = func(total int) {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("scopes"),
				progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		}
		opts.Progress = func(_, _ int, _ activitylog.ScopeResult) { _ = bar.Add(1) }
		return
	}
	opts.Progress = func(done, total int, r activitylog.ScopeResult) {
		status := "ok"
		if r.Err != nil {
			status = "failed"
		}
		fmt.Fprintf(w, "[%d/%d] %s: %s, %d events, %d new\n", done, total, r.Scope, status, r.Events, r.New)
	}
}

// writeSummary prints one row per scope: events new, duplicates skipped,
// pages, and the error of a failed scope.
func writeSummary(w io.Writer, sum activitylog.Summary) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tFROM\tTO\tNEW\tDUPLICATES\tPAGES\tERROR")
	for _, r := range sum.Scopes {
		from, to := "-", "-"
		if !r.From.IsZero() {
			from, to = r.From.Format(time.RFC3339), r.To.Format(time.RFC3339)
			if r.Clamped {
				from += " (clamped to 90d)"
			}
		}
		errText := ""
		if r.Err != nil {
			errText = r.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", r.Scope, from, to, r.New, r.Duplicates, r.Pages, errText)
	}
	events, added, dups, pages := summaryTotals(sum)
	note := ""
	if sum.DryRun {
		note = " (dry run: nothing written)"
	}
	fmt.Fprintf(tw, "TOTAL %d scopes, %d failed\t\t\t%d\t%d\t%d\t%d events read%s\n", len(sum.Scopes), sum.Failed(), added, dups, pages, events, note)
	tw.Flush()
}

// summaryTotals sums a pass over its scopes.
func summaryTotals(sum activitylog.Summary) (events, added, dups, pages int) {
	for _, r := range sum.Scopes {
		events += r.Events
		added += r.New
		dups += r.Duplicates
		pages += r.Pages
	}
	return
}
