package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"
)

// marshalStd is the reference: v by encoding/json with HTML escaping off.
func marshalStd(t testing.TB, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 22, 21, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		rec  Record
	}{
		{"gateway", Record{ID: "0193a1b2-c3d4-7e5f-8000-000000000001", Kind: KindGatewayRequest, Version: 1, Time: at,
			Data: json.RawMessage(`{"prompt":"<b>héllo</b> & \u2028","n":12345678901234567890123}`)}},
		{"whole second in a zone", Record{ID: "a", Kind: KindActivityLog, Version: 1,
			Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600)), Data: json.RawMessage(`[]`)}},
		{"escapes in id", Record{ID: "q\"b\\s\n\t\x01<>&\u2028\u2029é\xff", Kind: "k", Version: 12, Time: at, Data: json.RawMessage(`1`)}},
		{"nil data", Record{ID: "x", Kind: KindActivityLog, Time: at}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendJSON([]byte("prefix"), tt.rec)
			want := append([]byte("prefix"), marshalStd(t, tt.rec)...)
			if !bytes.Equal(got, want) {
				t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("id-1", "gateway_request", 1, int64(1763845200123456789))
	f.Add("\"\\\x00\u2028\xff", "", -3, int64(0))
	f.Fuzz(func(t *testing.T, id, kind string, version int, nanos int64) {
		r := Record{ID: id, Kind: Kind(kind), Version: version, Time: time.Unix(0, nanos).UTC(), Data: json.RawMessage(`{"a":1}`)}
		got := AppendJSON(nil, r)
		if want := marshalStd(t, r); !bytes.Equal(got, want) {
			t.Errorf("AppendJSON(%q, %q):\n got %s\nwant %s", id, kind, got, want)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	r := Record{ID: "0193a1b2-c3d4-7e5f-8000-000000000001", Kind: KindGatewayRequest, Version: 1,
		Time: time.Now().UTC(), Data: json.RawMessage(bytes.Repeat([]byte(`{"a":"bcdefgh"},`), 60)[:959])}
	r.Data = append(append([]byte("["), r.Data...), ']')
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = AppendJSON(buf[:0], r)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for b.Loop() {
			buf.Reset()
			_ = enc.Encode(r)
		}
	})
}

func TestAppendGatewayRequestMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 22, 21, 0, 0, 123456789, time.UTC)
	ttft := 12.5
	full := GatewayRequest{State: StateCompleted, RequestID: "0193a1b2", Start: at, DurationMS: 812.5, TTFTMS: &ttft,
		Principal: Principal{Kind: PrincipalEntraUser, OID: "o", TID: "t", AppID: "a", UPN: "u@x", Name: "Ana <admin>",
			Roles: []string{"r1", "r&2"}, KeyName: "k"},
		ClientIP: "203.0.113.7", ForwardedFor: "10.0.0.1, 203.0.113.7", UserAgent: "ua/1", Method: "POST",
		Path: "/openai/deployments/gpt-4o/chat/completions", Operation: OpChatCompletions, APIVersion: "2024-10-21",
		Deployment: "gpt-4o", ModelRequested: "gpt-4o", ModelReturned: "gpt-4o-2024-11-20", Stream: true, Backend: "eastus",
		Attempts: 2, Tried: []Attempt{{Backend: "westus", Status: 429, RetryAfterMS: 1500}, {Backend: "x", Error: "refused"}},
		UpstreamStatus: 200, Status: 200, Upstream: UpstreamIDs{APIMRequestID: "ap", RequestID: "xr", Region: "East US"},
		Usage:         &Usage{PromptTokens: 120, CompletionTokens: 80, TotalTokens: 200, CachedTokens: 64, ReasoningTokens: 12, Source: UsageReported},
		FinishReasons: []string{"stop", "length"}, ContentFilter: &ContentFilter{Filtered: true, Categories: []string{"hate"}},
		RequestBytes: 153, ResponseBytes: 949,
		Prompt:   &Content{Text: "<script>\"q\"\n\u2028é\xff", Bytes: 153, Truncated: true, Redactions: 2},
		Response: &Content{Bytes: 0, Omitted: "binary"},
		Limit:    &Limit{Name: "tpm", Remaining: -5, Throttled: true},
		Error:    &Error{Code: "429", Message: "slow down", RetryAfterMS: 2000}}
	tests := []struct {
		name string
		g    GatewayRequest
	}{
		{"every field", full},
		{"zero", GatewayRequest{}},
		{"started, no upstream", GatewayRequest{State: StateStarted, RequestID: "r", Start: at.In(time.FixedZone("", 3600)),
			Principal: Principal{KeyName: "bot"}, Upstream: UpstreamIDs{Region: "r"}, Prompt: &Content{Text: "hi", Bytes: 2},
			ContentFilter: &ContentFilter{}, Error: &Error{Message: "m"}, Usage: &Usage{Source: UsageEstimated}}},
	}
	for _, f := range []float64{0, math.Copysign(0, -1), 1e-7, 1.5e-7, 1e-6, 0.1, 62.11, 1e20, 1e21, 1.234e25, -3e-9, 123456789.125} {
		tests = append(tests, struct {
			name string
			g    GatewayRequest
		}{fmt.Sprint("duration ", f), GatewayRequest{DurationMS: f, TTFTMS: &f}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendGatewayRequest([]byte("prefix"), &tt.g)
			want := append([]byte("prefix"), marshalStd(t, &tt.g)...)
			if !bytes.Equal(got, want) {
				t.Errorf("AppendGatewayRequest:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func FuzzAppendGatewayRequest(f *testing.F) {
	f.Add("completed", "ana@contoso.com", "<p>&", "", int64(200), 812.5, int64(1763845200123456789), true)
	f.Add("", "\"\\\x00\u2028\xff", "", "x", int64(-1), 1e-9, int64(0), false)
	f.Fuzz(func(t *testing.T, state, upn, text, code string, n int64, ms float64, nanos int64, set bool) {
		if math.IsNaN(ms) || math.IsInf(ms, 0) {
			return // never a duration; encoding/json refuses them
		}
		g := GatewayRequest{State: state, Start: time.Unix(0, nanos).UTC(), DurationMS: ms,
			Principal: Principal{UPN: upn}, Status: int(n), RequestBytes: n}
		if set {
			g.TTFTMS = &ms
			g.Prompt = &Content{Text: text, Bytes: n, Redactions: int(n % 7)}
			g.Error = &Error{Code: code, Message: text}
			g.Usage = &Usage{PromptTokens: int(n), Source: code}
			g.Principal.Roles = []string{text, code}
			g.Tried = []Attempt{{Backend: code, Status: int(n % 600), Error: text}}
		}
		got := AppendGatewayRequest(nil, &g)
		if want := marshalStd(t, &g); !bytes.Equal(got, want) {
			t.Errorf("AppendGatewayRequest:\n got %s\nwant %s", got, want)
		}
	})
}
