// Command bareproxy serves bench.BareProxy, the floor of what any net/http
// reverse proxy costs, for the benchmark harness.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tapline/tapline/bench"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("upstream", "", "backend base URL, e.g. http://127.0.0.1:8081 (required)")
	key := flag.String("api-key", "", "api-key sent to the backend (required)")
	flag.Parse()
	if *upstream == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "usage: bareproxy -upstream URL -api-key KEY [-addr 127.0.0.1:PORT]")
		os.Exit(2)
	}
	if err := run(*addr, *upstream, *key); err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
}

func run(addr, upstream, key string) error {
	target, err := url.Parse(upstream)
	if err != nil {
		return fmt.Errorf("parse upstream: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: bench.BareProxy(target, key), ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 5 * time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Println("http://" + ln.Addr().String()) // the harness reads the first line to learn the address
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
