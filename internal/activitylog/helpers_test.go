package activitylog

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/tapline/tapline/internal/azure"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

const (
	testTenant = "9f3c1b2a-7d4e-4c6f-8a1b-2c3d4e5f6a7b"
	testToken  = "activitylog-test-token"
)

// fakeCred hands out testToken.
type fakeCred struct{}

func (fakeCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: testToken, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// clock is a settable time source shared by the emulator and the collector.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testRetry retries 5xx after 1ms. A 429 from the emulator always carries
// Retry-After of at least one second, which azcore honours: tests inject
// few of them.
var testRetry = policy.RetryOptions{MaxRetries: 4, RetryDelay: time.Millisecond, MaxRetryDelay: 2 * time.Second}

// newARMClient is an ARM client for a stand-in at url.
func newARMClient(t testing.TB, url string) *azure.ARM {
	t.Helper()
	c, err := azure.NewARM(azure.ARMConfig{Endpoint: url, Credential: fakeCred{}, Retry: testRetry})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serve serves h on loopback for the test.
func serve(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// newEmulator returns an ARM stand-in for tenant on clk.
func newEmulator(t testing.TB, tenant emulator.ARMTenant, pageSize int, clk *clock) *emulator.ARM {
	t.Helper()
	a, err := emulator.NewARM(emulator.ARMConfig{
		TenantID: testTenant, Tenant: tenant, PageSize: pageSize, GroupPageSize: 37, Now: clk.Now,
		Token: func(tok string) bool { return tok == testToken },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// openStore opens a store at path, closed at the end of the test unless
// the test closes it first.
func openStore(t testing.TB, path string) *store.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "tapline.db")
	}
	st, err := store.Open(t.Context(), store.Config{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// activity returns every activity_log payload in st, by record id.
func activity(t testing.TB, st *store.Store) map[string]record.ActivityLog {
	t.Helper()
	out := map[string]record.ActivityLog{}
	var after int64
	for {
		recs, err := st.ReadAfter(t.Context(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			after = r.Seq
			if r.Record.Kind != record.KindActivityLog {
				continue
			}
			var p record.ActivityLog
			if err := json.Unmarshal(r.Record.Data, &p); err != nil {
				t.Fatalf("record %s: %v", r.Record.ID, err)
			}
			if _, dup := out[r.Record.ID]; dup {
				t.Fatalf("record %s stored twice", r.Record.ID)
			}
			out[r.Record.ID] = p
		}
	}
}

// byScope sums a summary per field, and indexes it by scope key.
func byScope(s Summary) map[string]ScopeResult {
	m := map[string]ScopeResult{}
	for _, r := range s.Scopes {
		m[r.Scope.Key()] = r
	}
	return m
}

func totals(s Summary) (events, added, dups, pages int) {
	for _, r := range s.Scopes {
		events += r.Events
		added += r.New
		dups += r.Duplicates
		pages += r.Pages
	}
	return
}

// runFailingOne runs c once and returns the result of scope key, the one
// scope that must fail.
func runFailingOne(t testing.TB, c *Collector, key string) ScopeResult {
	t.Helper()
	sum, err := c.Run(t.Context(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed() != 1 {
		t.Fatalf("failed scopes = %d, want 1", sum.Failed())
	}
	return byScope(sum)[key]
}
