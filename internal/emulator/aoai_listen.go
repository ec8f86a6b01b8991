package emulator

import (
	"context"
	"log/slog"
)

// ListenAOAI serves an AOAI stand-in for cfg on addr, which must be a
// loopback address ("" or a bare ":port" means 127.0.0.1 on that port, 0
// for any free one). It returns the base URL ("http://127.0.0.1:PORT") and
// stop, which shuts the server down within a few seconds and may be called
// more than once. The server also stops when ctx ends.
func ListenAOAI(ctx context.Context, addr string, cfg AOAIConfig, log *slog.Logger) (url string, stop func(), err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return listenLoopback(ctx, addr, NewAOAI(cfg, log), log, "aoai")
}
