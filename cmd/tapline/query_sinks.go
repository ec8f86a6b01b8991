package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

func newQuerySinks(e *env) *cobra.Command {
	var q queryFlags
	var dead bool
	cmd := &cobra.Command{
		Use:   "sinks",
		Short: "Show each sink's delivery lag, last error, retries and dead letters",
		Long: `Shows, for each sink, the last record it confirmed, how many records wait
for it and how old the oldest is, its last error (cleared by the next
confirmed batch), how many failed writes it retried (never reset) and how
many records its destination refused as invalid (dead letters). With
--config the sinks of the configuration are listed (also those that never
ran); with --store every sink the store knows.
--dead-letters lists the refused records themselves, with the reason.`,
		Example: `  tapline query sinks --config tapline.yaml
  tapline query sinks --store tapline.db --dead-letters --format json | jq .reason`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if q.since != "" || q.until != "" {
				return usagef("--since and --until do not apply to sinks")
			}
			st, err := q.open(cmd.Context(), e)
			if err != nil {
				return err
			}
			defer st.Close()
			if dead {
				return writeDeadLetters(cmd.Context(), e.stdout, q.format, st)
			}
			var names []string
			if q.config != "" {
				cfg, err := config.Load(q.config, e.lookup)
				if err != nil {
					return err
				}
				for _, s := range cfg.Sinks {
					for _, l := range loops(s) {
						names = append(names, l.name)
					}
				}
			}
			known, err := st.KnownSinks(cmd.Context())
			if err != nil {
				return err
			}
			for _, n := range known {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
			states, err := st.SinkStates(cmd.Context(), names)
			if err != nil {
				return err
			}
			return writeSinkStates(e.stdout, q.format, states, time.Now())
		},
	}
	q.register(cmd)
	cmd.Flags().BoolVar(&dead, "dead-letters", false, "list the dead-lettered records instead")
	return cmd
}

var sinkColumns = []string{"sink", "confirmed_seq", "lag_records", "lag", "last_confirmed", "dead_letters", "retries", "last_error", "last_error_at"}

// sinkRow is one sink in --format json.
type sinkRow struct {
	Sink          string     `json:"sink"`
	ConfirmedSeq  int64      `json:"confirmed_seq"`
	LagRecords    int64      `json:"lag_records"`
	LagSeconds    float64    `json:"lag_seconds"`
	LastConfirmed *time.Time `json:"last_confirmed,omitempty"`
	DeadLetters   int64      `json:"dead_letters"`
	Retries       int64      `json:"retries"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
}

func writeSinkStates(w io.Writer, format string, states []store.SinkState, now time.Time) error {
	out := newTableOut(w, format, sinkColumns)
	for _, s := range states {
		var lag time.Duration
		if !s.Oldest.IsZero() {
			lag = max(now.Sub(s.Oldest), 0)
		}
		if format == "json" {
			row := sinkRow{Sink: s.Sink, ConfirmedSeq: s.Cursor, LagRecords: s.Lag, LagSeconds: lag.Seconds(),
				DeadLetters: s.DeadLetters, Retries: s.Retries, LastError: s.LastError, LastConfirmed: timePtr(s.Confirmed), LastErrorAt: timePtr(s.LastErrorAt)}
			if err := out.json(row); err != nil {
				return err
			}
			continue
		}
		lagText := ""
		if s.Lag > 0 {
			lagText = lag.Round(time.Second).String()
		}
		err := out.row([]string{s.Sink, itoa(s.Cursor), itoa(s.Lag), lagText, fmtTime(s.Confirmed),
			itoa(s.DeadLetters), itoa(s.Retries), s.LastError, fmtTime(s.LastErrorAt)})
		if err != nil {
			return err
		}
	}
	return out.flush()
}

// deadLetterRow is one dead letter in --format json: the record envelope
// with the sink and the reason.
type deadLetterRow struct {
	Sink   string        `json:"sink"`
	Reason string        `json:"reason"`
	At     time.Time     `json:"dead_lettered_at"`
	Seq    int64         `json:"seq"`
	Record record.Record `json:"record"`
}

func writeDeadLetters(ctx context.Context, w io.Writer, format string, st *store.Store) error {
	out := newTableOut(w, format, []string{"dead_lettered_at", "sink", "record_id", "kind", "record_time", "bytes", "reason"})
	err := st.DeadLetters(ctx, "", func(d store.DeadLetter) error {
		if format == "json" {
			return out.json(deadLetterRow{Sink: d.Sink, Reason: d.Reason, At: d.At, Seq: d.Seq, Record: d.Record})
		}
		return out.row([]string{fmtTime(d.At), d.Sink, d.Record.ID, string(d.Record.Kind), fmtTime(d.Record.Time),
			fmt.Sprint(len(d.Record.Data)), d.Reason})
	})
	if err != nil {
		return err
	}
	return out.flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
