package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKeys: with Key "principal", records of one principal carry the same
// key and so land on the same partition; "scope" does the same for
// activity_log scopes; activity_log records get no principal key.
func TestKeys(t *testing.T) {
	gw := func(i int, principal string) record.Record {
		r := sinktest.Records(2*i, 1)[0]
		r.Data = json.RawMessage(fmt.Sprintf(`{"state":"completed","principal":%s,"status":200}`, principal))
		return r
	}
	al := func(i int, scope string) record.Record {
		r := sinktest.Records(2*i+1, 1)[0]
		r.Data = json.RawMessage(fmt.Sprintf(`{"scope":{"kind":"management_group","id":%q},"event":{}}`, scope))
		return r
	}
	alice := `{"kind":"entra_user","oid":"0000-a","upn":"alice@contoso.com"}`
	bot := `{"kind":"key","key_name":"build-bot"}`
	app := `{"kind":"entra_app","oid":"0000-c","appid":"app-c"}`
	var recs []record.Record
	for i := range 30 {
		recs = append(recs, gw(i, []string{alice, bot, app}[i%3]), al(i, []string{"mg-a", "mg-b"}[i%2]))
	}
	for _, tc := range []struct{ mode string }{{KeyPrincipal}, {KeyScope}, {KeyNone}} {
		t.Run("key="+tc.mode, func(t *testing.T) {
			c := newCluster(t, newTestCA(t), MechanismPlain, testUser, testPass, 8)
			cfg := c.config()
			cfg.Key = tc.mode
			s := newSink(t, cfg)
			if err := s.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			got := c.consume(t)
			if len(got) != len(recs) {
				t.Fatalf("consumed %d records, want %d", len(got), len(recs))
			}
			partOf := map[string]int32{}
			keys := map[string]bool{}
			for _, cr := range got {
				want := ""
				switch {
				case tc.mode == KeyPrincipal && cr.rec.Kind == record.KindGatewayRequest:
					want = map[string]string{alice: "alice@contoso.com", bot: "key:build-bot", app: "0000-c"}[principalOf(cr.rec)]
				case tc.mode == KeyScope && cr.rec.Kind == record.KindActivityLog:
					want = scopeOf(cr.rec)
				}
				if cr.key != want {
					t.Errorf("record %s: key %q, want %q", cr.rec.ID, cr.key, want)
				}
				if cr.key == "" {
					continue
				}
				keys[cr.key] = true
				if p, ok := partOf[cr.key]; ok && p != cr.partition {
					t.Errorf("key %q on partitions %d and %d", cr.key, p, cr.partition)
				}
				partOf[cr.key] = cr.partition
			}
			if wantKeys := map[string]int{KeyPrincipal: 3, KeyScope: 2, KeyNone: 0}[tc.mode]; len(keys) != wantKeys {
				t.Errorf("got %d distinct keys, want %d", len(keys), wantKeys)
			}
		})
	}
}

// principalOf returns the principal object of a gateway record's data.
func principalOf(r record.Record) string {
	var d struct {
		Principal json.RawMessage `json:"principal"`
	}
	_ = json.Unmarshal(r.Data, &d)
	return string(d.Principal)
}

// scopeOf returns the scope id of an activity_log record's data.
func scopeOf(r record.Record) string {
	var d struct {
		Scope record.Scope `json:"scope"`
	}
	_ = json.Unmarshal(r.Data, &d)
	return d.Scope.ID
}

// TestLogger: franz-go's warnings and errors reach slog at the same level,
// its info and debug messages are neither asked for nor logged.
func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l := logger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if l.Level() != kgo.LogLevelWarn {
		t.Errorf("Level() = %v, want WARN", l.Level())
	}
	l.Log(kgo.LogLevelError, "produce failed", "broker", 1)
	l.Log(kgo.LogLevelWarn, "metadata stale", "topic", "audit")
	l.Log(kgo.LogLevelInfo, "chatty")
	l.Log(kgo.LogLevelDebug, "chattier")
	out := buf.String()
	for _, want := range []string{"level=ERROR msg=\"produce failed\" broker=1", "level=WARN msg=\"metadata stale\" topic=audit"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "chatty") {
		t.Errorf("info or debug message logged:\n%s", out)
	}
}
