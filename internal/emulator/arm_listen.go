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

// loopbackShutdownGrace bounds how long stop waits for requests in flight.
const loopbackShutdownGrace = 5 * time.Second

// listenLoopback serves h on addr, which must be a loopback address ("" or a
// bare ":port" mean 127.0.0.1 on that port, 0 for any free one; "localhost"
// means 127.0.0.1). It returns the base URL ("http://127.0.0.1:PORT") and
// stop, which shuts the server down within loopbackShutdownGrace and may be
// called more than once; the server also stops when ctx ends. name labels
// log lines. Every stand-in's Listen function uses it.
func listenLoopback(ctx context.Context, addr string, h http.Handler, log *slog.Logger, name string) (base string, stop func(), err error) {
	host, port := "127.0.0.1", "0"
	if addr != "" {
		hh, p, err := net.SplitHostPort(addr)
		if err != nil {
			return "", nil, fmt.Errorf("parse address %q: %w", addr, err)
		}
		if hh != "" {
			host = hh
		}
		port = p
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", nil, fmt.Errorf("listen on %q: the emulator serves loopback addresses only", addr)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error(name+" emulator stopped", "err", err)
		}
	}()
	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), loopbackShutdownGrace)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				_ = srv.Close()
			}
			cancelBase() // ends waits of lingering handlers
			<-served
		})
	}
	unwatch := context.AfterFunc(ctx, shutdown)
	base = "http://" + ln.Addr().String()
	log.Info(name+" emulator listening", "url", base)
	return base, func() { unwatch(); shutdown() }, nil
}

// ListenARM serves an ARM stand-in for cfg on addr, which must be a loopback
// address ("" or ":port" mean 127.0.0.1, port 0 any free one). It returns the
// base URL to use in place of https://management.azure.com, the emulator (for
// Inject, Deny, AddEvents and Requests), and stop, which shuts the server
// down within a few seconds and may be called more than once. The server
// also stops when ctx ends.
func ListenARM(ctx context.Context, addr string, cfg ARMConfig, log *slog.Logger) (url string, a *ARM, stop func(), err error) {
	a, err = NewARM(cfg, log)
	if err != nil {
		return "", nil, nil, err
	}
	url, stop, err = listenLoopback(ctx, addr, a, log, "arm")
	if err != nil {
		return "", nil, nil, err
	}
	return url, a, stop, nil
}
