package activitylog

import (
	"os"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// BenchmarkNewRecord lifts the fields of the documented administrative
// event (4 KB with its claims) into an activity_log record:
//
//	go test -run XXX -bench NewRecord ./internal/activitylog
func BenchmarkNewRecord(b *testing.B) {
	raw, err := os.ReadFile("testdata/activity-log-event-administrative.docs-sample.json")
	if err != nil {
		b.Fatal(err)
	}
	sc := Scope{Kind: record.ScopeManagementGroup, ID: "contoso"}
	at := time.Now()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewRecord(sc, raw, at, record.CollectionRunID(at)); err != nil {
			b.Fatal(err)
		}
	}
}
