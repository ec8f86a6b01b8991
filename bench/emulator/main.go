// Command emulator serves the Azure OpenAI stand-in for the benchmark
// harness: one deployment, one api key, no latency, tokens as fast as
// possible and a fixed completion length, so that every target is measured
// against the same, cheap backend.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tapline/tapline/internal/emulator"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	key := flag.String("api-key", "", "the api-key the emulator accepts (required)")
	deployment := flag.String("deployment", "gpt-4o", "deployment name served")
	model := flag.String("model", "gpt-4o-2024-08-06", "model behind the deployment")
	tokens := flag.Int("tokens", 20, "completion tokens per response")
	flag.Parse()
	if *key == "" || *tokens <= 0 {
		fmt.Fprintln(os.Stderr, "usage: emulator -api-key KEY [-addr 127.0.0.1:PORT] [-tokens N]")
		os.Exit(2)
	}
	if err := run(*addr, *key, *deployment, *model, *tokens); err != nil {
		fmt.Fprintln(os.Stderr, "emulator:", err)
		os.Exit(1)
	}
}

func run(addr, key, deployment, model string, tokens int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	url, shutdown, err := emulator.ListenAOAI(ctx, addr, emulator.AOAIConfig{
		Deployments:      map[string]string{deployment: model},
		APIKeys:          []string{key},
		CompletionTokens: tokens, // TokensPerSecond 0 and Latency 0: as fast as possible
	}, log)
	if err != nil {
		return err
	}
	fmt.Println(url) // the harness reads the first line to learn the address
	<-ctx.Done()
	shutdown()
	return nil
}
