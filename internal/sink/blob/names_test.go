package blob

import (
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink/sinktest"
)

func TestSegment(t *testing.T) {
	for in, want := range map[string]string{
		"mg-a":             "mg-a",
		"Contoso (Prod).1": "Contoso~20(Prod).1",
		"a/b":              "a~2Fb",
		"a~2Fb":            "a~7E2Fb", // the escape character is escaped: no collision with "a/b"
		".":                "~2E",
		"..":               "~2E~2E",
		"...":              "...",
		"é":                "~C3~A9",
		"":                 "",
	} {
		if got := segment(in); got != want {
			t.Errorf("segment(%q) = %q, want %q", in, got, want)
		}
	}
	long1, long2 := strings.Repeat("x", 300)+"1", strings.Repeat("x", 300)+"2"
	s1, s2 := segment(long1), segment(long2)
	if len(s1) > maxSegment || len(s2) > maxSegment {
		t.Errorf("long segments have %d and %d bytes, want at most %d", len(s1), len(s2), maxSegment)
	}
	if s1 == s2 {
		t.Errorf("two long ids share the segment %q", s1)
	}
}

func TestGroups(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 21, 59, 59, 0, time.UTC)
	gw := sinktest.Records(0, 1)[0]
	gw.Time = t0
	recs := []record.Record{
		activity("a1", record.ScopeManagementGroup, "mg-a", t0),
		gw,
		activity("b1", record.ScopeManagementGroup, "mg-b", t0),
		activity("a2", record.ScopeManagementGroup, "mg-a", t0.Add(time.Second)), // next hour
		activity("a3", record.ScopeManagementGroup, "mg-a", t0),
		{ID: "x", Kind: record.KindActivityLog, Time: t0, Data: []byte(`{}`)},
	}
	var got []string
	for _, g := range groups(recs) {
		var ids []string
		for _, i := range g.recs {
			ids = append(ids, recs[i].ID)
		}
		got = append(got, g.kind+"/"+g.scope+"/"+g.hour+" "+strings.Join(ids, ","))
	}
	want := []string{
		"activity_log/mg-a/2026/11/22/21 a1,a3",
		"gateway_request/all/2026/11/22/21 rec-000000",
		"activity_log/mg-b/2026/11/22/21 b1",
		"activity_log/mg-a/2026/11/22/22 a2",
		"activity_log/unscoped/2026/11/22/21 x",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("groups:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
