package main

import (
	"context"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

func newQueryThrottles(e *env) *cobra.Command {
	var q queryFlags
	var f store.Filter
	var limit int
	cmd := &cobra.Command{
		Use:   "throttles",
		Short: "List gateway calls refused by limits (429, 403 quota, 503 limiter down), oldest first",
		Long: `Lists the gateway calls that the per-identity limits refused: 429 over a
per-minute limit, 403 over a day or month quota, 503 while the shared
limiter (Redis) was unreachable under on_redis_error: fail_closed. Each row
names the limit and the message the caller got.`,
		Example: `  tapline query throttles --store tapline.db --since 1h
  tapline query throttles --config tapline.yaml --principal key:build-bot --format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Refused calls are denied records; the limit field tells a
			// throttle from bad credentials, matched here in Go.
			f.Kind, f.State = record.KindGatewayRequest, record.StateDenied
			return q.withStore(cmd.Context(), e, &f, func(st *store.Store) error {
				return writeThrottles(cmd.Context(), e.stdout, q.format, st, f, limit)
			})
		},
	}
	q.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.Principal, "principal", "", "caller: key:NAME, a UPN or an object id")
	fl.IntVar(&limit, "limit", 0, "at most this many records (0: all)")
	return cmd
}

var throttleColumns = []string{"time", "id", "principal", "client_ip", "deployment", "status", "limit", "retry_after_ms", "message"}

func writeThrottles(ctx context.Context, w io.Writer, format string, st *store.Store, f store.Filter, limit int) error {
	throttled := func(g *record.GatewayRequest) bool { return g.Limit != nil && g.Limit.Throttled }
	return writeKept(ctx, newTableOut(w, format, throttleColumns), st, f, limit, throttled,
		func(r record.Record, g *record.GatewayRequest) []string {
			var retry, msg string
			if g.Error != nil {
				msg = g.Error.Message
				if g.Error.RetryAfterMS > 0 {
					retry = strconv.FormatInt(g.Error.RetryAfterMS, 10)
				}
			}
			return []string{r.Time.UTC().Format(time.RFC3339Nano), r.ID, g.Principal.ID(), g.ClientIP,
				g.Deployment, strconv.Itoa(g.Status), g.Limit.Name, retry, msg}
		})
}
