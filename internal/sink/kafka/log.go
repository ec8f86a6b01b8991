package kafka

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/twmb/franz-go/pkg/kgo"
)

// logger hands franz-go's warnings and errors to slog, so that the client
// never writes through a logger of its own. Its info and debug messages (one
// per request) are not asked for. franz-go logs broker addresses and errors,
// never the SASL password.
type logger struct{ log *slog.Logger }

var _ kgo.Logger = logger{}

// Level asks franz-go for warnings and errors only.
func (l logger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

// Log logs msg with its key-value pairs at the matching slog level.
func (l logger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
	default:
		return
	}
	l.log.Log(context.Background(), lv, msg, keyvals...)
}

// isNetErr reports whether err is a network error (a refused or reset
// connection, a timeout): worth retrying.
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
