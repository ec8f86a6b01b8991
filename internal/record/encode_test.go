package record

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// marshalStd is the reference: encoding/json with HTML escaping off.
func marshalStd(t testing.TB, r Record) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
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
