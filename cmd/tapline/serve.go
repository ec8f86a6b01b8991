package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/tapline/tapline/internal/dashboard"
	"github.com/tapline/tapline/internal/store"
)

func newServe(e *env) *cobra.Command {
	var cfgPath string
	var debug bool
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run everything the configuration enables",
		Long: `Runs every part the configuration enables: the gateway on gateway.listen,
the Activity Log collector (a pass at start, then every collector.every),
the shipper (one loop per sink, at least once and in order), Prometheus
metrics on metrics.listen, the read-only dashboard on dashboard.listen, and the
store's retention. Stops cleanly on SIGINT or SIGTERM: calls in
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
				defer gw.Close()
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
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			var sinks []string
			if len(cfg.Sinks) > 0 {
				sh, err := newShipper(cfg, st, reg, log)
				if err != nil {
					return err
				}
				sinks = sh.Names()
				log.Info("shipping", "sinks", sinks)
				parts = append(parts, sh.Run)
			}
			if m := cfg.Metrics; m != nil {
				s, err := listen("metrics", m.Listen, metricsHandler(reg))
				if err != nil {
					return err
				}
				log.Info("metrics listening", "addr", s.ln.Addr().String())
				servers = append(servers, s)
			}
			if dc := cfg.Dashboard; dc != nil {
				var sinkNames []string
				for _, s := range cfg.Sinks {
					sinkNames = append(sinkNames, s.Name)
				}
				s, err := listenDashboard(dc.Listen, dc.Token, sinkNames, st, log)
				if err != nil {
					return err
				}
				log.Info("dashboard listening", "addr", s.ln.Addr().String(), "sign_in", dc.Token != "")
				servers = append(servers, s)
			}
			if len(servers) == 0 && len(parts) == 0 {
				log.Warn("the configuration enables nothing to serve (no gateway, collector or sinks section)")
			}
			return runAll(ctx, st, sinks, servers, log, parts...)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "configuration file (YAML)")
	cmd.Flags().BoolVar(&debug, "debug", false, "log at debug level")
	return cmd
}

// listenDashboard starts the read-only dashboard on addr, reading st. The
// configuration already refuses a non-loopback address without a token;
// this checks again on the address actually bound (a host name may resolve
// to anything), so prompts are never served without sign-in by accident.
func listenDashboard(addr, token string, sinks []string, st *store.Store, log *slog.Logger) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: listen on %s: %w", addr, err)
	}
	loopback := false
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		loopback = ta.IP.IsLoopback()
	}
	h, err := dashboard.New(dashboard.Config{Token: token, Loopback: loopback, Sinks: sinks}, st, log)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("dashboard on %s: %w", ln.Addr(), err)
	}
	if !loopback {
		// The session cookie is Secure: browsers keep it only over https.
		log.Warn("the dashboard serves plain http: put it behind a TLS proxy, browsers send its sign-in cookie over https only",
			"addr", ln.Addr().String())
	}
	return &server{name: "dashboard", ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}}, nil
}

// metricsHandler serves reg's metrics on /metrics.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
