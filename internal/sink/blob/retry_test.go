package blob

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
)

var t0 = time.Date(2026, 11, 22, 21, 10, 0, 0, time.UTC)

const mgDir = "activity_log/mg-a/2026/11/22/21/"

// The crash-retry cases: the shipper retries a batch whose outcome it does
// not know, after a restart maybe from the same record with another size.
func TestRetry(t *testing.T) {
	all := activities("mg-a", 0, 9, t0)
	cases := []struct {
		name      string
		attempts  [][]record.Record // written in turn, each must succeed
		wantBlobs map[string][]string
	}{
		{
			name:      "same batch",
			attempts:  [][]record.Record{all[:5], all[:5]},
			wantBlobs: map[string][]string{mgDir + "ev-0000.jsonl": ids(all[:5])},
		},
		{
			name:     "larger batch writes the rest under its first id",
			attempts: [][]record.Record{all[:3], all[:7]},
			wantBlobs: map[string][]string{
				mgDir + "ev-0000.jsonl": ids(all[:3]),
				mgDir + "ev-0003.jsonl": ids(all[3:7]),
			},
		},
		{
			name:     "larger again follows the chain of earlier rests",
			attempts: [][]record.Record{all[:3], all[:5], all[:9]},
			wantBlobs: map[string][]string{
				mgDir + "ev-0000.jsonl": ids(all[:3]),
				mgDir + "ev-0003.jsonl": ids(all[3:5]),
				mgDir + "ev-0005.jsonl": ids(all[5:9]),
			},
		},
		{
			name:      "smaller batch is already written",
			attempts:  [][]record.Record{all[:7], all[:4]},
			wantBlobs: map[string][]string{mgDir + "ev-0000.jsonl": ids(all[:7])},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cc := newContainer(t)
			s := sinkOn(t, cc, false)
			for _, recs := range c.attempts {
				write(t, s, recs)
			}
			got := map[string][]string{}
			for _, name := range names(t, cc) {
				got[name] = ids(decode(t, name, get(t, cc, name)))
			}
			if d := cmp.Diff(c.wantBlobs, got); d != "" {
				t.Errorf("blobs (-want +got):\n%s", d)
			}
		})
	}
}

// A blob under the group's name that holds another record is never
// overwritten: Write fails with a plain error naming it.
func TestRetryForeignBlob(t *testing.T) {
	recs := activities("mg-a", 0, 3, t0)
	for name, content := range map[string]string{
		"other record": `{"id":"someone-else","kind":"activity_log","version":1,"time":"2026-11-22T21:10:00Z","data":{}}` + "\n",
		"not jsonl":    "hello\n",
		"empty":        "",
	} {
		t.Run(name, func(t *testing.T) {
			cc := newContainer(t)
			blobName := mgDir + "ev-0000.jsonl"
			if _, err := cc.NewBlockBlobClient(blobName).Upload(context.Background(),
				streaming.NopCloser(strings.NewReader(content)), nil); err != nil {
				t.Fatal(err)
			}
			err := sinkOn(t, cc, false).Write(context.Background(), recs)
			if err == nil {
				t.Fatal("Write over a foreign blob succeeded")
			}
			if _, ok := sink.Retryable(err); ok {
				t.Errorf("error is retryable: %v", err)
			}
			if !strings.Contains(err.Error(), blobName) {
				t.Errorf("error %q does not name the blob %s", err, blobName)
			}
			if got := string(get(t, cc, blobName)); got != content {
				t.Errorf("foreign blob was changed to %q", got)
			}
		})
	}
}

// Names depend on the records alone: the same batch in two containers
// gives the same names, the ones the package comment documents.
func TestNamesDeterministic(t *testing.T) {
	recs := []record.Record{
		activity("ev-1", record.ScopeManagementGroup, "Contoso Root", t0),
		sinktest.Records(2, 1)[0], // gateway_request at 2026-11-22T21:00
		activity("ev-3", record.ScopeTenant, "", t0),
		activity("ev-4", record.ScopeSubscription, "0000-1111", t0),
		activity("ev/5", record.ScopeManagementGroup, "Contoso Root", t0.Add(time.Hour)),
		withRun("2026-11-22T21:05:00Z", activity("ev-6", record.ScopeManagementGroup, "Contoso Root", t0))[0],
	}
	want := []string{
		"activity_log/Contoso~20Root/2026/11/22/21/ev-1.jsonl", // ev-6 too
		"activity_log/Contoso~20Root/2026/11/22/22/ev~2F5.jsonl",
		"activity_log/subscription-0000-1111/2026/11/22/21/ev-4.jsonl",
		"activity_log/tenant/2026/11/22/21/ev-3.jsonl",
		"gateway_request/all/2026/11/22/21/rec-000002.jsonl",
		"runbook/Contoso~20Root/2026-11-22T21-05-00Z.json",      // ev-6: its run
		"runbook/Contoso~20Root/2026-11-22T21-10-00Z-ev-1.json", // no run: the earlier layout
		"runbook/Contoso~20Root/2026-11-22T22-10-00Z-ev~2F5.json",
		"runbook/subscription-0000-1111/2026-11-22T21-10-00Z-ev-4.json",
		"runbook/tenant/2026-11-22T21-10-00Z-ev-3.json",
	}
	for range 2 {
		cc := newContainer(t)
		write(t, sinkOn(t, cc, true), recs)
		if d := cmp.Diff(want, names(t, cc)); d != "" {
			t.Errorf("blob names (-want +got):\n%s", d)
		}
	}
}

// Records on both sides of an hour boundary go to two hour folders.
func TestHourBoundary(t *testing.T) {
	boundary := time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)
	recs := []record.Record{
		activity("a", record.ScopeManagementGroup, "mg", boundary.Add(-time.Nanosecond)),
		activity("b", record.ScopeManagementGroup, "mg", boundary),
		activity("c", record.ScopeManagementGroup, "mg", time.Date(2027, 1, 1, 0, 59, 59, 0, time.FixedZone("CET", 3600))),
	}
	cc := newContainer(t)
	write(t, sinkOn(t, cc, false), recs)
	want := []string{
		"activity_log/mg/2026/12/31/22/a.jsonl",
		"activity_log/mg/2026/12/31/23/b.jsonl", // c is 23:59:59 UTC
	}
	if d := cmp.Diff(want, names(t, cc)); d != "" {
		t.Errorf("blob names (-want +got):\n%s", d)
	}
	if got := ids(decode(t, want[1], get(t, cc, want[1]))); !cmp.Equal(got, []string{"b", "c"}) {
		t.Errorf("%s holds %v, want [b c]", want[1], got)
	}
}

// Interleaved records of two management groups go to one blob each, in
// batch order, byte for byte.
func TestTwoScopes(t *testing.T) {
	a, b := activities("mg-a", 0, 4, t0), activities("mg-b", 10, 4, t0)
	var batch []record.Record
	for i := range a {
		batch = append(batch, a[i], b[i])
	}
	cc := newContainer(t)
	write(t, sinkOn(t, cc, false), batch)
	got := names(t, cc)
	want := []string{mgDir + "ev-0000.jsonl", "activity_log/mg-b/2026/11/22/21/ev-0010.jsonl"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("blob names (-want +got):\n%s", d)
	}
	if d := sinktest.Diff(decode(t, want[0], get(t, cc, want[0])), a); d != "" {
		t.Errorf("mg-a blob:\n%s", d)
	}
	if d := sinktest.Diff(decode(t, want[1], get(t, cc, want[1])), b); d != "" {
		t.Errorf("mg-b blob:\n%s", d)
	}
}
