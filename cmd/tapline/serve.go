package main

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"
)

func newServe(e *env) *cobra.Command {
	var cfgPath string
	var debug bool
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run everything the configuration enables",
		Long: `Runs every part the configuration enables: the gateway on gateway.listen,
the Activity Log collector (a pass at start, then every collector.every),
and the store's retention. Stops cleanly on SIGINT or SIGTERM: calls in
flight finish and are recorded (a second signal exits at once).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, st, log, err := start(ctx, e, cfgPath, nil, slog.LevelInfo, debug)
			if err != nil {
				return err
			}
			defer st.Close()
			var servers []*server
			if cfg.Gateway != nil {
				gw, err := newGateway(cfg, st, log)
				if err != nil {
					return err
				}
				s, err := listen("gateway", cfg.Gateway.Listen, gw)
				if err != nil {
					return err
				}
				log.Info("gateway listening", "addr", s.ln.Addr().String(), "audit", cfg.Gateway.Audit,
					"capture", cfg.Gateway.Capture, "backends", len(cfg.Gateway.Backends))
				servers = append(servers, s)
			}
			var parts []func(context.Context) error
			if cl := cfg.Collector; cl != nil && *cl.Every > 0 {
				c, err := newCollector(cfg, st, log)
				if err != nil {
					return err
				}
				every := cl.Every.D()
				log.Info("collector scheduled", "every", every)
				parts = append(parts, func(ctx context.Context) error { return collectEvery(ctx, c, every, log) })
			}
			if len(servers) == 0 && len(parts) == 0 {
				log.Warn("the configuration enables nothing to serve (no gateway or collector section)")
			}
			return runAll(ctx, st, servers, log, parts...)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "configuration file (YAML)")
	cmd.Flags().BoolVar(&debug, "debug", false, "log at debug level")
	return cmd
}
