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
// cannot be listed or ctx ends.
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
	sem := make(chan struct{}, c.cfg.Concurrency)
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
			defer func() { <-sem; wg.Done() }()
			r := c.pull(ctx, sc, now, opts)
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

// pull reads one scope's window page by page, newest first.
// A backfill (opts.Since) window ends at now less lag like any other, so the
// checkpoint it sets is never older than the one before (with an unchanged
// lag). Each page is
// committed as it arrives (known ids are skipped); the last page is
// committed together with the checkpoint, set to the window's end: pages
// come newest first, so only a complete window proves that nothing before
// its end is missing.
//
// A page's commit runs while the next pages are fetched and parsed, so a
// scope keeps the store and ARM busy at once and concurrent scopes' pages
// share larger group commits. At most commitDepth commits per scope are in
// flight, and the last page waits for all of them: the checkpoint never
// passes a page that failed.
func (c *Collector) pull(ctx context.Context, sc Scope, now time.Time, opts RunOptions) (r ScopeResult) {
	r = ScopeResult{Scope: sc}
	var inflight []*pageCommit // oldest first
	// settle waits for the oldest commits in flight until at most keep are
	// left, and counts them.
	settle := func(keep int) error {
		var first error
		for len(inflight) > keep {
			p := inflight[0]
			inflight = inflight[1:]
			<-p.done
			if p.err != nil {
				if first == nil {
					first = fmt.Errorf("commit page %d: %w", p.page, p.err)
				}
				continue
			}
			r.New += p.added
			r.Duplicates += p.events - p.added
		}
		return first
	}
	defer func() { // an error return still waits, so no commit outlives the run
		if err := settle(0); err != nil && r.Err == nil {
			r.Err = err
		}
	}()
	from, to, clamped, err := c.window(ctx, sc, now, opts.Since)
	if err != nil {
		r.Err = fmt.Errorf("read checkpoint: %w", err)
		return r
	}
	r.From, r.To, r.Clamped = from, to, clamped
	if clamped {
		c.log.Warn("window start clamped to the Activity Log's 90-day retention; older events are no longer available",
			"scope", sc.String(), "from", from)
	}
	if !from.Before(to) {
		return r
	}
	path, apiVersion := sc.logPath()
	next := c.arm.URL(path, url.Values{"api-version": {apiVersion}, "$filter": {filter(from, to, sc.Kind == record.ScopeTenant)}})
	for next != "" {
		body, err := c.arm.Get(ctx, next)
		if err != nil {
			r.Err = fmt.Errorf("read page %d: %w", r.Pages+1, err)
			return r
		}
		events, link, err := decodePage(body)
		if err != nil {
			r.Err = fmt.Errorf("read page %d: %w", r.Pages+1, err)
			return r
		}
		recs := make([]record.Record, 0, len(events))
		for _, ev := range events {
			rec, err := newRecord(sc, ev, to) // decodePage validated the page
			if err != nil {
				r.Err = fmt.Errorf("read page %d: %w", r.Pages+1, err)
				return r
			}
			recs = append(recs, rec)
		}
		r.Pages++
		r.Events += len(recs)
		next = link
		if opts.DryRun {
			continue
		}
		if next != "" {
			if err := settle(commitDepth - 1); err != nil {
				r.Err = err
				return r
			}
			inflight = append(inflight, c.commitPage(ctx, r.Pages, recs))
			continue
		}
		if err := settle(0); err != nil {
			r.Err = err
			return r
		}
		added, err := c.store.AppendWithCheckpoint(ctx, recs, sc.Key(), to)
		if err != nil {
			r.Err = fmt.Errorf("commit page %d: %w", r.Pages, err)
			return r
		}
		r.New += added
		r.Duplicates += len(recs) - added
	}
	return r
}

// commitDepth is how many pages a scope may have committing while it reads
// on. When the store is slower than ARM, the pages of all scopes queue up
// for the store's writer and share one transaction (group commit), which
// costs far less per event than many small ones; depth gives the writer
// those pages without asking ARM for more scopes at once. Each page in
// flight holds its events in memory (about 1 MB for 200 events).
const commitDepth = 4

// pageCommit is a page's Append running while the next page is read.
type pageCommit struct {
	done         chan struct{}
	page, events int
	added        int
	err          error
}

// commitPage appends recs, page number page, in the background.
func (c *Collector) commitPage(ctx context.Context, page int, recs []record.Record) *pageCommit {
	p := &pageCommit{done: make(chan struct{}), page: page, events: len(recs)}
	go func() {
		defer close(p.done)
		p.added, p.err = c.store.Append(ctx, recs)
	}()
	return p
}
