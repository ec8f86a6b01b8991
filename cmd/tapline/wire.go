package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tapline/tapline/internal/activitylog"
	"github.com/tapline/tapline/internal/auth"
	"github.com/tapline/tapline/internal/azure"
	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/gateway"
	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/store"
)

// wire.go is the composition root: the one place that turns configuration
// into running parts.

// start is what serve and collect do first: load the configuration, check
// it for the command (check may be nil; it runs before anything is opened,
// so a refusal changes nothing), make the logger (at level, or debug), and
// open the store.
func start(ctx context.Context, e *env, cfgPath string, check func(*config.Config) error, level slog.Level, debug bool) (*config.Config, *store.Store, *slog.Logger, error) {
	cfg, err := loadConfig(e, cfgPath)
	if err != nil {
		return nil, nil, nil, err
	}
	if check != nil {
		if err := check(cfg); err != nil {
			return nil, nil, nil, err
		}
	}
	if debug {
		level = slog.LevelDebug
	}
	log := newLogger(e.stderr, level)
	st, err := openStore(ctx, cfg.Store, log)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, st, log, nil
}

func openStore(ctx context.Context, cfg config.Store, log *slog.Logger) (*store.Store, error) {
	st, err := store.Open(ctx, store.Config{
		Path:      cfg.Path,
		MaxBytes:  int64(cfg.MaxBytes),
		WhenFull:  cfg.WhenFull,
		Retention: cfg.Retention.D(),
	}, log.With("component", "store"))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.Path, err)
	}
	return st, nil
}

// newGateway builds the gateway from configuration, with the Azure
// credential when a backend uses managed identity.
func newGateway(cfg *config.Config, st *store.Store, log *slog.Logger) (*gateway.Gateway, error) {
	var keys *auth.Keys
	if len(cfg.Gateway.Auth.Keys) > 0 {
		k, err := auth.NewKeys(cfg.Gateway.Auth.Keys)
		if err != nil {
			return nil, err
		}
		keys = k
	}
	var entra auth.TokenVerifier
	if e := cfg.Gateway.Auth.Entra; e != nil {
		v, err := auth.NewEntra(auth.EntraConfig{Authority: cfg.Azure.Authority, Tenants: e.Tenants,
			Audiences: e.Audiences, RequiredRoles: e.RequiredRoles}, log.With("component", "entra"))
		if err != nil {
			return nil, fmt.Errorf("entra: %w", err)
		}
		entra = v
	}
	var tokens gateway.TokenSource
	for _, b := range cfg.Gateway.Backends {
		if b.Auth == config.AuthManagedIdentity {
			cred, err := azure.NewCredential(cfg.Azure)
			if err != nil {
				return nil, err
			}
			tokens = azure.NewTokenSource(cred, azure.CognitiveServicesScope)
			break
		}
	}
	if cfg.Azure.Credential == config.CredentialDefault {
		for _, b := range cfg.Gateway.Backends {
			if b.Auth == config.AuthManagedIdentity && !isHTTPS(b.URL) {
				log.Warn("sending a bearer token over http to a loopback emulator", "backend", b.Name)
			}
		}
	}
	lim, rules, err := newLimiter(cfg.Gateway, log)
	if err != nil {
		return nil, err
	}
	gw, err := gateway.New(gateway.Options{Config: cfg.Gateway, Journal: st, Auth: auth.NewCallers(keys, entra),
		Tokens: tokens, Limiter: lim, Rules: rules}, log)
	if err != nil {
		if c, ok := lim.(io.Closer); ok {
			c.Close()
		}
		return nil, err
	}
	return gw, nil
}

// newLimiter builds the limiter and its rules from gateway.limits and the
// keys' own limits; no limits section, no limiter. The gateway closes it.
func newLimiter(g *config.Gateway, log *slog.Logger) (ratelimit.Limiter, ratelimit.Rules, error) {
	l := g.Limits
	if l == nil {
		return nil, ratelimit.Rules{}, nil
	}
	loc, err := time.LoadLocation(l.TimeZone)
	if err != nil {
		return nil, ratelimit.Rules{}, fmt.Errorf("gateway.limits.time_zone: %w", err)
	}
	lim, err := ratelimit.New(ratelimit.Config{Redis: l.Redis, OnRedisError: ratelimit.OnError(l.OnRedisError),
		Prefix: l.KeyPrefix, Location: loc}, log)
	if err != nil {
		return nil, ratelimit.Rules{}, err
	}
	rules := ratelimit.Rules{Default: limitsOf(l.Default), Keys: map[string]ratelimit.Limits{}}
	for _, k := range g.Auth.Keys {
		if k.Limits != nil {
			rules.Keys[k.Name] = limitsOf(*k.Limits)
		}
	}
	for _, gr := range l.Groups {
		rules.Groups = append(rules.Groups, ratelimit.Group{Role: gr.Role, Limits: limitsOf(gr.Limits)})
	}
	backend := "memory"
	if l.Redis != "" {
		backend = "redis"
	}
	log.Info("limits on", "backend", backend, "on_redis_error", l.OnRedisError, "keys_with_limits", len(rules.Keys),
		"groups", len(rules.Groups))
	return lim, rules, nil
}

func limitsOf(v config.LimitValues) ratelimit.Limits {
	return ratelimit.Limits{RequestsPerMinute: v.RPM, TokensPerMinute: v.TPM, TokensPerDay: v.TokensPerDay,
		TokensPerMonth: v.TokensPerMonth}
}

func isHTTPS(u string) bool { return len(u) > 8 && u[:8] == "https://" }

// server is an HTTP listener that runs until its context ends.
type server struct {
	name string
	ln   net.Listener
	srv  *http.Server
}

func listen(name, addr string, h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", name, addr, err)
	}
	return &server{name: name, ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    1 << 20, // an oversized token gets a recorded 401, not a bare 431
	}}, nil
}

// run serves until ctx ends, then shuts down within 30 seconds: calls in
// flight finish and are recorded.
func (s *server) run(ctx context.Context, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s: %w", s.name, err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "listener", s.name)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("%s: shutdown: %w", s.name, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// maintain sums usage into the store's rollup every rollupEvery and
// prunes it every pruneEvery, until ctx ends. Records leave only after
// every sink has confirmed them and retention has passed.
func maintain(ctx context.Context, st *store.Store, sinks []string, log *slog.Logger) error {
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	rollup := time.NewTicker(rollupEvery)
	defer rollup.Stop()
	// Caught up at start, the store sums what it commits as it goes, and
	// every later rollup only writes those sums (store.RollUp).
	if _, err := st.RollUp(ctx); err != nil && ctx.Err() == nil {
		log.Error("roll up usage", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-rollup.C:
			if _, err := st.RollUp(ctx); err != nil && ctx.Err() == nil {
				log.Error("roll up usage", "err", err)
			}
		case <-prune.C:
			n, err := st.Prune(ctx, time.Now(), sinks)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Error("prune store", "err", err)
			case n > 0:
				log.Info("pruned records past retention", "records", n)
			}
		}
	}
}

// The store's maintenance schedule: the usage rollup keeps the dashboard's
// usage and overview fast (queries stay exact without it).
const (
	rollupEvery = 10 * time.Second
	pruneEvery  = 10 * time.Minute
)

// runAll runs the listeners, the store's maintenance (bounded by the
// cursors of sinks) and any other parts (the collector's schedule, the
// shipper) until ctx ends or one of them fails.
func runAll(ctx context.Context, st *store.Store, sinks []string, servers []*server, log *slog.Logger, parts ...func(context.Context) error) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, s := range servers {
		g.Go(func() error { return s.run(ctx, log) })
	}
	for _, p := range parts {
		g.Go(func() error { return p(ctx) })
	}
	g.Go(func() error { return maintain(ctx, st, sinks, log) })
	return g.Wait()
}

// newCollector builds the Activity Log collector from the collector and
// azure sections, with the one ARM pipeline (internal/azure).
func newCollector(cfg *config.Config, st *store.Store, log *slog.Logger) (*activitylog.Collector, error) {
	cl := cfg.Collector
	arm, err := newARM(cfg.Azure, log)
	if err != nil {
		return nil, err
	}
	return activitylog.New(activitylog.Config{
		Scopes: activitylog.ScopeSelection{
			AllGroups:     cl.Scopes.ManagementGroups.All(),
			Groups:        cl.Scopes.ManagementGroups.IDs,
			Tenant:        cl.Scopes.Tenant,
			Subscriptions: cl.Scopes.Subscriptions,
			TenantID:      cfg.Azure.TenantID,
		},
		Backfill:    cl.Backfill.D(),
		Lag:         cl.Lag.D(),
		Overlap:     cl.Overlap.D(),
		Concurrency: cl.Concurrency,
	}, arm, st, log), nil
}

// collectEvery runs a collection pass at once and then every interval
// until ctx ends (DESIGN.md §3: serve runs a pass at start). A failed pass
// is logged, and the next one retries its scopes from their checkpoints.
func collectEvery(ctx context.Context, c *activitylog.Collector, every time.Duration, log *slog.Logger) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		sum, err := c.Run(ctx, activitylog.RunOptions{})
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Error("collection pass", "err", err)
		default:
			_, added, _, _ := summaryTotals(sum)
			log.Info("collection pass done", "scopes", len(sum.Scopes), "failed", sum.Failed(), "new_records", added)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// newARM builds the ARM client of the azure section: its credential, its
// endpoint, the one retry policy.
func newARM(cfg config.Azure, log *slog.Logger) (*azure.ARM, error) {
	cred, err := azure.NewCredential(cfg)
	if err != nil {
		return nil, err
	}
	endpoint := azure.ARMEndpoint(cfg)
	arm, err := azure.NewARM(azure.ARMConfig{Endpoint: endpoint, Credential: cred})
	if err != nil {
		return nil, err
	}
	if !isHTTPS(endpoint) {
		log.Warn("sending a bearer token over http to a loopback ARM emulator", "arm_endpoint", endpoint)
	}
	return arm, nil
}
