package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Group commit bounds. A batch takes queued requests until one of the bounds
// is reached; a single request larger than a bound is committed alone.
const (
	queueSize       = 1024     // requests waiting for the writer
	maxBatchRecords = 2000     // records per transaction
	maxBatchBytes   = 16 << 20 // bytes of record data per transaction
	dropLogEvery    = time.Minute
	// asyncLinger is how long a batch of completions nobody waits for may
	// wait for other writes to share its commit. The longer a commit
	// gathers, the fewer times each index's newest page goes to the WAL
	// (and to the checkpoint) per record: at 3,000 calls a second, 20 ms
	// instead of 2 writes 12% fewer bytes and costs about 4% less CPU a
	// call (BENCHMARKS.md). Nobody waits on these commits; a query sees
	// the record that much later.
	asyncLinger = 20 * time.Millisecond
	// asyncQueueWait bounds a FinishAsync's wait for room in a full queue
	// when its context has no deadline of its own: a writer stuck that long
	// (a hung disk) fails the completion instead of piling up callers.
	asyncQueueWait = 10 * time.Second
)

// opKind is what a write request does.
type opKind int

const (
	opAppend opKind = iota
	opBegin
	opFinish
	opSetCursor
	opPrune
	opExec
	opMaterialize // copy the begin log's entries into started (beginlog.go)
	opRollUp      // one step of RollUp
)

// journal reports whether the op is one of record.Journal's writes, the
// ones Stats.Appended counts.
func (o opKind) journal() bool { return o == opAppend || o == opBegin || o == opFinish }

// request is one caller's write, queued for the writer.
type request struct {
	op    opKind
	rows  []row        // opAppend, opBegin, opFinish (one row)
	bytes int64        // sum of len(rows[i].data)
	sink  string       // opSetCursor
	seq   int64        // opSetCursor
	sinks []string     // opPrune: the cursors that bound it
	cut   int64        // opPrune: delete records with time before this (unix nanos)
	limit int          // opPrune: at most this many per request
	fn    execFunc     // opExec
	done  chan result  // buffered; the writer sends exactly once; nil when async
	then  func(result) // if set, called on the writer goroutine after the send
	async bool         // nobody waits for the result (FinishAsync): no done
}

// execFunc is a small write of the delivery state (dead letters, sink
// errors) run inside the writer's transaction; now is the writer's clock in
// unix nanoseconds. Those writes are rare, so they need no statement of
// their own among the prepared ones.
type execFunc func(ctx context.Context, tx *sql.Tx, now int64) error

// result is the writer's answer to one request.
type result struct {
	n   int // records added (Append) or deleted (Prune)
	err error
}

// do queues r and waits for its result. If ctx ends first it returns
// ctx.Err(); the request may still be committed afterwards.
func (s *Store) do(ctx context.Context, r *request) (int, error) {
	if err := s.enqueue(ctx, r); err != nil {
		return 0, err
	}
	select {
	case res := <-r.done:
		return res.n, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// armLinger starts the writer's linger timer (one, reused) and returns its
// channel.
func (s *Store) armLinger() <-chan time.Time {
	if s.linger == nil {
		s.linger = time.NewTimer(asyncLinger)
	} else {
		s.linger.Reset(asyncLinger)
	}
	return s.linger.C
}

// enqueue hands r to the writer without waiting for its result. When the
// queue is full it waits for room until ctx ends; an async request whose
// ctx has no deadline waits at most cfg.queueWait.
func (s *Store) enqueue(ctx context.Context, r *request) error {
	if s.w == nil {
		return ErrReadOnly
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !r.async {
		r.done = make(chan result, 1)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	select {
	case s.reqs <- r:
		return nil
	default:
	}
	if _, ok := ctx.Deadline(); !ok && r.async {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.queueWait)
		defer cancel()
	}
	select {
	case s.reqs <- r:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for room in the store's queue: %w", ctx.Err())
	}
}

// weight is what a request counts against the batch bounds.
func (r *request) weight() (int, int64) {
	if len(r.rows) == 0 {
		return 1, 0
	}
	return len(r.rows), r.bytes
}

// run is the writer goroutine: it takes everything queued (within the batch
// bounds), commits it in one transaction and answers each waiter. It returns
// once Close has closed the queue and every queued request is answered.
func (s *Store) run(ctx context.Context) {
	defer close(s.done)
	var carry *request
	for {
		first := carry
		carry = nil
		if first == nil {
			r, ok := s.next()
			if !ok {
				return
			}
			first = r
		}
		batch := []*request{first}
		n, b := first.weight()
		waiter := !first.async // someone is blocked on this batch's commit
		var linger <-chan time.Time
	fill:
		for n < maxBatchRecords && b < maxBatchBytes {
			var r *request
			var ok bool
			select {
			case r, ok = <-s.reqs:
			default:
				if waiter {
					break fill // commit now: a caller is waiting
				}
				// Only completions nobody waits for (FinishAsync): let them
				// wait, briefly, for company, so that they share the commit
				// of the next caller's write instead of paying one of their
				// own (a commit's fixed cost dwarfs a row's).
				if linger == nil {
					linger = s.armLinger()
				}
				select {
				case r, ok = <-s.reqs:
				case <-linger:
					break fill
				}
			}
			if !ok {
				break fill
			}
			rn, rb := r.weight()
			if n+rn > maxBatchRecords || b+rb > maxBatchBytes {
				carry = r
				break fill
			}
			batch = append(batch, r)
			n, b = n+rn, b+rb
			waiter = waiter || !r.async
		}
		if linger != nil {
			s.linger.Stop()
		}
		results := s.w.commit(ctx, batch)
		s.publish(s.w.stats())
		s.w.logDrops(false)
		for i, r := range batch {
			if r.done != nil {
				r.done <- results[i]
			}
			if r.then != nil {
				r.then(results[i])
			}
		}
	}
}

// next waits for the next request. With a begin log it wakes every
// showAfter, and if the log holds entries returns an empty request of its
// own, so that a batch materializes the entries that have grown old even
// when nothing else is written (a long stream on an idle gateway).
func (s *Store) next() (*request, bool) {
	if s.begins == nil {
		r, ok := <-s.reqs
		return r, ok
	}
	for {
		if s.idle == nil {
			s.idle = time.NewTimer(s.cfg.showAfter)
		} else {
			s.idle.Reset(s.cfg.showAfter)
		}
		select {
		case r, ok := <-s.reqs:
			s.idle.Stop()
			return r, ok
		case <-s.idle.C:
			if s.begins.n.Load() > 0 {
				noop := func(context.Context, *sql.Tx, int64) error { return nil }
				return &request{op: opExec, fn: noop, async: true}, true
			}
		}
	}
}

// writer holds the write connection's statements and the in-memory state
// that mirrors the database: the seq counter and the counts.
type writer struct {
	db         *sql.DB
	log        *slog.Logger
	now        func() time.Time
	maxBytes   int64
	dropOldest bool
	prepared   [numStmts]*sql.Stmt

	wal      *walCopier // nil: SQLite's automatic checkpoints alone
	walBytes int64      // committed since the last poke of wal

	begins    *beginLog       // nil: every Begin comes through the writer
	showAfter time.Duration   // materialize the log's entries this old
	released  []string        // begin log entries the batch stores, released on commit
	moved     map[string]bool // the ids of released: stored by this batch

	roll rollAcc // usage sums since the rollup's cursor (rollup.go)

	seq int64 // last seq assigned; never rolled back, so never reused
	c   counts

	commits, appended, rejected int64

	loggedDropped int64     // c.dropped as of the last drop log line
	lastDropLog   time.Time // when that line was written
}

// newWriter prepares the writer's statements on db's single connection.
func newWriter(ctx context.Context, db *sql.DB, cfg Config, log *slog.Logger, c counts, lastSeq int64) (*writer, error) {
	w := &writer{
		db:         db,
		log:        log,
		now:        time.Now,
		maxBytes:   cfg.MaxBytes,
		dropOldest: cfg.WhenFull == WhenFullDropOldest,
		seq:        lastSeq,
		c:          c,
		moved:      map[string]bool{},
		roll:       rollAcc{sums: map[rollupGroup]*rollupRow{}, batch: map[rollupGroup]*rollupRow{}},
	}
	for id, q := range stmtSQL {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("prepare %q: %w", q, err), w.close())
		}
		w.prepared[id] = st
	}
	return w, nil
}

// close releases the prepared statements.
func (w *writer) close() error {
	var errs []error
	for _, st := range w.prepared {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// stats is the writer's view of Stats.
func (w *writer) stats() Stats {
	st := Stats{
		Records:  w.c.records,
		Pending:  w.c.pending,
		Bytes:    w.c.bytes,
		LastSeq:  w.seq,
		Dropped:  w.c.dropped,
		Rejected: w.rejected,
		Commits:  w.commits,
		Appended: w.appended,
	}
	if w.wal != nil {
		st.Checkpoints = w.wal.passes.Load()
	}
	return st
}

// commit runs batch in one transaction and returns one result per request.
// A request that fails alone (record.ErrFull) is rolled back to its
// savepoint and the others still commit; if the transaction itself fails,
// every request gets that error and the in-memory state is restored.
func (w *writer) commit(ctx context.Context, batch []*request) []result {
	results := make([]result, len(batch))
	before := w.c
	err := w.runBatch(ctx, batch, results)
	if err == nil && w.begins != nil {
		w.begins.release(w.released)
	}
	w.released = w.released[:0]
	clear(w.moved)
	if err != nil {
		w.c = before
		w.roll.drop()
		for i := range results {
			results[i] = result{err: err}
		}
		return results
	}
	w.c.credit = 0
	w.roll.commit(w.seq)
	w.commits++
	for i, r := range batch {
		w.walBytes += r.bytes
		switch {
		case results[i].err == nil && r.op.journal():
			w.appended++
		case errors.Is(results[i].err, errFull):
			w.rejected++
		}
	}
	if w.wal != nil {
		if w.wal.frames.Load() >= walMaxFrames {
			w.truncateWAL(ctx)
		}
		if w.walBytes >= walCopyBytes {
			w.wal.poke()
			w.walBytes = 0
		}
	}
	return results
}

// runBatch applies each request of batch inside one transaction and commits.
func (w *writer) runBatch(ctx context.Context, batch []*request, results []result) (err error) {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	t := &txn{tx: tx, w: w}
	defer func() {
		if err == nil {
			return
		}
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			err = errors.Join(err, fmt.Errorf("roll back: %w", rbErr))
		}
	}()
	// Calls in flight for a second become visible to queries of other
	// processes (beginlog.go).
	if err := w.materialize(ctx, t, w.now().Add(-w.showAfter)); err != nil {
		return fmt.Errorf("materialize begun records: %w", err)
	}
	for i, r := range batch {
		// A savepoint lets a request refused for size after it has written
		// roll back alone, but it journals every page the request touches
		// (40% of the writer's CPU with 4 KB records), so a request gets one
		// only when it could take the store past MaxBytes: r.bytes bounds
		// what it adds.
		isolate := w.maxBytes > 0 && w.used()+r.bytes > w.maxBytes
		if isolate {
			if _, err := t.exec(ctx, sSavepoint); err != nil {
				return fmt.Errorf("open savepoint: %w", err)
			}
		}
		snap, rel := w.c, len(w.released)
		n, aerr := w.apply(ctx, t, r)
		switch {
		case aerr == nil:
		case isolate && errors.Is(aerr, errFull):
			w.c, w.released = snap, w.released[:rel]
			w.roll.drop() // its sums may hold the request's records
			n = 0
			if _, err := t.exec(ctx, sRollbackTo); err != nil {
				return fmt.Errorf("roll back to savepoint: %w", err)
			}
		default:
			// A technical failure: the transaction's state is unknown.
			return aerr
		}
		if isolate {
			if _, err := t.exec(ctx, sRelease); err != nil {
				return fmt.Errorf("release savepoint: %w", err)
			}
		}
		results[i] = result{n: n, err: aerr}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// logDrops logs drop_oldest deletions: the first at once, then at most once
// per dropLogEvery with the count since the last line; final flushes the
// remainder at Close.
func (w *writer) logDrops(final bool) {
	n := w.c.dropped - w.loggedDropped
	if n == 0 {
		return
	}
	now := w.now()
	if !final && !w.lastDropLog.IsZero() && now.Sub(w.lastDropLog) < dropLogEvery {
		return
	}
	w.log.Warn("store full, dropped oldest records",
		"dropped", n, "dropped_total", w.c.dropped, "max_bytes", w.maxBytes)
	w.loggedDropped = w.c.dropped
	w.lastDropLog = now
}
