package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// The write-ahead log is copied into the database file (checkpointed) by a
// goroutine of its own, not by the writer: SQLite's automatic checkpoint
// runs on the connection whose commit took the WAL past its threshold, and
// stops that connection from committing while it copies, a third of the
// writer's time under a bulk load (the collector's 4 KB events). Here the
// writer only pokes the copier every walCopyBytes, and keeps committing
// while the copy runs (WAL mode allows one checkpoint beside one writer).
//
// A checkpoint can only restart the WAL from its beginning when it has
// copied every frame before the writer's next transaction, which under a
// steady load it rarely manages, so the WAL grows. Once it holds
// walMaxFrames the writer runs a TRUNCATE checkpoint itself between two
// transactions; journal_size_limit trims the file after a restart.
const (
	walCopyBytes = 4 << 20 // bytes of records committed between two pokes
	walMaxFrames = 32768   // 128 MiB of 4 KiB pages
)

// walCopier runs PASSIVE checkpoints on a connection of its own.
type walCopier struct {
	db     *sql.DB
	log    *slog.Logger
	wake   chan struct{}
	done   chan struct{}
	frames atomic.Int64 // in the WAL after the last checkpoint (copied or not)
	passes atomic.Int64
}

func newWALCopier(ctx context.Context, path string, log *slog.Logger) (*walCopier, error) {
	// No busy timeout: a PASSIVE checkpoint never waits, and one that finds
	// another checkpoint running has nothing to do.
	db, err := openConn(path, "_pragma=busy_timeout(0)")
	if err != nil {
		return nil, fmt.Errorf("open checkpoint connection: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open checkpoint connection: %w", err)
	}
	c := &walCopier{db: db, log: log, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go c.run()
	return c, nil
}

// poke asks for a checkpoint; pokes made while one runs make one more.
func (c *walCopier) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *walCopier) run() {
	defer close(c.done)
	var lastLog time.Time
	for range c.wake {
		var busy, frames, copied int64
		err := c.db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
		if err != nil {
			if time.Since(lastLog) > time.Minute {
				lastLog = time.Now()
				c.log.Warn("background checkpoint failed; the writer's checkpoints take over", "err", err)
			}
			continue
		}
		c.frames.Store(frames)
		c.passes.Add(1)
	}
}

// close stops the goroutine. Nothing may poke afterwards.
func (c *walCopier) close() error {
	close(c.wake)
	<-c.done
	return c.db.Close()
}

// truncateWAL copies the whole WAL into the database and empties it, on the
// writer's connection between transactions. It waits for a running
// checkpoint and for readers of older snapshots, but only truncateWait:
// a reader that holds its snapshot longer (an export by tapline query) must
// not stall the writer. It is tried once per long WAL the copier reports.
func (w *writer) truncateWAL(ctx context.Context) {
	w.wal.frames.Store(0)
	if _, err := w.db.ExecContext(ctx, `PRAGMA busy_timeout = `+truncateWait); err != nil {
		w.log.Warn("checkpoint of a long WAL", "err", err)
		return
	}
	defer func() {
		if _, err := w.db.ExecContext(ctx, `PRAGMA busy_timeout = `+busyTimeout); err != nil {
			w.log.Warn("restore the writer's busy timeout", "err", err)
		}
	}()
	var busy, frames, copied int64
	err := w.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied)
	switch {
	case err != nil:
		w.log.Warn("checkpoint of a long WAL failed", "err", err)
	case busy != 0:
		w.log.Debug("checkpoint of a long WAL did not finish: readers hold old snapshots", "frames", frames, "copied", copied)
	}
}

// truncateWait is how long (milliseconds) truncateWAL waits for readers.
const truncateWait = "200"
