package store

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
)

// rollupFixture stores gateway calls over three days at irregular times,
// with every kind of principal and usage, some pending then finished,
// beside activity records.
func rollupFixture(t *testing.T, s *Store) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	principals := []record.Principal{
		{Kind: record.PrincipalKey, KeyName: "bot"},
		{Kind: record.PrincipalEntraUser, UPN: "ana@contoso.com", OID: "oid-ana"},
		{Kind: record.PrincipalEntraApp, OID: "oid-app", AppID: "app"},
		{},
	}
	var recs []record.Record
	for i := range 600 {
		at := t0.Add(time.Duration(rng.Int64N(int64(72 * time.Hour))))
		g := record.GatewayRequest{State: record.StateCompleted, Principal: principals[i%4],
			Deployment: []string{"gpt-4o", "mini", ""}[i%3], ModelRequested: "m-req", Operation: record.OpChatCompletions,
			Backend: []string{"east", "west"}[i%2], Status: []int{200, 200, 429, 500, 200}[i%5]}
		if i%7 != 0 {
			g.ModelReturned = "m-ret"
		}
		if i%3 != 2 {
			g.Usage = &record.Usage{PromptTokens: i, CompletionTokens: 2 * i, TotalTokens: 3 * i, CachedTokens: i % 5,
				ReasoningTokens: i % 3, Source: []string{record.UsageReported, record.UsageEstimated}[i%2]}
		}
		recs = append(recs, gwRec(t, fmt.Sprintf("g%03d", i), at, g))
		if i%10 == 0 {
			recs = append(recs, rec(fmt.Sprintf("a%03d", i), at, `{"operation_name":"x"}`))
		}
	}
	// Payloads without any field the rollup reads still count as calls.
	recs = append(recs, stateRec("bare-1", record.StateCompleted), stateRec("bare-2", record.StateDenied))
	// The requested model after everything else, behind the captured
	// content, where a reader that stops early might not look: it counts
	// only when the returned model is empty.
	for i, returned := range []string{`""`, `"m-ret"`, `null`} {
		recs = append(recs, record.Record{ID: fmt.Sprint("late-", i), Kind: record.KindGatewayRequest, Version: 1, Time: t0,
			Data: json.RawMessage(`{"state":"completed","principal":{"kind":"key","key_name":"bot"},"deployment":"gpt-4o",` +
				`"model_returned":` + returned + `,"operation":"chat.completions","backend":"east","status":200,` +
				`"usage":{"total_tokens":7},"prompt":{"text":"hi"},"model_requested":"late-model"}`)})
	}
	mustAppend(t, s, recs...)
	// Strict audit: begun pending, then finished with usage.
	for i := range 20 {
		at := t0.Add(time.Duration(i) * 97 * time.Minute)
		g := record.GatewayRequest{State: record.StateStarted, Principal: principals[0], Deployment: "gpt-4o"}
		r := gwRec(t, fmt.Sprintf("p%02d", i), at, g)
		if err := s.Begin(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			g.State, g.Status, g.Usage = record.StateCompleted, 200, &record.Usage{PromptTokens: 5, CompletionTokens: 6, TotalTokens: 11}
			if err := s.Finish(t.Context(), gwRec(t, r.ID, at.Add(time.Second), g)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func checkUsageFast(t *testing.T, s *Store) {
	t.Helper()
	windows := []struct{ since, until time.Time }{
		{},
		{t0.Add(90 * time.Minute), time.Time{}},
		{time.Time{}, t0.Add(30*time.Hour + 17*time.Second)},
		{t0.Add(3*time.Hour + time.Nanosecond), t0.Add(50*time.Hour - time.Nanosecond)},
		{t0.Add(24 * time.Hour), t0.Add(48 * time.Hour)},
		{t0.Add(5*time.Hour + 10*time.Minute), t0.Add(5*time.Hour + 50*time.Minute)},
	}
	groupings := [][]string{nil, {"principal", "deployment"}, {"model"}, {"day", "backend"}, {"operation", "principal", "day"}}
	for _, w := range windows {
		for _, by := range groupings {
			q := UsageQuery{By: by, Since: w.since, Until: w.until}
			want, err := s.Usage(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.UsageFast(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("UsageFast(%v, %s..%s) differs from Usage (-Usage +UsageFast):\n%s", by, w.since, w.until, diff)
			}
		}
	}
}

func TestUsageFastMatchesUsage(t *testing.T) {
	s := openStore(t, Config{})
	rollupFixture(t, s)
	checkUsageFast(t, s) // nothing rolled up yet: every record is read
	n, err := s.RollUp(t.Context())
	if err != nil || n == 0 {
		t.Fatalf("RollUp: %d, %v", n, err)
	}
	var hours int
	if err := s.rdb.QueryRowContext(t.Context(), `SELECT count(*) FROM usage_hourly`).Scan(&hours); err != nil || hours == 0 {
		t.Fatalf("usage_hourly holds %d rows after RollUp, %v", hours, err)
	}
	checkUsageFast(t, s)
	if n, err := s.RollUp(t.Context()); err != nil || n != 0 {
		t.Errorf("a second RollUp moved %d, %v", n, err)
	}

	// Records leave: pruned after delivery, the rollup follows.
	if err := s.SetCursor(t.Context(), "sink", 300); err != nil {
		t.Fatal(err)
	}
	s.cfg.Retention = time.Nanosecond
	if n, err := s.Prune(t.Context(), t0.Add(100*time.Hour), []string{"sink"}); err != nil || n == 0 {
		t.Fatalf("Prune: %d, %v", n, err)
	}
	checkUsageFast(t, s)

	// More calls after the rollup are read from records until the next.
	rollupFixture(t, s)
	checkUsageFast(t, s)
	if _, err := s.RollUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkUsageFast(t, s)
}

func TestRollUpInSteps(t *testing.T) {
	s := openStore(t, Config{})
	var recs []record.Record
	for i := range rollupStep + 123 {
		recs = append(recs, gwRec(t, fmt.Sprintf("s%05d", i), t0.Add(time.Duration(i)*time.Second),
			record.GatewayRequest{State: record.StateCompleted, Status: 200, Usage: &record.Usage{TotalTokens: 2}}))
	}
	mustAppend(t, s, recs...)
	n, err := s.RollUp(t.Context())
	if err != nil || n != rollupStep+123 {
		t.Fatalf("RollUp = %d, %v; want every record in two steps", n, err)
	}
	got, err := s.usageHours(t.Context(), nil, -1<<62, 1<<62)
	if err != nil || len(got) != 1 || got[0].Requests != int64(len(recs)) || got[0].TotalTokens != 2*int64(len(recs)) {
		t.Errorf("usage_hourly sums %+v, %v", got, err)
	}
}

// TestUsageRollupBackfill checks that migration 4 fills usage_hourly from
// the records a store held before it.
func TestUsageRollupBackfill(t *testing.T) {
	s := openStore(t, Config{})
	rollupFixture(t, s)
	if _, err := s.wdb.ExecContext(t.Context(), `DELETE FROM usage_hourly`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.wdb.ExecContext(t.Context(), `UPDATE usage_rollup SET seq = (SELECT max(seq) FROM records)`); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range rollupMigration() {
		if strings.HasPrefix(stmt, "INSERT INTO usage_hourly SELECT") { // the backfill
			if _, err := s.wdb.ExecContext(t.Context(), stmt); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkUsageFast(t, s)
}

func TestSeriesFromRollupMatchesRecords(t *testing.T) {
	s := openStore(t, Config{})
	rollupFixture(t, s)
	since := t0.Truncate(time.Hour)
	fast, err := s.Series(t.Context(), since, since.Add(72*time.Hour), 6*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RollUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	fast2, err := s.Series(t.Context(), since, since.Add(72*time.Hour), 6*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fast, fast2); diff != "" {
		t.Errorf("Series changed with RollUp (-before +after):\n%s", diff)
	}
	// The same range with a since off the hour reads records; shift back.
	slow, err := s.Series(t.Context(), since.Add(-time.Nanosecond), since.Add(72*time.Hour-time.Nanosecond), 6*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for i := range slow {
		slow[i].Start = fast[i].Start
	}
	// Records at exactly since-1ns do not exist, so the buckets agree.
	if diff := cmp.Diff(slow, fast); diff != "" {
		t.Errorf("Series from usage_hourly differs (-records +rollup):\n%s", diff)
	}
	var total int64
	for _, b := range fast {
		total += b.Requests
	}
	if total == 0 {
		t.Error("the series is empty")
	}
}

// TestUsageFastAfterRecovery: records left pending by a crash are released
// as interrupted at the next Open, and their usage joins usage_hourly.
func TestUsageFastAfterRecovery(t *testing.T) {
	cfg := testConfig(t)
	s, err := Open(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rollupFixture(t, s) // leaves ten strict calls begun and never finished
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if s.Recovered() != 10 {
		t.Fatalf("recovered %d records, want 10", s.Recovered())
	}
	var pending int64
	if err := s.rdb.QueryRowContext(t.Context(), `SELECT (SELECT count(*) FROM records WHERE seq IS NULL) + (SELECT count(*) FROM started)`).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("pending after recovery: %d, %v", pending, err)
	}
	checkUsageFast(t, s)
	if _, err := s.RollUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkUsageFast(t, s)
}

// TestRollUpRunningSums checks the writer's running sums: once RollUp has
// caught up, the next one writes the sums of what was committed since
// without reading it back, and they equal the records'; records deleted
// after the cursor make RollUp read the records again.
func TestRollUpRunningSums(t *testing.T) {
	s := openStore(t, Config{})
	ctx := t.Context()
	rollUp := func() (n int, fast bool) {
		t.Helper()
		before := s.w.roll.fast
		n, err := s.RollUp(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n, s.w.roll.fast > before // read after the writer answered
	}
	if _, fast := rollUp(); fast {
		t.Error("the first RollUp after Open used running sums it cannot have")
	}
	rollupFixture(t, s)
	if n, fast := rollUp(); !fast || n == 0 {
		t.Errorf("RollUp after catching up: moved %d, from running sums %v; want both", n, fast)
	}
	checkUsageFast(t, s)

	// Delivered and pruned before they were rolled up: the sums would
	// count records that are gone, so RollUp reads the records instead.
	mustAppend(t, s, gwRec(t, "late", t0, record.GatewayRequest{State: record.StateCompleted, Status: 200,
		Usage: &record.Usage{TotalTokens: 1000}}))
	last := checkStats(t, s).LastSeq
	if err := s.SetCursor(ctx, "sink", last); err != nil {
		t.Fatal(err)
	}
	s.cfg.Retention = time.Nanosecond
	if n, err := s.Prune(ctx, t0.Add(100*time.Hour), []string{"sink"}); err != nil || n == 0 {
		t.Fatalf("Prune: %d, %v", n, err)
	}
	if _, fast := rollUp(); fast {
		t.Error("RollUp used running sums after records past the cursor were pruned")
	}
	checkUsageFast(t, s)
	rollupFixture(t, s) // the pruned ids come back as new records
	if _, fast := rollUp(); !fast {
		t.Error("RollUp did not start new running sums after reading the records")
	}
	checkUsageFast(t, s)
}
