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

// aoaiShutdownGrace bounds how long stop waits for requests in flight.
const aoaiShutdownGrace = 5 * time.Second

// ListenAOAI serves an AOAI stand-in for cfg on addr, which must be a
// loopback address ("" or a bare ":port" means 127.0.0.1 on that port, 0
// for any free one). It returns the base URL ("http://127.0.0.1:PORT") and
// stop, which shuts the server down within a few seconds and may be called
// more than once. The server also stops when ctx ends.
func ListenAOAI(ctx context.Context, addr string, cfg AOAIConfig, log *slog.Logger) (url string, stop func(), err error) {
	host, port := "127.0.0.1", "0"
	if addr != "" {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return "", nil, fmt.Errorf("parse address %q: %w", addr, err)
		}
		if h != "" {
			host = h
		}
		port = p
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", nil, fmt.Errorf("listen on %q: the emulator serves loopback addresses only", addr)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}

	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	srv := &http.Server{
		Handler:           NewAOAI(cfg, log),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("aoai emulator stopped", "err", err)
		}
	}()

	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), aoaiShutdownGrace)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				_ = srv.Close()
			}
			cancelBase() // ends waits of hijacked or lingering handlers
			<-served
		})
	}
	unwatch := context.AfterFunc(ctx, shutdown)
	url = "http://" + ln.Addr().String()
	log.Info("aoai emulator listening", "url", url)
	return url, func() { unwatch(); shutdown() }, nil
}
