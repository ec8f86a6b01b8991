package emulator

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestARMParseFilter(t *testing.T) {
	t1 := time.Date(2026, 2, 27, 20, 0, 0, 0, time.UTC)
	t2 := time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)
	cases := []struct {
		in     string
		tenant bool
		want   armFilter
	}{
		{in: "eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z'",
			want: armFilter{from: t1, to: t2}},
		// azure-cli's bare form (REC).
		{in: "eventTimestamp ge 2026-02-27T20:00:00+00:00 and eventTimestamp le 2026-03-01T21:00:00+01:00",
			want: armFilter{from: t1, to: t2}},
		{in: "  eventTimestamp  ge '2026-02-27T20:00:00.0000000Z'\tand eventTimestamp le '2026-03-01T20:00:00' ",
			want: armFilter{from: t1, to: t2}},
		{in: "eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and resourceGroupName eq 'MSSupportGroup'",
			want: armFilter{from: t1, to: t2, field: armFieldResourceGroup, value: "MSSupportGroup"}},
		{in: "eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and resourceUri eq '/subscriptions/x/resourceGroups/o''brien'",
			want: armFilter{from: t1, to: t2, field: armFieldResourceURI, value: "/subscriptions/x/resourceGroups/o'brien"}},
		{in: "eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and resourceProvider eq 'Microsoft.Web'",
			want: armFilter{from: t1, to: t2, field: armFieldProvider, value: "Microsoft.Web"}},
		{in: "eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and correlationId eq '1e121103-0ba6-4300-ac9d-952bb5d0c80f'",
			want: armFilter{from: t1, to: t2, field: armFieldCorrelation, value: "1e121103-0ba6-4300-ac9d-952bb5d0c80f"}},
		{in: "eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and eventChannels eq 'Admin, Operation'",
			tenant: true, want: armFilter{from: t1, to: t2, channels: true}},
		{in: "eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and eventChannels eq 'Admin, Operation' and resourceProvider eq 'Microsoft.Management'",
			tenant: true, want: armFilter{from: t1, to: t2, channels: true, field: armFieldProvider, value: "Microsoft.Management"}},
		{in: "eventTimestamp ge '2026-02-27' and eventTimestamp le '2026-03-01T20:00:00Z'",
			want: armFilter{from: t1.Add(-20 * time.Hour), to: t2}},
	}
	for _, tc := range cases {
		got, err := armParseFilter(tc.in, tc.tenant)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(armFilter{})); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, bad := range []string{
		"",
		"eventTimestamp ge '2026-02-27T20:00:00Z'",
		"eventTimestamp le '2026-03-01T20:00:00Z' and eventTimestamp ge '2026-02-27T20:00:00Z'",
		"EventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z'",
		"eventTimestamp ge '2026-02-27T20:00:00Z' AND eventTimestamp le '2026-03-01T20:00:00Z'",
		"eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and",
		"eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' resourceGroupName eq 'x'",
		"eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and resourceGroupName ne 'x'",
		"eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and resourceProvider eq 'a' and eventChannels eq 'Admin, Operation'",
		"eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and eventChannels eq 'Admin, Operation' and eventChannels eq 'Admin, Operation'",
		"eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le 'tomorrow'",
		"eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and operations eq 'x'",
		"eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and 'resourceGroupName' eq 'x'",
	} {
		if f, err := armParseFilter(bad, true); err == nil {
			t.Errorf("%q accepted as %+v", bad, f)
		}
	}
}

// FuzzARMParseFilter: any $filter is either refused or yields both times.
func FuzzARMParseFilter(f *testing.F) {
	f.Add("eventTimestamp ge '2026-02-27T20:00:00Z' and eventTimestamp le '2026-03-01T20:00:00Z' and resourceGroupName eq 'a''b'", false)
	f.Add("eventTimestamp ge 2026-02-27T20:00:00+00:00 and eventTimestamp le 2026-03-01T20:00:00+00:00 and eventChannels eq 'Admin, Operation'", true)
	f.Add("eventTimestamp ge '", false)
	f.Fuzz(func(t *testing.T, s string, tenant bool) {
		got, err := armParseFilter(s, tenant)
		if err == nil && (got.from.IsZero() || got.to.IsZero()) {
			t.Errorf("%q accepted without times: %+v", s, got)
		}
	})
}

// armDiscard is a ResponseWriter that only counts, so that the benchmark
// measures the emulator rather than a recorder.
type armDiscard struct {
	h http.Header
	n int
}

func (d *armDiscard) Header() http.Header { return d.h }

func (d *armDiscard) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }

func (d *armDiscard) WriteHeader(int) {}

// BenchmarkARMActivityLogPage serves one page of 200 generated events from
// the middle of a scope of a million, in a tenant of 1,000 groups (about
// 1.5 billion events, none stored).
func BenchmarkARMActivityLogPage(b *testing.B) {
	start := armTestNow.Add(-60 * 24 * time.Hour)
	tn := GenerateTenant(ARMTenantSpec{Groups: 1000, Levels: 5, SubscriptionsPerGroup: 0, EventsPerScope: 1_000_000, Start: start, End: armTestNow, Seed: 1})
	a, err := NewARM(ARMConfig{TenantID: armTestTenant, Tenant: tn, Now: func() time.Time { return armTestNow }}, nil)
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, armGroupLogURL("", tn.Groups[500].ID, armFilterQ(start.Add(30*24*time.Hour), start.Add(31*24*time.Hour), "")), nil)
	req.Header.Set("Authorization", "Bearer x")
	w := &armDiscard{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		w.n = 0
		a.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(armDefaultPageSize), "events/page")
	b.ReportMetric(float64(w.n), "bytes/page")
	if g := a.generated.Load(); g%armDefaultPageSize != 0 {
		b.Fatalf("generated %d events, not whole pages", g)
	}
}
