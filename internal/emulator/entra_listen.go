package emulator

import (
	"context"
	"log/slog"
)

// ListenEntra serves an Entra stand-in for cfg on addr, which must be a
// loopback address ("" or ":port" mean 127.0.0.1, port 0 any free one). It
// returns the base URL to use as azure.authority ("http://127.0.0.1:PORT"),
// the emulator (its base URL already set, for Mint), and stop, which shuts
// the server down within a few seconds and may be called more than once.
// The server also stops when ctx ends.
func ListenEntra(ctx context.Context, addr string, cfg EntraConfig, log *slog.Logger) (base string, e *Entra, stop func(), err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e, err = NewEntra(cfg, log)
	if err != nil {
		return "", nil, nil, err
	}
	base, stop, err = listenLoopback(ctx, addr, e, log, "entra")
	if err != nil {
		return "", nil, nil, err
	}
	e.SetBaseURL(base)
	return base, e, stop, nil
}
