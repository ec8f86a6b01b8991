package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tapline/tapline/internal/config"
)

// Exit codes (DESIGN.md §3).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError is bad usage: a wrong flag or argument. It exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// env is the process environment, read only here and in config loading.
type env struct {
	stdout, stderr io.Writer
	lookup         func(string) (string, bool)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signalContext(ctx, stderr)
	defer stop()
	e := &env{stdout: stdout, stderr: stderr, lookup: os.LookupEnv}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "tapline:", err)
	var ue usageError
	if errors.As(err, &ue) || config.IsInvalid(err) {
		return exitUsage
	}
	return exitFailure
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "tapline",
		Short: "Audit Azure OpenAI calls and management-group Activity Logs",
		Long: `Tapline closes two audit gaps Azure leaves open, in one binary:

  - an AI gateway in front of Azure OpenAI that records who called, from
    which IP, with what prompt and how many tokens, for every call;
  - a collector of management-group Activity Logs (every RBAC and policy
    change at that scope), pulled incrementally with checkpoints.

Records go first to an embedded SQLite store; query them with 'tapline query'.
Every flag can also be set with an environment variable: --config is
TAPLINE_CONFIG, --store is TAPLINE_STORE, and so on.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd, e.lookup)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServe(e), newDemo(e), newQuery(e), newCheck(e), newKeys(e), newVersion(e))
	root.AddCommand(newCollect(e))
	root.AddCommand(newDiagnosticSettings(e))
	return root
}

// applyEnv sets every flag not given on the command line from its
// environment variable, TAPLINE_ and the flag name in upper snake case.
func applyEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := "TAPLINE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(name); ok {
			if serr := cmd.Flags().Set(f.Name, v); serr != nil {
				err = usagef("%s: %v", name, serr)
			}
		}
	})
	return err
}

// noArgs rejects positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// loadConfig loads the configuration file named by --config.
func loadConfig(e *env, path string) (*config.Config, error) {
	if path == "" {
		return nil, usagef("--config is required (or set TAPLINE_CONFIG)")
	}
	return config.Load(path, e.lookup)
}

// newLogger returns the process logger: text on stderr.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// signalContext is cancelled by the first SIGINT or SIGTERM; a second one
// exits at once.
func signalContext(parent context.Context, stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
			return
		}
		select {
		case <-ch:
			fmt.Fprintln(stderr, "tapline: second signal, exiting now")
			os.Exit(exitFailure)
		case <-parent.Done():
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
