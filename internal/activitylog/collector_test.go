package activitylog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

// t0 is "now" at the first pass of the end-to-end tests.
var t0 = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

const (
	bigGroups   = 200
	bigLevels   = 6
	bigPerScope = 23 // with pages of 7: 7, 7, 7, 2
	bigPageSize = 7
)

// bigTenant is 200 groups in 6 levels, 23 events per scope spread over the
// 5 days that end an hour before t0 (clear of the lag).
func bigTenant() emulator.ARMTenant {
	return emulator.GenerateTenant(emulator.ARMTenantSpec{
		Groups: bigGroups, Levels: bigLevels, EventsPerScope: bigPerScope,
		Start: t0.Add(-5*24*time.Hour - time.Hour), End: t0.Add(-time.Hour), Seed: 7,
	})
}

func testConfig(clk *clock) Config {
	return Config{
		Scopes:   ScopeSelection{AllGroups: true},
		Backfill: 7 * 24 * time.Hour, Lag: 5 * time.Minute, Overlap: 30 * time.Minute,
		Concurrency: 4, Now: clk.Now,
	}
}

// TestEndToEndTenant runs passes over a 200-group, 6-level tenant with
// 429s, 5xx and group pages of 37 (List pages with @nextLink, descendants
// with nextLink) and event pages of 7 and 2. It proves: every event of every
// group (root included) is stored exactly once; a second pass adds
// nothing; a late event inside the overlap is picked up by the next pass;
// the $filter is exactly the documented grammar.
func TestEndToEndTenant(t *testing.T) {
	clk := &clock{t: t0}
	arm := newEmulator(t, bigTenant(), bigPageSize, clk)
	arm.Inject(emulator.ARMFault{Status: http.StatusServiceUnavailable, Count: 3})
	arm.Inject(emulator.ARMFault{Path: "/descendants", Status: http.StatusInternalServerError, Count: 2})
	arm.Inject(emulator.ARMFault{Path: "/eventtypes/management/values", Status: http.StatusTooManyRequests, RetryAfter: time.Second, Count: 2})
	arm.Inject(emulator.ARMFault{Path: "/eventtypes/management/values", Status: http.StatusBadGateway, Count: 4})
	st := openStore(t, "")
	c := New(testConfig(clk), newARMClient(t, serve(t, arm)), st, nil)

	sum, err := c.Run(t.Context(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantScopes := bigGroups + 1
	if len(sum.Scopes) != wantScopes || sum.Failed() != 0 {
		for _, r := range sum.Scopes {
			if r.Err != nil {
				t.Errorf("scope %s: %v", r.Scope, r.Err)
			}
		}
		t.Fatalf("first pass: %d scopes, %d failed; want %d, 0", len(sum.Scopes), sum.Failed(), wantScopes)
	}
	want := wantScopes * bigPerScope
	events, added, dups, pages := totals(sum)
	if events != want || added != want || dups != 0 || pages != wantScopes*4 {
		t.Errorf("first pass: events %d new %d dups %d pages %d; want %d %d 0 %d", events, added, dups, pages, want, want, wantScopes*4)
	}
	got := activity(t, st)
	if len(got) != want {
		t.Fatalf("stored %d activity records, want %d", len(got), want)
	}
	perScope := map[string]int{}
	firstRun := "2026-11-20T12:00:00Z" // the pass's start: t0
	for id, p := range got {
		if id != RecordID(p.EventDataID, p.Event) || p.EventDataID == "" {
			t.Fatalf("record %s has event_data_id %q", id, p.EventDataID)
		}
		if p.CollectionRun != firstRun {
			t.Fatalf("record %s has collection_run %q, want %q", id, p.CollectionRun, firstRun)
		}
		if p.Scope.Kind != record.ScopeManagementGroup {
			t.Fatalf("record %s scope %+v", id, p.Scope)
		}
		perScope[strings.ToLower(p.Scope.ID)]++
	}
	if len(perScope) != wantScopes {
		t.Errorf("records span %d scopes, want %d", len(perScope), wantScopes)
	}
	for s, n := range perScope {
		if n != bigPerScope {
			t.Errorf("scope %s has %d records, want %d", s, n, bigPerScope)
		}
	}
	for _, r := range arm.Requests() {
		if !strings.Contains(r.Path, "/eventtypes/") || strings.Contains(r.Query, "skiptoken") {
			continue
		}
		want := "eventTimestamp ge '2026-11-13T12:00:00Z' and eventTimestamp le '2026-11-20T11:55:00Z'"
		if !strings.Contains(r.Query, strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(want, " ", "+"), "'", "%27"), ":", "%3A")) {
			t.Fatalf("first request of %s has query %s; want $filter %s", r.Path, r.Query, want)
		}
	}

	// Second pass ten minutes later: nothing new.
	clk.Add(10 * time.Minute)
	sum, err = c.Run(t.Context(), RunOptions{})
	if err != nil || sum.Failed() != 0 {
		t.Fatalf("second pass: %v, %d failed", err, sum.Failed())
	}
	if _, added, _, _ := totals(sum); added != 0 {
		t.Errorf("second pass added %d records, want 0", added)
	}

	// A late event, timestamped inside the overlap of the next window.
	cp, ok, err := st.Checkpoint(t.Context(), Scope{Kind: record.ScopeManagementGroup, ID: "mg-3-00070"}.Key())
	if err != nil || !ok {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	late := fmt.Sprintf(`{"eventDataId":"late-0001","eventTimestamp":%q,"operationName":{"value":"Microsoft.Authorization/policyAssignments/write"}}`,
		cp.Add(-10*time.Minute).Format(time.RFC3339Nano))
	arm.AddEvents(emulator.ARMGroupScope("mg-3-00070"), []byte(late))
	clk.Add(10 * time.Minute)
	sum, err = c.Run(t.Context(), RunOptions{})
	if err != nil || sum.Failed() != 0 {
		t.Fatalf("third pass: %v, %d failed", err, sum.Failed())
	}
	if _, added, _, _ := totals(sum); added != 1 {
		t.Errorf("third pass added %d records, want the 1 late event", added)
	}
	// The late event belongs to the third pass; every other record keeps
	// the run that first stored it, the later passes' reads were duplicates.
	runs := map[string]int{}
	for id, p := range activity(t, st) {
		runs[p.CollectionRun]++
		if id == "al-late-0001" && (string(p.Event) != late || p.CollectionRun != "2026-11-20T12:20:00Z") {
			t.Errorf("late event stored as %q in run %q, want %q in run 2026-11-20T12:20:00Z", p.Event, p.CollectionRun, late)
		}
	}
	if wantRuns := map[string]int{firstRun: want, "2026-11-20T12:20:00Z": 1}; !maps.Equal(runs, wantRuns) {
		t.Errorf("records per collection run = %v, want %v", runs, wantRuns)
	}
}

// TestScopeFailingMidRunKeepsCheckpoint makes the second page of one
// group's log malformed. It proves the failure stays with that scope (the
// others succeed and move on), its checkpoint does not move, the run
// reports it, and the next run retries the scope and stores each of its
// events exactly once.
func TestScopeFailingMidRunKeepsCheckpoint(t *testing.T) {
	clk := &clock{t: t0}
	arm := newEmulator(t, bigTenant(), bigPageSize, clk)
	const victim = "mg-2-00040"
	var broken atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/"+victim+"/") && strings.Contains(r.URL.RawQuery, "skiptoken") && broken.Add(1) == 1 {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"value":[{"eventDataId":"x","eventTim`) // cut mid-JSON
			return
		}
		arm.ServeHTTP(w, r)
	})
	st := openStore(t, "")
	c := New(testConfig(clk), newARMClient(t, serve(t, h)), st, nil)
	key := Scope{Kind: record.ScopeManagementGroup, ID: victim}.Key()

	r := runFailingOne(t, c, key)
	if !errors.Is(r.Err, ErrMalformedPage) || r.Pages != 1 {
		t.Errorf("victim result = pages %d err %v; want 1 page, ErrMalformedPage", r.Pages, r.Err)
	}
	if _, ok, _ := st.Checkpoint(t.Context(), key); ok {
		t.Error("victim's checkpoint was set by a failed pass")
	}
	if _, ok, _ := st.Checkpoint(t.Context(), Scope{Kind: record.ScopeManagementGroup, ID: testTenant}.Key()); !ok {
		t.Error("root's checkpoint not set")
	}

	clk.Add(10 * time.Minute)
	sum, err := c.Run(t.Context(), RunOptions{})
	if err != nil || sum.Failed() != 0 {
		t.Fatalf("second pass: %v, %d failed", err, sum.Failed())
	}
	r = byScope(sum)[key]
	if r.Events != bigPerScope || r.New != bigPerScope-bigPageSize || r.Duplicates != bigPageSize {
		t.Errorf("victim retried: events %d new %d dups %d; want %d %d %d", r.Events, r.New, r.Duplicates, bigPerScope, bigPerScope-bigPageSize, bigPageSize)
	}
	if got := len(activity(t, st)); got != (bigGroups+1)*bigPerScope {
		t.Errorf("stored %d records, want %d", got, (bigGroups+1)*bigPerScope)
	}
}

// failingStore fails the commit (Append) of the page that starts with the
// event failID names. Pages commit concurrently, so which page to fail is
// told by its content, not by the order of the calls.
type failingStore struct {
	*store.Store
	failID atomic.Value // string: an eventDataId
}

var errCommit = errors.New("disk on fire")

func (f *failingStore) Append(ctx context.Context, recs []record.Record) (int, error) {
	if id, _ := f.failID.Load().(string); id != "" && len(recs) > 0 && bytes.Contains(recs[0].Data, []byte(`"`+id+`"`)) {
		return 0, errCommit
	}
	return f.Store.Append(ctx, recs)
}

// TestPageCommitFailureKeepsCheckpoint fails the commit of one group's
// second page while later pages are read and committed behind it. It
// proves the scope fails with that page named, its checkpoint does not
// move although the pages around the failed one are stored, the others
// are unharmed, and the next run fills the gap exactly once.
func TestPageCommitFailureKeepsCheckpoint(t *testing.T) {
	clk := &clock{t: t0}
	arm := newEmulator(t, bigTenant(), bigPageSize, clk)
	const victim = "mg-2-00040"
	base := openStore(t, "")
	st := &failingStore{Store: base}
	var served atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/"+victim+"/") || !strings.Contains(r.URL.RawQuery, "skiptoken") || served.Add(1) != 1 {
			arm.ServeHTTP(w, r)
			return
		}
		// The victim's second page: remember its first event, then serve it.
		rec := httptest.NewRecorder()
		arm.ServeHTTP(rec, r)
		st.failID.Store(gjson.GetBytes(rec.Body.Bytes(), "value.0.eventDataId").Str)
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
	c := New(testConfig(clk), newARMClient(t, serve(t, h)), st, nil)
	key := Scope{Kind: record.ScopeManagementGroup, ID: victim}.Key()

	r := runFailingOne(t, c, key)
	if !errors.Is(r.Err, errCommit) || !strings.Contains(r.Err.Error(), "commit page 2") {
		t.Errorf("victim's error = %v; want the commit of page 2", r.Err)
	}
	// Pages 1 and 3 were committed around the failed page 2; the last page
	// (with the checkpoint) was not, since the scope had failed.
	if r.New != 2*bigPageSize {
		t.Errorf("victim stored %d new records, want %d (pages 1 and 3)", r.New, 2*bigPageSize)
	}
	if _, ok, _ := base.Checkpoint(t.Context(), key); ok {
		t.Error("victim's checkpoint was set although page 2 failed")
	}
	if got, want := len(activity(t, base)), bigGroups*bigPerScope+2*bigPageSize; got != want {
		t.Errorf("stored %d records after the failed pass, want %d", got, want)
	}

	st.failID.Store("") // the disk is fixed
	clk.Add(10 * time.Minute)
	sum, err := c.Run(t.Context(), RunOptions{})
	if err != nil || sum.Failed() != 0 {
		t.Fatalf("second pass: %v, %d failed", err, sum.Failed())
	}
	r = byScope(sum)[key]
	if r.New != bigPerScope-2*bigPageSize || r.Duplicates != 2*bigPageSize {
		t.Errorf("victim retried: new %d dups %d; want %d %d", r.New, r.Duplicates, bigPerScope-2*bigPageSize, 2*bigPageSize)
	}
	if _, ok, _ := base.Checkpoint(t.Context(), key); !ok {
		t.Error("victim's checkpoint not set by the good pass")
	}
	if got := len(activity(t, base)); got != (bigGroups+1)*bigPerScope {
		t.Errorf("stored %d records, want %d", got, (bigGroups+1)*bigPerScope)
	}
}

// TestInterruptedRunLosesNothing cancels a pass in the middle (after 150
// activity-log requests), closes the store as a stopped process would, then
// reopens it and runs again. It proves nothing is lost or stored twice: a
// checkpoint only ever covers committed records.
func TestInterruptedRunLosesNothing(t *testing.T) {
	clk := &clock{t: t0}
	arm := newEmulator(t, bigTenant(), bigPageSize, clk)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var n atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/eventtypes/") && n.Add(1) == 150 {
			cancel()
		}
		arm.ServeHTTP(w, r)
	})
	path := t.TempDir() + "/tapline.db"
	st := openStore(t, path)
	url := serve(t, h)
	_, err := New(testConfig(clk), newARMClient(t, url), st, nil).Run(ctx, RunOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted pass: err %v, want context.Canceled", err)
	}
	partial := len(activity(t, st))
	if partial == 0 || partial >= (bigGroups+1)*bigPerScope {
		t.Fatalf("interrupted pass stored %d records; want some but not all", partial)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openStore(t, path)
	clk.Add(time.Minute)
	sum, err := New(testConfig(clk), newARMClient(t, url), st, nil).Run(t.Context(), RunOptions{})
	if err != nil || sum.Failed() != 0 {
		t.Fatalf("next pass: %v, %d failed", err, sum.Failed())
	}
	_, added, _, _ := totals(sum)
	if got := len(activity(t, st)); got != (bigGroups+1)*bigPerScope || partial+added != got {
		t.Errorf("after restart: %d records (%d before + %d new), want %d", got, partial, added, (bigGroups+1)*bigPerScope)
	}
}
