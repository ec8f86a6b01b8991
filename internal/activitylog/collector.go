// Package activitylog collects the Activity Logs of management groups (and
// optionally of the tenant and subscriptions) over the ARM REST API into
// activity_log records: scopes, windows, paging, checkpoints, de-duplication.
package activitylog

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/tapline/tapline/internal/azure"
	"github.com/tapline/tapline/internal/record"
)

// Retention is how far back the Activity Log reaches: "The start date can't
// exceed 90 days from the current date" (azure-contracts.md §2.4).
const Retention = 90 * 24 * time.Hour

// retentionMargin keeps a clamped start clear of the 90-day limit despite
// the clocks of Tapline and ARM differing a little.
const retentionMargin = 10 * time.Minute

// Store is what the collector needs of the store: appends that skip known
// ids, and per-scope checkpoints that move in the same transaction as the
// records that justify them.
//
// Checkpoint returns the end of the last window of scope whose events are
// all committed; ok is false if there is none. AppendWithCheckpoint commits
// recs (skipping known ids, which it does not count) and sets the
// checkpoint of scope to until, both or neither. Calls may be concurrent.
type Store interface {
	record.Appender
	Checkpoint(ctx context.Context, scope string) (until time.Time, ok bool, err error)
	AppendWithCheckpoint(ctx context.Context, recs []record.Record, scope string, until time.Time) (added int, err error)
}

// Config configures a Collector.
type Config struct {
	Scopes      ScopeSelection
	Backfill    time.Duration // a scope without checkpoint starts this far back
	Lag         time.Duration // windows end this long before now
	Overlap     time.Duration // windows start this long before the checkpoint
	Concurrency int           // scopes pulled at once; 0 means 4
	Now         func() time.Time
}

// RunOptions change one pass.
type RunOptions struct {
	// Since, when positive, starts every window this far back, whatever the
	// checkpoint (backfill); the checkpoint still only moves forward.
	Since time.Duration
	// DryRun reads every page but writes nothing, checkpoints included.
	DryRun bool
	// Progress, when not nil, is called after each scope finishes, from the
	// scope's goroutine (calls are serialised).
	Progress func(done, total int, s ScopeResult)
	// Scopes, when set, is called once the scope list is known.
	Scopes func(total int)
}

// ScopeResult is the outcome of one scope in one pass.
type ScopeResult struct {
	Scope      Scope
	From, To   time.Time // the window asked for; zero if none was
	Clamped    bool      // From was moved forward to the 90-day limit
	Events     int       // events read
	New        int       // records committed that were not stored yet
	Duplicates int       // events already stored (overlap, re-runs)
	Pages      int
	Err        error // nil if every page was read and committed
}

// Summary is the outcome of one pass.
type Summary struct {
	Scopes []ScopeResult
	DryRun bool
}

// Failed returns how many scopes failed.
func (s Summary) Failed() int {
	n := 0
	for _, r := range s.Scopes {
		if r.Err != nil {
			n++
		}
	}
	return n
}

// Collector pulls Activity Logs into a Store. Run may not be called
// concurrently with itself.
type Collector struct {
	cfg   Config
	arm   *azure.ARM
	store Store
	log   *slog.Logger
}

// New returns a Collector. A nil log discards.
func New(cfg Config, arm *azure.ARM, st Store, log *slog.Logger) *Collector {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{cfg: cfg, arm: arm, store: st, log: log.With("component", "activitylog")}
}

// Run makes one pass: resolves the scopes and pulls each one's window,
// cfg.Concurrency at a time. A scope that fails (403, malformed page,
// exhausted retries) is reported in its ScopeResult, keeps its checkpoint
// and does not stop the others. Run returns an error only if the scopes
// cannot be listed or ctx ends. Every record the pass stores names it in
// collection_run: the pass's start (record.CollectionRunID); a record
// already stored keeps the run that first stored it.
func (c *Collector) Run(ctx context.Context, opts RunOptions) (Summary, error) {
	scopes, err := Resolve(ctx, c.arm, c.cfg.Scopes)
	if err != nil {
		return Summary{}, fmt.Errorf("resolve scopes: %w", err)
	}
	if opts.Scopes != nil {
		opts.Scopes(len(scopes))
	}
	now := c.cfg.Now()
	results := make([]ScopeResult, len(scopes))
	sem := make(chan struct{}, c.cfg.Concurrency) // scopes being read
	budget := make(chan struct{}, c.cfg.Concurrency*pagesInFlight)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for i, sc := range scopes {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return Summary{Scopes: results[:i], DryRun: opts.DryRun}, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			finish := c.pull(ctx, sc, now, opts, budget)
			<-sem // the next scope is read while this one's last pages commit
			r := finish()
			results[i] = r
			if r.Err != nil {
				c.log.Warn("scope failed; its checkpoint stays", "scope", sc.String(), "err", r.Err)
			}
			mu.Lock()
			done++
			if opts.Progress != nil {
				opts.Progress(done, len(scopes), r)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return Summary{Scopes: results, DryRun: opts.DryRun}, ctx.Err()
}

// window returns the window of a scope: from its checkpoint less the
// overlap (or now less backfill, or now less since) to now less lag,
// clamped to the 90-day retention.
func (c *Collector) window(ctx context.Context, sc Scope, now time.Time, since time.Duration) (from, to time.Time, clamped bool, err error) {
	to = now.Add(-c.cfg.Lag).UTC().Truncate(time.Second)
	switch cp, ok, err := c.store.Checkpoint(ctx, sc.Key()); {
	case err != nil:
		return from, to, false, err
	case since > 0:
		from = now.Add(-since)
	case ok:
		from = cp.Add(-c.cfg.Overlap)
	default:
		from = now.Add(-c.cfg.Backfill)
	}
	from = from.UTC().Truncate(time.Second)
	if limit := now.Add(-Retention + retentionMargin).UTC().Truncate(time.Second); from.Before(limit) {
		from, clamped = limit, true
	}
	return from, to, clamped, nil
}

// filter is the $filter of a window, in the one grammar the API documents
// (azure-contracts.md §2.2): quoted ISO 8601 times, ge and le. The tenant
// log's spec adds eventChannels eq 'Admin, Operation' right after the time
// range; the other scopes take no channel clause.
func filter(from, to time.Time, tenant bool) string {
	f := "eventTimestamp ge '" + from.Format(time.RFC3339) + "' and eventTimestamp le '" + to.Format(time.RFC3339) + "'"
	if tenant {
		f += " and eventChannels eq 'Admin, Operation'"
	}
	return f
}

// pull reads one scope's window page by page, newest first, and returns
// once every page is read (or reading failed); finish then waits for the
// scope's commits and returns its result. The caller may start reading the
// next scope meanwhile.
//
// A backfill (opts.Since) window ends at now less lag like any other, so
// the checkpoint it sets is never older than the one before (with an
// unchanged lag). Each page is committed as it arrives (known ids are
// skipped); the last page is committed together with the checkpoint, set to
// the window's end: pages come newest first, so only a complete window
// proves that nothing before its end is missing.
//
// A page's commit runs while the next pages are fetched and parsed, so the
// collector keeps the store and ARM busy at once, and the pages of several
// scopes share larger group commits. Each page in flight holds a token of
// budget, which bounds the memory they take across scopes. The last page
// waits for the scope's other commits: the checkpoint never passes a page
// that failed.
func (c *Collector) pull(ctx context.Context, sc Scope, now time.Time, opts RunOptions, budget chan struct{}) (finish func() ScopeResult) {
	p := &scopePull{c: c, r: ScopeResult{Scope: sc}, budget: budget}
	from, to, clamped, err := c.window(ctx, sc, now, opts.Since)
	if err != nil {
		return p.fail(fmt.Errorf("read checkpoint: %w", err))
	}
	p.r.From, p.r.To, p.r.Clamped = from, to, clamped
	// Every scope of the pass shares now, and so the run (issue 5: the
	// runbook layout writes one array per management group and run).
	run := record.CollectionRunID(now)
	if clamped {
		c.log.Warn("window start clamped to the Activity Log's 90-day retention; older events are no longer available",
			"scope", sc.String(), "from", from)
	}
	if !from.Before(to) {
		return p.done
	}
	path, apiVersion := sc.logPath()
	next := c.arm.URL(path, url.Values{"api-version": {apiVersion}, "$filter": {filter(from, to, sc.Kind == record.ScopeTenant)}})
	for next != "" {
		body, err := c.arm.Get(ctx, next)
		if err != nil {
			return p.fail(fmt.Errorf("read page %d: %w", p.r.Pages+1, err))
		}
		events, link, err := decodePage(body)
		if err != nil {
			return p.fail(fmt.Errorf("read page %d: %w", p.r.Pages+1, err))
		}
		recs := make([]record.Record, 0, len(events))
		for _, ev := range events {
			rec, err := newRecord(sc, ev, to, run) // decodePage validated the page
			if err != nil {
				return p.fail(fmt.Errorf("read page %d: %w", p.r.Pages+1, err))
			}
			recs = append(recs, rec)
		}
		p.r.Pages++
		p.r.Events += len(recs)
		next = link
		if opts.DryRun {
			continue
		}
		select {
		case budget <- struct{}{}:
		case <-ctx.Done():
			return p.fail(context.Cause(ctx))
		}
		if next == "" {
			return func() ScopeResult { return p.commitLast(ctx, recs, to) }
		}
		p.commit(ctx, recs)
	}
	return p.done
}

// pagesInFlight bounds, per scope pulled at once, the pages read and not
// yet committed. When the store is slower than ARM, the pages of all scopes
// queue up for the store's writer and share one transaction (group
// commit), which costs far less per event than many small ones; the depth
// gives the writer those pages without asking ARM for more scopes at once.
// Each page holds its events in memory (about 1 MB for 200 events).
const pagesInFlight = 4

// scopePull is the state of one scope's pull: its result so far and its
// page commits in flight.
type scopePull struct {
	c        *Collector
	r        ScopeResult
	budget   chan struct{}
	inflight []*pageCommit // oldest first
}

// pageCommit is a page's Append running while the next page is read.
type pageCommit struct {
	done         chan struct{}
	page, events int
	added        int
	err          error
}

// commit appends recs, the scope's latest page, in the background; the
// budget token taken for it is given back when it is done.
func (p *scopePull) commit(ctx context.Context, recs []record.Record) {
	pc := &pageCommit{done: make(chan struct{}), page: p.r.Pages, events: len(recs)}
	go func() {
		defer func() { <-p.budget; close(pc.done) }()
		pc.added, pc.err = p.c.store.Append(ctx, recs)
	}()
	p.inflight = append(p.inflight, pc)
}

// settle waits for every commit in flight and counts them; it returns the
// error of the first that failed.
func (p *scopePull) settle() error {
	var first error
	for _, pc := range p.inflight {
		<-pc.done
		if pc.err != nil {
			if first == nil {
				first = fmt.Errorf("commit page %d: %w", pc.page, pc.err)
			}
			continue
		}
		p.r.New += pc.added
		p.r.Duplicates += pc.events - pc.added
	}
	p.inflight = nil
	return first
}

// commitLast commits the last page with the scope's checkpoint once the
// other pages are committed, and gives back the page's budget token.
func (p *scopePull) commitLast(ctx context.Context, recs []record.Record, until time.Time) ScopeResult {
	defer func() { <-p.budget }()
	if err := p.settle(); err != nil {
		p.r.Err = err
		return p.r
	}
	added, err := p.c.store.AppendWithCheckpoint(ctx, recs, p.r.Scope.Key(), until)
	if err != nil {
		p.r.Err = fmt.Errorf("commit page %d: %w", p.r.Pages, err)
		return p.r
	}
	p.r.New += added
	p.r.Duplicates += len(recs) - added
	return p.r
}

// fail ends the scope with err once its commits in flight are done, so
// that none outlives the run.
func (p *scopePull) fail(err error) func() ScopeResult {
	return func() ScopeResult {
		_ = p.settle() // err is what ended the scope
		p.r.Err = err
		return p.r
	}
}

// done is the finish of a scope whose pages are all committing.
func (p *scopePull) done() ScopeResult {
	if err := p.settle(); err != nil {
		p.r.Err = err
	}
	return p.r
}
