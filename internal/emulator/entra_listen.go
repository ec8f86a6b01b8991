package emulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// entraShutdownGrace bounds how long stop waits for requests in flight.
const entraShutdownGrace = 5 * time.Second

// ListenEntra serves an Entra stand-in for cfg on addr, which must be a
// loopback address ("" or ":port" mean 127.0.0.1, port 0 any free one). It
// returns the base URL to use as azure.authority ("http://127.0.0.1:PORT"),
// the emulator (its base URL already set, for Mint), and stop, which shuts
// the server down within a few seconds and may be called more than once.
// The server also stops when ctx ends.
func ListenEntra(ctx context.Context, addr string, cfg EntraConfig, log *slog.Logger) (base string, e *Entra, stop func(), err error) {
	host, port := "127.0.0.1", "0"
	if addr != "" {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return "", nil, nil, fmt.Errorf("parse address %q: %w", addr, err)
		}
		if h != "" {
			host = h
		}
		port = p
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", nil, nil, fmt.Errorf("listen on %q: the emulator serves loopback addresses only", addr)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e, err = NewEntra(cfg, log)
	if err != nil {
		return "", nil, nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return "", nil, nil, fmt.Errorf("listen: %w", err)
	}
	base = "http://" + ln.Addr().String()
	e.SetBaseURL(base)

	srv := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("entra emulator stopped", "err", err)
		}
	}()
	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), entraShutdownGrace)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				_ = srv.Close()
			}
			<-served
		})
	}
	unwatch := context.AfterFunc(ctx, shutdown)
	log.Info("entra emulator listening", "url", base, "tenant", cfg.TenantID)
	return base, e, func() { unwatch(); shutdown() }, nil
}
