package azure

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

type countingCred struct {
	calls  atomic.Int32
	now    func() time.Time
	life   time.Duration
	fail   atomic.Bool
	scopes chan string
}

func (c *countingCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	n := c.calls.Add(1)
	if c.fail.Load() {
		return azcore.AccessToken{}, errors.New("imds unreachable")
	}
	if len(o.Scopes) != 1 || o.Scopes[0] != CognitiveServicesScope {
		return azcore.AccessToken{}, fmt.Errorf("scopes %v", o.Scopes)
	}
	return azcore.AccessToken{Token: fmt.Sprintf("tok-%d", n), ExpiresOn: c.now().Add(c.life)}, nil
}

func TestTokenSourceCachesAndRefreshes(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	cred := &countingCred{now: clock, life: time.Hour}
	ts := NewTokenSource(cred, CognitiveServicesScope)
	ts.now = clock

	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, err := ts.Token(context.Background()); err != nil || tok != "tok-1" {
				t.Errorf("got %q %v", tok, err)
			}
		}()
	}
	wg.Wait()
	if n := cred.calls.Load(); n != 1 {
		t.Fatalf("50 concurrent callers made %d token requests, want 1", n)
	}
	now = now.Add(54 * time.Minute) // more than 5 minutes left: cached
	if tok, _ := ts.Token(context.Background()); tok != "tok-1" {
		t.Fatalf("refreshed too early: %s", tok)
	}
	now = now.Add(2 * time.Minute) // inside the margin: refreshed
	if tok, _ := ts.Token(context.Background()); tok != "tok-2" {
		t.Fatalf("not refreshed: %s", tok)
	}
	cred.fail.Store(true)
	now = now.Add(56 * time.Minute) // stale but unexpired token is still served
	if tok, err := ts.Token(context.Background()); err != nil || tok != "tok-2" {
		t.Fatalf("stale token not used while refresh fails: %q %v", tok, err)
	}
	now = now.Add(5 * time.Minute) // expired and no refresh: error, no token
	if tok, err := ts.Token(context.Background()); err == nil || tok != "" {
		t.Fatalf("expired token served: %q %v", tok, err)
	}
}
