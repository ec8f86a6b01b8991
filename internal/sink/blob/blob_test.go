package blob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/testenv"
)

// One Azurite serves every test of the package, each on its own container;
// it starts with the first test that needs it.
var azurite struct {
	once sync.Once
	conn string
	stop func() error
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if azurite.stop != nil {
		if err := azurite.stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	if azurite.dir != "" {
		os.RemoveAll(azurite.dir)
	}
	os.Exit(code)
}

// azuriteConn returns the connection string of the shared Azurite, or skips
// the test when Azurite is not installed.
func azuriteConn(t *testing.T) string {
	t.Helper()
	azurite.once.Do(func() {
		azurite.dir, azurite.err = os.MkdirTemp("", "tapline-azurite-")
		if azurite.err == nil {
			azurite.conn, azurite.stop, azurite.err = testenv.Azurite(azurite.dir)
		}
	})
	if errors.Is(azurite.err, testenv.ErrAzuriteNotInstalled) {
		testenv.Missing(t, "azurite", azurite.err.Error())
	}
	if azurite.err != nil {
		t.Fatalf("start azurite: %v", azurite.err)
	}
	return azurite.conn
}

var containerSeq atomic.Int64

// newContainer creates a fresh, empty container on the shared Azurite and
// returns a client for it.
func newContainer(t *testing.T) *container.Client {
	t.Helper()
	conn := azuriteConn(t)
	name := fmt.Sprintf("test-%d-%d", os.Getpid(), containerSeq.Add(1))
	cc, err := container.NewClientFromConnectionString(conn, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Create(context.Background(), nil); err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	return cc
}

// containerName is the name of cc's container.
func containerName(cc *container.Client) string {
	u := strings.TrimSuffix(cc.URL(), "/")
	return u[strings.LastIndex(u, "/")+1:]
}

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sinkOn returns a sink writing to cc's container with the Azurite key.
func sinkOn(t *testing.T, cc *container.Client, runbook bool) *Sink {
	t.Helper()
	return newSink(t, Config{ConnectionString: azuriteConn(t), Container: containerName(cc), RunbookLayout: runbook})
}

// names lists the blobs in the container, in name order.
func names(t *testing.T, cc *container.Client) []string {
	t.Helper()
	var out []string
	pager := cc.NewListBlobsFlatPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Segment.BlobItems {
			out = append(out, *it.Name)
		}
	}
	slices.Sort(out)
	return out
}

func get(t *testing.T, cc *container.Client, name string) []byte {
	t.Helper()
	resp, err := cc.NewBlobClient(name).DownloadStream(context.Background(), nil)
	if err != nil {
		t.Fatalf("download %s: %v", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decode parses a JSON Lines blob into records.
func decode(t *testing.T, name string, body []byte) []record.Record {
	t.Helper()
	var recs []record.Record
	for line := range bytes.Lines(body) {
		var r record.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s: bad line %.100q: %v", name, line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// delivered reads back every JSON Lines blob and orders the records as a
// reader of the container does: by time (a container has no order across
// blobs), ties in blob name and line order. Duplicates stay.
func delivered(t *testing.T, cc *container.Client) []record.Record {
	t.Helper()
	var recs []record.Record
	for _, name := range names(t, cc) {
		if strings.HasSuffix(name, ".jsonl") {
			recs = append(recs, decode(t, name, get(t, cc, name))...)
		}
	}
	slices.SortStableFunc(recs, func(a, b record.Record) int { return a.Time.Compare(b.Time) })
	return recs
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sinktest.Target {
			cc := newContainer(t)
			return sinktest.Target{
				Sink:      sinkOn(t, cc, true),
				Delivered: func(t *testing.T) []record.Record { return delivered(t, cc) },
			}
		},
		// Block blobs have no per-record limit worth testing.
		MaxRecordBytes: 0,
	})
}

// activity returns an activity_log record of the given scope whose data
// embeds an ARM event with a number beyond 2^53.
func activity(id, scopeKind, scopeID string, at time.Time) record.Record {
	ev := fmt.Sprintf(`{"eventDataId":%q,"big":12345678901234567890123,"properties":{"x":"{\"a\":1}"}}`, id)
	data := fmt.Sprintf(`{"scope":{"kind":%q,"id":%q},"event_data_id":%q,"event":%s}`, scopeKind, scopeID, id, ev)
	return record.Record{ID: id, Kind: record.KindActivityLog, Version: record.ActivityLogVersion,
		Time: at, Data: json.RawMessage(data)}
}

// activities returns n activity records of management group mg from
// number first, one second apart from t0.
func activities(mg string, first, n int, t0 time.Time) []record.Record {
	var out []record.Record
	for i := first; i < first+n; i++ {
		out = append(out, activity(fmt.Sprintf("ev-%04d", i), record.ScopeManagementGroup, mg, t0.Add(time.Duration(i)*time.Second)))
	}
	return out
}

func write(t *testing.T, s *Sink, recs []record.Record) {
	t.Helper()
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write(%d records): %v", len(recs), err)
	}
}

func ids(recs []record.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}
