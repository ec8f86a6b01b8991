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
