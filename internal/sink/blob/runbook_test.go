package blob

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/google/go-cmp/cmp"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
)

// The collection runs of these tests and mg-a's blob of the first.
const (
	run1     = "2026-11-22T21:05:00Z"
	run2     = "2026-11-22T21:10:00Z"
	run1Blob = "runbook/mg-a/2026-11-22T21-05-00Z.json"
)

// withRun returns copies of recs (made by activity) whose data names the
// collection run, as the collector writes it.
func withRun(run string, recs ...record.Record) []record.Record {
	out := make([]record.Record, len(recs))
	for i, r := range recs {
		r.Data = json.RawMessage(strings.Replace(string(r.Data), `,"event":`,
			`,"collection_run":`+strconv.Quote(run)+`,"event":`, 1))
		out[i] = r
	}
	return out
}

// wantArray is the exact content of a run blob holding recs' events.
func wantArray(t *testing.T, recs []record.Record) string {
	t.Helper()
	var evs []string
	for _, r := range recs {
		evs = append(evs, eventOf(t, r))
	}
	return "[\n" + strings.Join(evs, ",\n") + "\n]\n"
}

// checkArray fails unless blob name holds exactly recs' events as a JSON
// array, in order, byte for byte.
func checkArray(t *testing.T, cc *container.Client, name string, recs []record.Record) {
	t.Helper()
	body := get(t, cc, name)
	if !json.Valid(body) {
		t.Fatalf("%s is not valid JSON:\n%.400s", name, body)
	}
	got := arrayElements(t, name, body)
	var want []string
	for _, r := range recs {
		want = append(want, eventOf(t, r))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("%s events (-want +got):\n%s", name, d)
	}
	if w := wantArray(t, recs); string(body) != w {
		t.Fatalf("%s bytes:\n%q\nwant:\n%q", name, body, w)
	}
}

// runbookNames lists the runbook layout's blobs.
func runbookNames(t *testing.T, cc *container.Client) []string {
	t.Helper()
	var out []string
	for _, n := range names(t, cc) {
		if strings.HasPrefix(n, "runbook/") {
			out = append(out, n)
		}
	}
	return out
}

// hook is a pipeline policy that sees each request of a sink: it sends it
// with next, or returns an error in place of a response.
type hook func(r *http.Request, next func() (*http.Response, error)) (*http.Response, error)

func (h hook) Do(req *policy.Request) (*http.Response, error) { return h(req.Raw(), req.Next) }

// hookedSink returns a runbook-layout sink on cc whose requests pass h.
func hookedSink(t *testing.T, cc *container.Client, h hook) *Sink {
	t.Helper()
	s := sinkOn(t, cc, true)
	opts := &container.ClientOptions{}
	opts.Retry.MaxRetries = -1
	opts.PerCallPolicies = []policy.Policy{h}
	c, err := container.NewClientFromConnectionString(azuriteConn(t), containerName(cc), opts)
	if err != nil {
		t.Fatal(err)
	}
	s.cc = c
	return s
}

func isCommit(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Get("comp") == "blocklist"
}

// A run shipped in several batches, interleaved with another group's and
// across an hour boundary, gives one blob per management group: a JSON
// array after every batch, at the end the run's events in order, byte for
// byte. The JSON Lines blobs are unchanged, and the sink never reads a run
// blob back while it ships in order.
func TestRunbookLayout(t *testing.T) {
	base := time.Date(2026, 11, 22, 21, 59, 56, 0, time.UTC) // 4 s before 22:00
	a := withRun(run1, activities("mg-a", 0, 8, base)...)
	b := withRun(run1, activities("mg-b", 100, 8, base.Add(-100*time.Second))...)
	var recs []record.Record
	for i := range a {
		recs = append(recs, a[i], b[i])
	}
	cc := newContainer(t)
	var reads atomic.Int32
	s := hookedSink(t, cc, func(r *http.Request, next func() (*http.Response, error)) (*http.Response, error) {
		if r.Method == http.MethodGet && r.URL.Query().Get("comp") == "" {
			reads.Add(1)
		}
		return next()
	})
	bBlob := "runbook/mg-b/2026-11-22T21-05-00Z.json"
	for from := 0; from < len(recs); from += 5 {
		to := min(from+5, len(recs))
		write(t, s, recs[from:to])
		checkArray(t, cc, run1Blob, a[:(to+1)/2])
		checkArray(t, cc, bBlob, b[:to/2])
	}
	if d := cmp.Diff([]string{run1Blob, bBlob}, runbookNames(t, cc)); d != "" {
		t.Errorf("runbook blobs (-want +got):\n%s", d)
	}
	if n := reads.Load(); n != 0 {
		t.Errorf("the sink read %d blobs back while shipping in order, want 0", n)
	}
	if got := len(delivered(t, cc)); got != len(recs) {
		t.Errorf("JSON Lines blobs hold %d records, want %d", got, len(recs))
	}
	// Without the option, no runbook blob.
	cc2 := newContainer(t)
	write(t, sinkOn(t, cc2, false), recs)
	if n := runbookNames(t, cc2); len(n) != 0 {
		t.Errorf("RunbookLayout off wrote %v", n)
	}
}

// Two runs give two blobs, also when one batch holds the end of the first
// and the start of the second.
func TestRunbookTwoRuns(t *testing.T) {
	r1 := withRun(run1, activities("mg-a", 0, 5, t0)...)
	r2 := withRun(run2, activities("mg-a", 5, 4, t0)...)
	cc := newContainer(t)
	s := sinkOn(t, cc, true)
	write(t, s, r1[:3])
	write(t, s, append(append([]record.Record(nil), r1[3:]...), r2[:2]...))
	write(t, s, r2[2:])
	run2Blob := "runbook/mg-a/2026-11-22T21-10-00Z.json"
	if d := cmp.Diff([]string{run1Blob, run2Blob}, runbookNames(t, cc)); d != "" {
		t.Fatalf("runbook blobs (-want +got):\n%s", d)
	}
	checkArray(t, cc, run1Blob, r1)
	checkArray(t, cc, run2Blob, r2)
}

// step is one Write of a retry case; restart makes it on a new sink, as
// after a crash (the sink remembers nothing).
type step struct {
	from, to int
	restart  bool
}

// The shipper repeats a batch whose outcome it does not know, after a
// restart maybe from the same record with another size, and goes on from
// the end of the last batch it confirmed. The run's blob always ends up
// holding each event once, in order.
func TestRetryRunbook(t *testing.T) {
	all := withRun(run1, activities("mg-a", 0, 9, t0)...)
	cases := []struct {
		name  string
		steps []step
	}{
		{"same batch after success", []step{{0, 3, false}, {0, 3, false}, {3, 9, false}}},
		{"same batch after a restart", []step{{0, 3, false}, {0, 3, true}, {3, 9, false}}},
		{"larger batch appends the rest", []step{{0, 2, false}, {0, 2, true}, {0, 6, true}, {6, 9, false}}},
		{"next batch after a restart", []step{{0, 3, false}, {3, 6, true}, {6, 9, false}}},
		{"smaller batch, then on from inside a part", []step{{0, 6, false}, {0, 2, true}, {2, 4, false}, {4, 9, false}}},
		{"restart inside a part", []step{{0, 6, false}, {0, 2, true}, {2, 4, true}, {4, 9, true}}},
		{"batch ending at the blob's end", []step{{0, 6, false}, {3, 6, true}, {6, 9, false}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cc := newContainer(t)
			s := sinkOn(t, cc, true)
			done := 0
			for _, st := range c.steps {
				if st.restart {
					s = sinkOn(t, cc, true)
				}
				write(t, s, all[st.from:st.to])
				done = max(done, st.to)
				checkArray(t, cc, run1Blob, all[:done])
			}
		})
	}
}

// A Write that fails at the commit, before it reached the service (a crash
// after staging) or after (the answer was lost), leaves a whole array;
// its retry, of the same batch or a larger one, duplicates nothing.
func TestRetryRunbookCommitFault(t *testing.T) {
	all := withRun(run1, activities("mg-a", 0, 9, t0)...)
	for _, sent := range []bool{false, true} {
		t.Run(fmt.Sprintf("commit sent %v", sent), func(t *testing.T) {
			cc := newContainer(t)
			var fail atomic.Bool
			s := hookedSink(t, cc, func(r *http.Request, next func() (*http.Response, error)) (*http.Response, error) {
				if !isCommit(r) || !fail.Swap(false) {
					return next()
				}
				if sent {
					if resp, err := next(); err != nil {
						return resp, err
					}
				}
				return nil, errors.New("injected: connection reset")
			})
			held := 0
			// Each batch ends past what the blob holds, so each commits.
			for _, b := range []struct{ from, to int }{{0, 3}, {3, 5}, {3, 7}, {7, 9}} {
				fail.Store(true)
				err := s.Write(context.Background(), all[b.from:b.to])
				if _, ok := sink.Retryable(err); !ok {
					t.Fatalf("Write(%d:%d) with a failing commit: %v, want a retryable error", b.from, b.to, err)
				}
				if sent {
					held = b.to
				}
				if held > 0 {
					checkArray(t, cc, run1Blob, all[:held])
				}
				write(t, s, all[b.from:b.to])
				held = max(held, b.to)
				checkArray(t, cc, run1Blob, all[:held])
			}
		})
	}
}

// Another writer changing the blob between the sink's read and its commit
// makes the commit fail on the ETag: nothing is overwritten, the error is
// retryable, and the retry appends.
func TestRunbookConcurrentWriter(t *testing.T) {
	all := withRun(run1, activities("mg-a", 0, 6, t0)...)
	cc := newContainer(t)
	writer := "another"
	var meddle atomic.Bool
	s := hookedSink(t, cc, func(r *http.Request, next func() (*http.Response, error)) (*http.Response, error) {
		if isCommit(r) && meddle.Swap(false) {
			if _, err := cc.NewBlobClient(run1Blob).SetMetadata(r.Context(), map[string]*string{"other": &writer}, nil); err != nil {
				return nil, err
			}
		}
		return next()
	})
	write(t, s, all[:3])
	meddle.Store(true)
	err := s.Write(context.Background(), all[3:])
	if _, ok := sink.Retryable(err); !ok || !strings.Contains(fmt.Sprint(err), run1Blob) {
		t.Fatalf("Write racing another writer: %v, want a retryable error naming the blob", err)
	}
	checkArray(t, cc, run1Blob, all[:3])
	write(t, s, all[3:])
	checkArray(t, cc, run1Blob, all)
}

// A blob at a run's name that this sink did not write, or that holds other
// events, is never changed: Write fails with a plain error naming it. So
// does a blob another writer creates between the sink's read and commit.
func TestRunbookForeignBlob(t *testing.T) {
	all := withRun(run1, activities("mg-a", 0, 3, t0)...)
	other := withRun(run1, activity("ev-0002x", record.ScopeManagementGroup, "mg-a", t0))
	cases := map[string]func(t *testing.T, cc *container.Client){
		"put blob": func(t *testing.T, cc *container.Client) {
			upload(t, cc, run1Blob, "[]")
		},
		"foreign blocks": func(t *testing.T, cc *container.Client) {
			bb := cc.NewBlockBlobClient(run1Blob)
			id := base64.StdEncoding.EncodeToString([]byte("someone else's block"))
			if _, err := bb.StageBlock(context.Background(), id, streaming.NopCloser(strings.NewReader("[1]")), nil); err != nil {
				t.Fatal(err)
			}
			if _, err := bb.CommitBlockList(context.Background(), []string{id}, nil); err != nil {
				t.Fatal(err)
			}
		},
		"other events": func(t *testing.T, cc *container.Client) {
			// e0, e1 and another event where e2 should be: the batch e1, e2
			// finds e1 and then a different event.
			write(t, sinkOn(t, cc, true), append(append([]record.Record(nil), all[:2]...), other...))
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			cc := newContainer(t)
			setup(t, cc)
			before := get(t, cc, run1Blob)
			err := sinkOn(t, cc, true).Write(context.Background(), all[1:])
			checkForeign(t, cc, err, before)
		})
	}
	t.Run("created during the write", func(t *testing.T) {
		cc := newContainer(t)
		s := hookedSink(t, cc, func(r *http.Request, next func() (*http.Response, error)) (*http.Response, error) {
			if isCommit(r) {
				if _, err := cc.NewBlockBlobClient(run1Blob).Upload(r.Context(),
					streaming.NopCloser(strings.NewReader("[]")), nil); err != nil {
					return nil, err
				}
			}
			return next()
		})
		err := s.Write(context.Background(), all)
		if _, ok := sink.Retryable(err); !ok {
			t.Fatalf("Write racing a foreign blob: %v, want a retryable error", err)
		}
		err = sinkOn(t, cc, true).Write(context.Background(), all)
		checkForeign(t, cc, err, []byte("[]"))
	})
}

func upload(t *testing.T, cc *container.Client, name, content string) {
	t.Helper()
	if _, err := cc.NewBlockBlobClient(name).Upload(context.Background(),
		streaming.NopCloser(strings.NewReader(content)), nil); err != nil {
		t.Fatal(err)
	}
}

// checkForeign fails unless err is a plain error naming the run blob and
// the blob still holds before.
func checkForeign(t *testing.T, cc *container.Client, err error, before []byte) {
	t.Helper()
	if err == nil {
		t.Fatal("Write over a foreign run blob succeeded")
	}
	if _, ok := sink.Retryable(err); ok {
		t.Errorf("error is retryable: %v", err)
	}
	if !strings.Contains(err.Error(), run1Blob) {
		t.Errorf("error %q does not name the blob %s", err, run1Blob)
	}
	if after := get(t, cc, run1Blob); !bytes.Equal(after, before) {
		t.Errorf("foreign blob changed from %q to %q", before, after)
	}
}

// Block ids have one length (the service requires it), and only a list
// of parts in order with the closing block last is taken for a run blob.
func TestParseParts(t *testing.T) {
	first, next := blockID(kindFirst, "a", "b"), blockID(kindNext, "c", "d")
	foreign := base64.StdEncoding.EncodeToString([]byte("someone else's block id 36 bytes lon"))
	for _, id := range []string{first, next, closeBlockID, foreign} {
		if len(id) != 48 {
			t.Errorf("block id %s has %d characters, want 48", id, len(id))
		}
	}
	for _, c := range []struct {
		name  string
		ids   []string
		parts int // -1: refused
	}{
		{"one part", []string{first, closeBlockID}, 1},
		{"two parts", []string{first, next, closeBlockID}, 2},
		{"no closing block", []string{first, next}, -1},
		{"closing block inside", []string{first, closeBlockID, next, closeBlockID}, -1},
		{"next part first", []string{next, closeBlockID}, -1},
		{"first part twice", []string{first, first, closeBlockID}, -1},
		{"foreign block", []string{first, foreign, closeBlockID}, -1},
		{"closing block alone", []string{closeBlockID}, -1},
	} {
		var blocks []*blockblob.Block
		for _, id := range c.ids {
			blocks = append(blocks, &blockblob.Block{Name: &id})
		}
		parts, err := parseParts(blocks)
		if got := len(parts); (err != nil) != (c.parts < 0) || (err == nil && got != c.parts) {
			t.Errorf("%s: %d parts, err %v; want %d", c.name, got, err, c.parts)
		}
	}
}

// arrayElements returns the raw bytes of each element of a JSON array
// blob, as a reader's parser sees them.
func arrayElements(t *testing.T, name string, body []byte) []string {
	t.Helper()
	var arr []json.RawMessage
	if err := json.Unmarshal(body, &arr); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out []string
	for _, e := range arr {
		out = append(out, string(bytes.TrimSpace(e)))
	}
	return out
}

func eventOf(t *testing.T, r record.Record) string {
	t.Helper()
	var p struct{ Event json.RawMessage }
	if err := json.Unmarshal(r.Data, &p); err != nil {
		t.Fatal(err)
	}
	return string(p.Event)
}
