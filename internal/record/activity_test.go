package record

import (
	"bytes"
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

// marshalActivityStd is MarshalActivityLog by encoding/json, HTML
// escaping off, with the event spliced in as given.
func marshalActivityStd(t testing.TB, p ActivityLog) []byte {
	t.Helper()
	ev := p.Event
	p.Event = nil
	head := bytes.TrimSuffix(marshalStd(t, p), []byte("}"))
	return append(append(append(head, `,"event":`...), ev...), '}')
}

func TestMarshalActivityLogMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 22, 21, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		p    ActivityLog
	}{
		{"every field", ActivityLog{Scope: Scope{Kind: ScopeManagementGroup, ID: "mg-a"}, EventDataID: "e1",
			CorrelationID: "c", OperationName: "Microsoft.Authorization/roleAssignments/write", Category: "Administrative",
			Level: "Informational", Status: "Succeeded", Caller: "ana@contoso.com",
			Identity: Identity{OID: "o", AppID: "a", UPN: "u"}, ResourceID: "/providers/x", EventTimestamp: at,
			SubmissionTimestamp: at.Add(time.Second), CollectionRun: "2026-11-22T21:00:00Z", Event: json.RawMessage(`{"a":1}`)}},
		{"only what is always there", ActivityLog{Scope: Scope{Kind: ScopeTenant}, EventTimestamp: at, Event: json.RawMessage(`{}`)}},
		{"one identity field, a zone", ActivityLog{Identity: Identity{UPN: "u"},
			EventTimestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", -3600)), Event: json.RawMessage(`[]`)}},
		{"escapes", ActivityLog{Scope: Scope{ID: "q\"b\\s\n\t\x01<>&\u2028\u2029é\xff"}, Caller: "<script>&",
			Identity: Identity{OID: "\x00", AppID: "\u2029"}, EventTimestamp: at, Event: json.RawMessage(`"x"`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MarshalActivityLog(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			if want := marshalActivityStd(t, tt.p); !bytes.Equal(got, want) {
				t.Errorf("MarshalActivityLog:\n got %s\nwant %s", got, want)
			}
		})
	}
	if _, err := MarshalActivityLog(ActivityLog{EventTimestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		Event: json.RawMessage(`{}`)}); err == nil {
		t.Error("a time past year 9999 encoded without error")
	}
}

func FuzzMarshalActivityLog(f *testing.F) {
	f.Add("mg-a", "e1", "ana@contoso.com", "oid", "", int64(1763845200123456789), int64(0))
	f.Add("\"\\\x00\u2028\xff", "", "<>&", "", "\u2029", int64(-1), int64(5))
	f.Fuzz(func(t *testing.T, scope, id, caller, oid, upn string, ev, sub int64) {
		p := ActivityLog{Scope: Scope{Kind: ScopeManagementGroup, ID: scope}, EventDataID: id, Caller: caller,
			Identity: Identity{OID: oid, UPN: upn}, EventTimestamp: time.Unix(0, ev).UTC(), Event: json.RawMessage(`{"a":1}`)}
		if sub != 0 {
			p.SubmissionTimestamp = time.Unix(0, sub).UTC()
		}
		got, err := MarshalActivityLog(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := marshalActivityStd(t, p); !bytes.Equal(got, want) {
			t.Errorf("MarshalActivityLog:\n got %s\nwant %s", got, want)
		}
	})
}
