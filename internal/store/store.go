// Package store is Tapline's embedded SQLite store: records committed before
// delivery, per-sink cursors, retention and the queries behind `tapline query`.
//
// Durability: the database runs in WAL mode with synchronous=NORMAL. A
// committed transaction survives the process being killed (kill -9), because
// the WAL is written to the operating system before the commit returns; it is
// not fsynced on every commit, so a power loss or kernel crash may lose the
// last transactions committed before the most recent WAL sync. This is the
// trade DESIGN.md §6 and §7 make for group commit at tens of thousands of
// records a second.
//
// Strict audit's Begins are committed to an append-only log beside the
// database (beginlog.go), with the same durability, so that a call's path
// holds no SQLite transaction.
//
// Writes go through one writer goroutine that owns the only write connection
// and commits everything queued in one transaction (group commit). Queries use
// a separate read-only pool; in WAL mode readers never block the writer. One
// process at a time may Open a database; others (tapline query) use
// OpenReadOnly.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tapline/tapline/internal/record"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// The values of Config.WhenFull.
const (
	WhenFullReject     = "reject"      // fail the request with record.ErrFull
	WhenFullDropOldest = "drop_oldest" // delete the oldest released records, counted
)

// ErrClosed is returned by writes made after Close.
var ErrClosed = errors.New("store closed")

// ErrReadOnly is returned by writes to a store opened with OpenReadOnly.
var ErrReadOnly = errors.New("store opened read-only")

// Config is the store section of the configuration (DESIGN.md §4).
type Config struct {
	// Path is the database file. It is created if missing.
	Path string
	// MaxBytes bounds the sum of stored record sizes (bytes of JSON data,
	// pending records included); 0 means unbounded.
	MaxBytes int64
	// WhenFull is what a write that would pass MaxBytes does: "reject"
	// (the default) or "drop_oldest".
	WhenFull string
	// Retention is how long records are kept once every sink has them;
	// 0 keeps them forever.
	Retention time.Duration

	// showAfter is how old a begin log entry gets before the writer copies
	// it where other processes see it (materializeAfter; tests shorten it).
	showAfter time.Duration
	// ringBytes is the begin log's size (begunRingBytes).
	ringBytes int
	// queueWait bounds how long FinishAsync waits for room in a full
	// queue when its context has no deadline (asyncQueueWait).
	queueWait time.Duration
}

// validate checks cfg and fills in defaults.
func (c Config) validate() (Config, error) {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: empty"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("max_bytes: %d is negative", c.MaxBytes))
	}
	switch c.WhenFull {
	case "":
		c.WhenFull = WhenFullReject
	case WhenFullReject, WhenFullDropOldest:
	default:
		errs = append(errs, fmt.Errorf("when_full: %q is not reject or drop_oldest", c.WhenFull))
	}
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("retention: %s is negative", c.Retention))
	}
	if c.showAfter == 0 {
		c.showAfter = materializeAfter
	}
	if c.ringBytes == 0 {
		c.ringBytes = begunRingBytes
	}
	if c.queueWait == 0 {
		c.queueWait = asyncQueueWait
	}
	return c, errors.Join(errs...)
}

// Stats describes the store's content and its writer's work.
type Stats struct {
	Records  int64 // rows stored, pending included
	Pending  int64 // rows begun and not finished (not yet given to sinks)
	Bytes    int64 // sum of stored record sizes, the quantity MaxBytes bounds
	LastSeq  int64 // the highest delivery sequence number assigned
	Dropped  int64 // records deleted by the drop_oldest policy since Open
	Rejected int64 // write requests refused with record.ErrFull since Open
	Commits  int64 // write transactions committed since Open
	Appended int64 // write requests (Append, Begin, Finish calls) committed since Open
	// Checkpoints counts the background checkpoints (copies of the WAL into
	// the database file) since Open, as of the last commit.
	Checkpoints int64
}

// Store is a SQLite-backed record.Journal with delivery cursors and queries.
// Its methods may be called concurrently.
type Store struct {
	cfg       Config
	log       *slog.Logger
	wdb       *sql.DB   // one connection, used only by the writer
	rdb       *sql.DB   // read-only pool for queries
	w         *writer   // nil when opened read-only
	begins    *beginLog // strict audit's Begins (beginlog.go); nil: through the writer
	recovered int

	mu     sync.RWMutex // guards closed against sends on reqs
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the writer goroutine has returned
	linger *time.Timer   // the writer goroutine's, reused (see asyncLinger)
	idle   *time.Timer   // the writer goroutine's, reused (see next)

	closeOnce sync.Once
	closeErr  error

	statsMu sync.Mutex
	stats   Stats         // published by the writer after each commit
	changed chan struct{} // closed, and replaced, when LastSeq moves
}

var _ record.Journal = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path, migrates its
// schema, turns records left pending by a crash into interrupted ones (see
// Recovered), and starts the writer.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "store")
	s := &Store{cfg: cfg, log: log, reqs: make(chan *request, queueSize), done: make(chan struct{})}
	if err := s.open(ctx); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("open store %s: %w", cfg.Path, err)
	}
	if s.recovered > 0 {
		log.Warn("records left started by a crash are now interrupted", "records", s.recovered)
	}
	go s.run(context.Background())
	return s, nil
}

// OpenReadOnly opens an existing database for queries alone: `tapline
// query` and the dashboard while `tapline serve` writes it (DESIGN.md §3).
// It neither migrates nor recovers pending records (they belong to the live
// writer), and starts no writer: Append, Begin, Finish, SetCursor and Prune
// return ErrReadOnly. Only one process may open a database with Open.
func OpenReadOnly(ctx context.Context, path string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{cfg: Config{Path: path}, log: log.With("component", "store")}
	if err := s.openReader(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("open store %s read-only: %w", path, err), s.closeDBs())
	}
	return s, nil
}

// openReader opens the read pool on an existing database of this build's
// schema version.
func (s *Store) openReader(ctx context.Context) error {
	// Opening would create a missing file; a query of nothing should fail.
	if _, err := os.Stat(s.cfg.Path); err != nil {
		return err
	}
	var err error
	if s.rdb, err = sql.Open("sqlite", dsn(s.cfg.Path, readParams)); err != nil {
		return err
	}
	s.rdb.SetMaxOpenConns(readConns)
	var version int
	if err := s.rdb.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version != len(migrations) {
		return fmt.Errorf("schema version %d, this build reads %d: open it once with Open to migrate",
			version, len(migrations))
	}
	return nil
}

// open connects both pools, migrates, recovers and prepares the writer.
func (s *Store) open(ctx context.Context) error {
	var err error
	// One connection: the writer's. database/sql reuses statements prepared
	// on the DB only while they stay on the same connection.
	if s.wdb, err = openConn(s.cfg.Path, writeParams); err != nil {
		return fmt.Errorf("open write connection: %w", err)
	}
	if err := migrate(ctx, s.wdb, s.log); err != nil {
		return err
	}
	begins, begun, segments, err := openBeginLog(s.cfg.Path, s.cfg.ringBytes)
	if err != nil {
		return err
	}
	if begins == nil {
		s.log.Warn("the begin log is held by another store on this database (is a second process writing it?) " +
			"or file locks are not supported here: strict audit's Begins go through SQLite")
	}
	s.begins = begins
	c, lastSeq, n, err := recoverPending(ctx, s.wdb, begun)
	if err != nil {
		return err
	}
	s.recovered = n
	// Recovered, so the ring can start over and the segments go; a crash
	// before this reads them again, and their ids are then stored already.
	if begins != nil {
		if err := begins.start(); err != nil {
			return err
		}
	}
	if err := removeSegments(segments); err != nil {
		return err
	}
	if s.w, err = newWriter(ctx, s.wdb, s.cfg, s.log, c, lastSeq); err != nil {
		return err
	}
	s.w.begins, s.w.showAfter = begins, s.cfg.showAfter
	s.stats = s.w.stats()
	if s.w.wal, err = newWALCopier(ctx, s.cfg.Path, s.log); err != nil {
		return err
	}
	if s.rdb, err = sql.Open("sqlite", dsn(s.cfg.Path, readParams)); err != nil {
		return fmt.Errorf("open read pool: %w", err)
	}
	s.rdb.SetMaxOpenConns(readConns)
	if err := s.rdb.PingContext(ctx); err != nil {
		return fmt.Errorf("open read pool: %w", err)
	}
	return nil
}

// Connection parameters. The writer sets WAL; BEGIN IMMEDIATE takes the
// write lock up front (no upgrade deadlock with another process); temp_store
// keeps the per-request savepoint journals in memory; an 8 MiB page cache
// (SQLite's default is 2 MiB) holds the newest leaf of every scope's run of
// the time index, where a backfill of a thousand groups inserts. It was
// 32 MiB while the collector's ids went in random order; with the keys of
// migration 8, 8 MiB stores a 1,000 x 1,000 backfill as fast (21,100 and
// 21,200 events/s against 21,600 and 20,300) in 45 MiB less memory, and a
// gateway call costs 7 µs less CPU (BenchmarkGatewayCall: 46 against 53),
// since every record takes a new page and the one it recycles was in a
// cache too big to stay in the processor's. The WAL is checkpointed in the
// background (walcopy.go); the writer's own automatic checkpoint, at 32 MiB
// instead of 4, is the fallback. Readers are query_only so that
// nothing can write around the writer.
const (
	busyTimeout = "5000" // milliseconds a connection waits for a lock
	writeParams = "_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(" + busyTimeout + ")" +
		"&_pragma=temp_store(MEMORY)&_pragma=cache_size(-8192)&_txlock=immediate" +
		"&_pragma=wal_autocheckpoint(8192)&_pragma=journal_size_limit(67108864)"
	readParams = "_pragma=busy_timeout(" + busyTimeout + ")&_pragma=query_only(1)"
	readConns  = 4
)

// openConn returns a pool of exactly one connection to path, kept open for
// the life of the Store.
func openConn(path, params string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(path, params))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// dsn builds a modernc.org/sqlite URI for path. SQLite decodes %XX in URI
// paths, and the driver splits the DSN at the first '?', so those characters
// are escaped.
func dsn(path, params string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
	return "file:" + esc + "?" + params
}

// Recovered is the number of records left pending (state started) by an
// earlier process that Open turned into interrupted, released records.
func (s *Store) Recovered() int { return s.recovered }

// Stats returns the store's counters as of the last commit; it does not
// touch the database. On a store opened read-only it counts the database
// instead, and the since-Open counters are zero.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, fmt.Errorf("read stats: %w", err)
	}
	if s.w == nil {
		var st Stats
		q := countsSQL + `, (SELECT coalesce(max(seq), 0) FROM records)`
		if err := s.rdb.QueryRowContext(ctx, q).Scan(&st.Records, &st.Pending, &st.Bytes, &st.LastSeq); err != nil {
			return Stats{}, fmt.Errorf("read stats: %w", err)
		}
		return st, nil
	}
	s.statsMu.Lock()
	st := s.stats
	s.statsMu.Unlock()
	if b := s.begins; b != nil {
		n := b.n.Load()
		st.Records += n
		st.Pending += n
		st.Bytes += b.bytes.Load()
		st.Appended += b.begins.Load()
	}
	return st, nil
}

// publish records the writer's counters after a commit.
func (s *Store) publish(st Stats) {
	s.statsMu.Lock()
	if st.LastSeq != s.stats.LastSeq && s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	s.stats = st
	s.statsMu.Unlock()
}

// Released returns the last released seq and a channel that is closed as
// soon as a later one is committed, so a reader (the shipper) can wait for
// new records instead of polling. On a read-only store the channel is never
// closed.
func (s *Store) Released() (lastSeq int64, changed <-chan struct{}) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.stats.LastSeq, s.changed
}

// Close stops accepting writes, lets the writer commit and answer every
// request already queued, then closes the database. Calls after the first
// return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.w != nil {
			s.mu.Lock()
			s.closed = true
			close(s.reqs)
			s.mu.Unlock()
			<-s.done
		}
		s.closeErr = s.closeDBs()
	})
	return s.closeErr
}

// closeDBs releases the writer's statements and both pools.
func (s *Store) closeDBs() error {
	var errs []error
	if s.w != nil {
		s.w.logDrops(true)
		if s.w.wal != nil {
			errs = append(errs, s.w.wal.close())
		}
		errs = append(errs, s.w.close())
	}
	if s.begins != nil {
		errs = append(errs, s.begins.close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}
