package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/internal/auth"
	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/emulator"
)

func newDemo(e *env) *cobra.Command {
	var listen, dashAddr, storePath, shipDir string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a gateway in front of an emulated Azure OpenAI, with a ready key",
		Long: `Starts an emulated Azure OpenAI (deployments gpt-4o, gpt-4o-mini and
text-embedding-3-small) and a gateway in front of it with strict audit and
full capture, makes a few calls so the store has something to show, and
prints a curl command that works as it is. Records go to --store; read
them with 'tapline query requests --store FILE'. Every record is also
shipped to a file sink, JSON Lines files in --ship-dir. Stop with Ctrl-C.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if !quiet {
				level = slog.LevelInfo
			}
			return runDemo(cmd.Context(), e, listen, dashAddr, storePath, shipDir, newLogger(e.stderr, level))
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "gateway address")
	cmd.Flags().StringVar(&dashAddr, "dashboard", "127.0.0.1:8081", "dashboard address (loopback: no sign-in)")
	cmd.Flags().StringVar(&storePath, "store", "tapline-demo.db", "store database file")
	cmd.Flags().StringVar(&shipDir, "ship-dir", "tapline-demo-shipped", "directory of the file sink every record is shipped to")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "log warnings and errors only")
	return cmd
}

func runDemo(ctx context.Context, e *env, listenAddr, dashAddr, storePath, shipDir string, log *slog.Logger) error {
	upstreamKey := randomHex(16)
	aoaiURL, stopAOAI, err := emulator.ListenAOAI(ctx, "127.0.0.1:0", emulator.AOAIConfig{
		Deployments: map[string]string{
			"gpt-4o":                 "gpt-4o-2024-08-06",
			"gpt-4o-mini":            "gpt-4o-mini-2024-07-18",
			"text-embedding-3-small": "text-embedding-3-small",
		},
		APIKeys:         []string{upstreamKey},
		Latency:         20 * time.Millisecond,
		TokensPerSecond: 200,
	}, log.With("component", "emulator"))
	if err != nil {
		return fmt.Errorf("start emulated azure openai: %w", err)
	}
	defer stopAOAI()

	idpURL, idp, stopIdP, err := emulator.ListenEntra(ctx, "127.0.0.1:0", emulator.EntraConfig{TenantID: demoTenant},
		log.With("component", "entra-emulator"))
	if err != nil {
		return fmt.Errorf("start emulated entra id: %w", err)
	}
	defer stopIdP()
	userToken, err := idp.Mint(emulator.TokenSpec{Version: 2, Audience: demoAudience, UPN: "ana@contoso.example",
		Name: "Ana Demo", Expiry: time.Now().Add(12 * time.Hour)})
	if err != nil {
		return err
	}
	appToken, err := idp.Mint(emulator.TokenSpec{Version: 1, App: true, Audience: demoAudience, AppID: "reporting-job",
		Roles: []string{"Tapline.Call"}, Expiry: time.Now().Add(12 * time.Hour)})
	if err != nil {
		return err
	}

	// An emulated tenant of management groups with six days of Activity Log.
	now := time.Now()
	armURL, _, stopARM, err := emulator.ListenARM(ctx, "127.0.0.1:0", emulator.ARMConfig{
		TenantID: demoTenant,
		Tenant: emulator.GenerateTenant(emulator.ARMTenantSpec{Groups: 12, Levels: 3, SubscriptionsPerGroup: 1,
			EventsPerScope: 25, Start: now.Add(-6 * 24 * time.Hour), End: now.Add(-10 * time.Minute), Seed: 7}),
	}, log.With("component", "arm-emulator"))
	if err != nil {
		return fmt.Errorf("start emulated azure resource manager: %w", err)
	}
	defer stopARM()

	demoKey, demoHash, err := auth.NewKey()
	if err != nil {
		return err
	}
	teamKey, teamHash, err := auth.NewKey()
	if err != nil {
		return err
	}
	internKey, internHash, err := auth.NewKey()
	if err != nil {
		return err
	}
	cfg := &config.Config{
		Store: config.Store{Path: storePath},
		Azure: config.Azure{TenantID: demoTenant, Authority: idpURL, ARMEndpoint: armURL,
			Credential: config.CredentialToken, AccessToken: "demo-arm-token"},
		Collector: &config.Collector{Every: ptr(config.Duration(time.Minute))},
		Gateway: &config.Gateway{
			Listen: listenAddr,
			Redact: []config.RedactRule{{Name: "email", Pattern: `[\w.+-]+@[\w-]+\.[\w.]+`}},
			Auth: config.GatewayAuth{
				// The newcomer's key has a small limit, so that a 429 is
				// one shell loop away; the demo's own traffic uses others.
				// "intern" has a tiny daily quota: its second call is refused
				// (403), so the dashboard's Limits view has something to show.
				Keys: []config.Key{{Name: "demo", Hash: demoHash, Limits: &config.LimitValues{RPM: demoRPM}},
					{Name: "analytics-team", Hash: teamHash},
					{Name: "intern", Hash: internHash, Limits: &config.LimitValues{TokensPerDay: 20}}},
				Entra: &config.Entra{Tenants: []string{demoTenant}, Audiences: []string{demoAudience}},
			},
			Backends: []config.Backend{{Name: "emulated-eastus", URL: aoaiURL, Auth: config.AuthAPIKey,
				APIKey: upstreamKey}},
		},
		Sinks: []config.Sink{{Name: "local-files", File: &config.FileSink{Dir: shipDir}}},
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	st, err := openStore(ctx, cfg.Store, log)
	if err != nil {
		return err
	}
	defer st.Close()
	gw, err := newGateway(cfg, st, log)
	if err != nil {
		return err
	}
	defer gw.Close()
	srv, err := listen("gateway", listenAddr, gw)
	if err != nil {
		return err
	}
	base := "http://" + srv.ln.Addr().String()
	go demoTraffic(ctx, base, log, internKey, "api-key", teamKey, "Authorization", "Bearer "+appToken)
	collector, err := newCollector(cfg, st, log)
	if err != nil {
		return err
	}
	shipper, err := newShipper(cfg, st, nil, log)
	if err != nil {
		return err
	}

	dash, err := listenDashboard(dashAddr, "", shipper.Names(), st, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Dashboard: http://%s/\n", dash.ln.Addr())
	fmt.Fprintf(e.stdout, "Tapline demo: a gateway on %s in front of an emulated Azure OpenAI.\n", base)
	fmt.Fprintf(e.stdout, "Gateway key for the caller \"demo\" (shown once): %s\n", demoKey)
	fmt.Fprintf(e.stdout, "Records: tapline query requests --store %s\n", storePath)
	fmt.Fprintf(e.stdout, "Usage:   tapline query usage --store %s --by principal,deployment\n", storePath)
	fmt.Fprintf(e.stdout, "Activity Log of 13 emulated management groups, collected every minute: tapline query activity --store %s\n", storePath)
	fmt.Fprintf(e.stdout, "Shipped: every record is delivered to JSON Lines files in %s; delivery state: tapline query sinks --store %s\n", shipDir, storePath)
	fmt.Fprintln(e.stdout, "Try a call with the gateway key (Ctrl-C stops the demo):")
	fmt.Fprintf(e.stdout, "curl -sS '%s/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21' -H 'api-key: %s' -H 'Content-Type: application/json' -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hello from curl\"}]}'\n",
		base, demoKey)
	fmt.Fprintf(e.stdout, "Limits: the key \"demo\" may make %d calls a minute; run the curl above %d times to see a 429, then: tapline query throttles --store %s\n",
		demoRPM, demoRPM+1, storePath)
	fmt.Fprintln(e.stdout, "Or as an Entra ID user (a token from the emulated tenant, recorded as ana@contoso.example):")
	fmt.Fprintf(e.stdout, "curl -sS '%s/openai/v1/chat/completions' -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello as Ana\"}]}'\n",
		base, userToken)
	return runAll(ctx, st, shipper.Names(), []*server{srv, dash}, log, shipper.Run, func(ctx context.Context) error {
		return collectEvery(ctx, collector, time.Minute, log)
	})
}

func ptr[T any](v T) *T { return &v }

// demoRPM is the per-minute request limit of the demo's own key.
const demoRPM = 5

// The emulated tenant and the audience of the demo's Entra ID tokens.
const (
	demoTenant   = "0b7e5c1a-7d3f-4c56-9a11-2f6d8e0c4b21"
	demoAudience = "api://tapline-demo"
)

// demoTraffic makes a few calls as other callers (each given as a header
// name and value), so that the queries have something to show from the
// first minute.
func demoTraffic(ctx context.Context, base string, log *slog.Logger, internKey string, creds ...string) {
	calls := []struct{ path, body string }{
		{"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
			`{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise our Q3 plan; mail it to ana@contoso.com"}]}`},
		{"/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
			`{"stream":true,"messages":[{"role":"user","content":"Write a haiku about audit logs"}]}`},
		{"/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21",
			`{"input":["quarterly revenue","audit trail"]}`},
		{"/openai/v1/responses", `{"model":"gpt-4o","input":"Say hello"}`},
		{"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
			`{"messages":[{"role":"user","content":"How do I rob a bank with violence?"}]}`},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for i, c := range calls {
		cred := 2 * (i % (len(creds) / 2))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+c.path, bytes.NewBufferString(c.body))
		if err != nil {
			return
		}
		req.Header.Set(creds[cred], creds[cred+1])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "tapline-demo")
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("demo call failed", "err", err)
			}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// The intern's quota admits the first call (tokens are admitted while
	// the day's count is under budget) and refuses the second.
	for range 2 {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost,
			base+"/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
			bytes.NewBufferString(`{"messages":[{"role":"user","content":"Explain our travel policy in detail, with examples for every region."}]}`))
		if err != nil {
			return
		}
		req.Header.Set("api-key", internKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "tapline-demo")
		resp, err := client.Do(req)
		if err != nil {
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
