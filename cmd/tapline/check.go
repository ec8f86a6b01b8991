package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/internal/azure"
	"github.com/tapline/tapline/internal/config"
)

func newCheck(e *env) *cobra.Command {
	var cfgPath string
	var offline bool
	cmd := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Validate the configuration and probe each backend's and sink's credentials",
		Long: `Validates the configuration, naming every problem with its field path
(exit 2), then probes each gateway backend with the gateway's own
credential by listing its models, and each sink's destination with the
sink's credential (reading its container, rule, hub, topic or token),
none of which writes anything. Exits 1 if a probe fails.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(e, cfgPath)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "configuration %s: ok\n", cfgPath)
			if offline {
				return nil
			}
			var errs []error
			if cfg.Gateway != nil {
				errs = append(errs, probeBackends(cmd.Context(), e.stdout, cfg))
			}
			if len(cfg.Sinks) > 0 {
				log := newLogger(e.stderr, slog.LevelWarn)
				errs = append(errs, probeSinks(cmd.Context(), e.stdout, cfg, log))
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "configuration file (YAML)")
	cmd.Flags().BoolVar(&offline, "offline", false, "validate only; probe nothing")
	return cmd
}

// probeBackends lists models on every backend with its configured
// credential: a 200 proves the URL and the credential.
func probeBackends(ctx context.Context, w io.Writer, cfg *config.Config) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tURL\tAUTH\tRESULT")
	var tokens *azure.TokenSource
	failed := 0
	client := &http.Client{Timeout: 15 * time.Second}
	for _, b := range cfg.Gateway.Backends {
		result := "ok"
		if err := probeBackend(ctx, client, cfg, b, &tokens); err != nil {
			result, failed = "FAILED: "+err.Error(), failed+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.Name, b.URL, b.Auth, result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d backends failed their probe", failed, len(cfg.Gateway.Backends))
	}
	return nil
}

func probeBackend(ctx context.Context, client *http.Client, cfg *config.Config, b config.Backend, tokens **azure.TokenSource) error {
	u := strings.TrimRight(b.URL, "/") + "/openai/v1/models"
	if b.API == config.BackendAPIOpenAI {
		u = strings.TrimRight(b.URL, "/") + "/v1/models"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	switch {
	case b.Auth == config.AuthAPIKey && b.API == config.BackendAPIOpenAI:
		req.Header.Set("Authorization", "Bearer "+b.APIKey)
	case b.Auth == config.AuthAPIKey:
		req.Header.Set("api-key", b.APIKey)
	default:
		if *tokens == nil {
			cred, err := azure.NewCredential(cfg.Azure)
			if err != nil {
				return err
			}
			*tokens = azure.NewTokenSource(cred, azure.CognitiveServicesScope)
		}
		tok, err := (*tokens).Token(ctx)
		if err != nil {
			return fmt.Errorf("get managed identity token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("the backend refused the credential (%s)", resp.Status)
	}
	return fmt.Errorf("unexpected answer %s", resp.Status)
}
