package record

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestMarshalActivityLogKeepsEventBytes proves the event is embedded byte
// for byte (encoding/json would compact it and escape <, > and &) and that
// the result decodes back into the same payload.
func TestMarshalActivityLogKeepsEventBytes(t *testing.T) {
	ev := `{ "eventDataId" : "e1", "n": 12345678901234567890, "p": "{\"a\":\"<b>&\"}" }`
	p := ActivityLog{Scope: Scope{Kind: ScopeManagementGroup, ID: "mg-a"}, EventDataID: "e1",
		EventTimestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Event: json.RawMessage(ev)}
	b, err := MarshalActivityLog(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), `,"event":`+ev+`}`) || !json.Valid(b) {
		t.Fatalf("encoded = %s", b)
	}
	var back ActivityLog
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if string(back.Event) != ev || back.Scope != p.Scope || !back.EventTimestamp.Equal(p.EventTimestamp) {
		t.Errorf("decoded = %+v", back)
	}
	if _, err := MarshalActivityLog(ActivityLog{}); err == nil {
		t.Error("empty event accepted")
	}
}

// TestCollectionRun proves the run id is the pass's start in UTC to the
// second, and that it is encoded only when set (records of earlier
// versions have none).
func TestCollectionRun(t *testing.T) {
	start := time.Date(2026, 11, 20, 13, 4, 5, 987654321, time.FixedZone("CET", 3600))
	if got, want := CollectionRunID(start), "2026-11-20T12:04:05Z"; got != want {
		t.Errorf("CollectionRunID = %q, want %q", got, want)
	}
	p := ActivityLog{EventDataID: "e1", Event: json.RawMessage(`{}`)}
	b, err := MarshalActivityLog(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "collection_run") {
		t.Errorf("record without a run encodes one: %s", b)
	}
	p.CollectionRun = CollectionRunID(start)
	if b, err = MarshalActivityLog(p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"collection_run":"2026-11-20T12:04:05Z","event":{}`) {
		t.Errorf("encoded = %s", b)
	}
}
