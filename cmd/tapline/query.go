package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/internal/chargeback"
	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

// queryFlags are the flags every query subcommand shares.
type queryFlags struct {
	config, store, format string
	since, until          string
}

func (q *queryFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&q.config, "config", "", "configuration file (its store.path is read)")
	f.StringVar(&q.store, "store", "", "store database file (instead of --config)")
	f.StringVar(&q.format, "format", "table", "output format: table, json (JSON Lines) or csv")
	f.StringVar(&q.since, "since", "", "only records at or after this time: a duration back from now (24h, 7d) or RFC 3339")
	f.StringVar(&q.until, "until", "", "only records before this time: a duration back from now or RFC 3339")
}

// open opens the store read-only, so that querying never changes what a
// running `tapline serve` holds.
func (q *queryFlags) open(ctx context.Context, e *env) (*store.Store, error) {
	switch q.format {
	case "table", "json", "csv":
	default:
		return nil, usagef("--format must be table, json or csv (got %q)", q.format)
	}
	path := q.store
	switch {
	case path != "" && q.config != "":
		return nil, usagef("give --config or --store, not both")
	case path == "" && q.config == "":
		return nil, usagef("--config or --store is required (or TAPLINE_CONFIG / TAPLINE_STORE)")
	case path == "":
		cfg, err := config.Load(q.config, e.lookup)
		if err != nil {
			return nil, err
		}
		path = cfg.Store.Path
	}
	st, err := store.OpenReadOnly(ctx, path, newLogger(e.stderr, slog.LevelWarn))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return st, nil
}

// withStore sets f's time window from the flags, opens the store
// read-only, and calls fn with it.
func (q *queryFlags) withStore(ctx context.Context, e *env, f *store.Filter, fn func(*store.Store) error) error {
	var err error
	if f.Since, f.Until, err = q.window(time.Now()); err != nil {
		return err
	}
	st, err := q.open(ctx, e)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

func (q *queryFlags) window(now time.Time) (since, until time.Time, err error) {
	if since, err = parseWhen(q.since, now); err != nil {
		return since, until, usagef("--since: %v", err)
	}
	if until, err = parseWhen(q.until, now); err != nil {
		return since, until, usagef("--until: %v", err)
	}
	return since, until, nil
}

// parseWhen reads "24h" / "7d" (that long ago) or an RFC 3339 time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (24h, 7d) nor an RFC 3339 time", s)
	}
	return now.Add(-d), nil
}

func newQuery(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Read the local store: requests, usage, activity, throttles, sinks",
		Long: `Reads the local store, also while 'tapline serve' runs. --format json
writes JSON Lines, one record envelope per line, oldest first, every
matching record, for jq and scripts.`,
	}
	cmd.AddCommand(newQueryRequests(e), newQueryUsage(e))
	cmd.AddCommand(newQueryActivity(e), newQuerySinks(e), newQueryThrottles(e))
	return cmd
}

func newQueryRequests(e *env) *cobra.Command {
	var q queryFlags
	var f store.Filter
	cmd := &cobra.Command{
		Use:   "requests",
		Short: "List gateway calls, oldest first",
		Example: `  tapline query requests --store tapline.db --since 1h
  tapline query requests --config tapline.yaml --principal key:build-bot --status 429 --format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.Kind = record.KindGatewayRequest
			return q.withStore(cmd.Context(), e, &f, func(st *store.Store) error {
				return writeRequests(cmd.Context(), e.stdout, q.format, st, f)
			})
		},
	}
	q.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.Principal, "principal", "", "caller: key:NAME, a UPN or an object id")
	fl.StringVar(&f.Deployment, "deployment", "", "deployment name")
	fl.StringVar(&f.Operation, "operation", "", "chat.completions, completions, embeddings, responses, images, audio, models, other")
	fl.IntVar(&f.Status, "status", 0, "HTTP status the caller got")
	fl.StringVar(&f.State, "state", "", "started, completed, interrupted or denied")
	fl.StringVar(&f.Text, "text", "", "text contained in the captured prompt or response (case-insensitive)")
	fl.IntVar(&f.Limit, "limit", 0, "at most this many records (0: all)")
	return cmd
}

var requestColumns = []string{"time", "id", "principal", "client_ip", "operation", "deployment", "model",
	"status", "state", "prompt_tokens", "completion_tokens", "total_tokens", "usage_source", "duration_ms", "ttft_ms"}

func requestRow(r record.Record, g *record.GatewayRequest) []string {
	row := []string{r.Time.UTC().Format(time.RFC3339Nano), r.ID, g.Principal.ID(), g.ClientIP, g.Operation,
		g.Deployment, g.ModelReturned, strconv.Itoa(g.Status), g.State, "", "", "", "",
		strconv.FormatFloat(g.DurationMS, 'f', 1, 64), ""}
	if row[6] == "" {
		row[6] = g.ModelRequested
	}
	if u := g.Usage; u != nil {
		row[9], row[10], row[11], row[12] = strconv.Itoa(u.PromptTokens), strconv.Itoa(u.CompletionTokens),
			strconv.Itoa(u.TotalTokens), u.Source
	}
	if g.TTFTMS != nil {
		row[14] = strconv.FormatFloat(*g.TTFTMS, 'f', 1, 64)
	}
	return row
}

func writeRequests(ctx context.Context, w io.Writer, format string, st *store.Store, f store.Filter) error {
	out := newTableOut(w, format, requestColumns)
	err := st.Records(ctx, f, func(r record.Record) error {
		if format == "json" {
			return out.json(r)
		}
		var g record.GatewayRequest
		if err := json.Unmarshal(r.Data, &g); err != nil {
			return fmt.Errorf("record %s: %w", r.ID, err)
		}
		return out.row(requestRow(r, &g))
	})
	if err != nil {
		return err
	}
	return out.flush()
}

func newQueryUsage(e *env) *cobra.Command {
	var q queryFlags
	var by string
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Sum token usage by caller, deployment, model, operation, backend or day",
		Example: `  tapline query usage --store tapline.db --by principal,deployment --since 30d
  tapline query usage --config tapline.yaml --by day --format csv > usage.csv`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var uq store.UsageQuery
			var err error
			if uq.Since, uq.Until, err = q.window(time.Now()); err != nil {
				return err
			}
			for _, k := range strings.Split(by, ",") {
				if k = strings.TrimSpace(k); k != "" {
					uq.By = append(uq.By, k)
				}
			}
			for _, k := range uq.By {
				if !validGroup(k) {
					return usagef("--by: %q is not one of %s", k, strings.Join(store.UsageGroups, ", "))
				}
			}
			st, err := q.open(cmd.Context(), e)
			if err != nil {
				return err
			}
			defer st.Close()
			rows, err := st.Usage(cmd.Context(), uq)
			if err != nil {
				return err
			}
			return writeUsage(e.stdout, q.format, uq.By, rows)
		},
	}
	q.register(cmd)
	cmd.Flags().StringVar(&by, "by", "principal,deployment", "group by these, comma separated: "+strings.Join(store.UsageGroups, ", "))
	return cmd
}

func validGroup(k string) bool {
	for _, g := range store.UsageGroups {
		if g == k {
			return true
		}
	}
	return false
}

// writeUsage writes rows in format; csv is the chargeback report that the
// dashboard's Usage view downloads, from the same writer.
func writeUsage(w io.Writer, format string, by []string, rows []store.UsageRow) error {
	if format == "csv" {
		return chargeback.WriteCSV(w, by, rows)
	}
	cols := chargeback.Header(by)
	out := newTableOut(w, format, cols)
	for _, r := range rows {
		if format == "json" {
			obj := make(map[string]any, len(cols))
			for i, k := range r.Keys {
				obj[cols[i]] = k
			}
			for i, v := range chargeback.Values(r) {
				obj[chargeback.Columns[i]] = v
			}
			if err := out.json(obj); err != nil {
				return err
			}
			continue
		}
		if err := out.row(chargeback.Cells(r)); err != nil {
			return err
		}
	}
	return out.flush()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// writeKept writes the records of f whose payload, decoded as T, keep
// accepts, at most limit of them (0: all), each as its JSON envelope or as
// the row cells gives, then flushes out.
func writeKept[T any](ctx context.Context, out *tableOut, st *store.Store, f store.Filter, limit int,
	keep func(*T) bool, cells func(record.Record, *T) []string) error {
	n := 0
	errStop := errors.New("limit reached")
	err := st.Records(ctx, f, func(r record.Record) error {
		var p T
		if err := json.Unmarshal(r.Data, &p); err != nil {
			return fmt.Errorf("record %s: %w", r.ID, err)
		}
		if !keep(&p) {
			return nil
		}
		if limit > 0 && n == limit {
			return errStop
		}
		n++
		if out.format == "json" {
			return out.json(r)
		}
		return out.row(cells(r, &p))
	})
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	return out.flush()
}

// tableOut writes rows as an aligned table, CSV, or JSON Lines.
type tableOut struct {
	format string
	cols   []string
	tw     *tabwriter.Writer
	cw     *csv.Writer
	enc    *json.Encoder
	header bool
}

func newTableOut(w io.Writer, format string, cols []string) *tableOut {
	t := &tableOut{format: format, cols: cols}
	switch format {
	case "csv":
		t.cw = csv.NewWriter(w)
	case "json":
		t.enc = json.NewEncoder(w)
		t.enc.SetEscapeHTML(false)
	default:
		t.tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	}
	return t
}

func (t *tableOut) row(vals []string) error {
	if !t.header {
		t.header = true
		if err := t.row(t.headerRow()); err != nil {
			return err
		}
	}
	if t.cw != nil {
		return t.cw.Write(vals)
	}
	for i, v := range vals {
		if v == "" {
			vals[i] = "-"
		}
	}
	_, err := fmt.Fprintln(t.tw, strings.Join(vals, "\t"))
	return err
}

func (t *tableOut) json(v any) error { return t.enc.Encode(v) }

func (t *tableOut) flush() error {
	if !t.header && t.format != "json" {
		if err := t.row(t.headerRow()); err != nil { // an empty result still has its header
			return err
		}
	}
	switch {
	case t.cw != nil:
		t.cw.Flush()
		return t.cw.Error()
	case t.tw != nil:
		return t.tw.Flush()
	}
	return nil
}

// headerRow is the column names: as they are for CSV, in capitals for a table.
func (t *tableOut) headerRow() []string {
	out := make([]string, len(t.cols))
	for i, c := range t.cols {
		if t.cw == nil {
			c = strings.ToUpper(c)
		}
		out[i] = c
	}
	return out
}
