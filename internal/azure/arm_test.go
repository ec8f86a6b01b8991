package azure

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// scopeCred records the scope it is asked for.
type scopeCred struct{ scope atomic.Value }

func (c *scopeCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.scope.Store(strings.Join(o.Scopes, " "))
	return azcore.AccessToken{Token: "tok", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestARMRetriesAndToken proves one pipeline: a bearer token for
// {endpoint}/.default sent over http to loopback only, 5xx retried, and the
// final error parsed from the envelope.
func TestARMRetriesAndToken(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			return
		}
		switch {
		case r.URL.Path == "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"ServerBusy","message":"busy"}}`))
		case n.Add(1) <= 2:
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.Write([]byte(`{"value":[]}`))
		}
	}))
	defer srv.Close()
	cred := &scopeCred{}
	c, err := NewARM(ARMConfig{Endpoint: srv.URL + "/", Credential: cred,
		Retry: policy.RetryOptions{MaxRetries: 3, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	body, err := c.Get(t.Context(), c.URL("/x", nil))
	if err != nil || string(body) != `{"value":[]}` || n.Load() != 3 {
		t.Fatalf("Get = %s, %v after %d tries", body, err, n.Load())
	}
	if got := cred.scope.Load(); got != srv.URL+"/.default" {
		t.Errorf("token scope = %v", got)
	}
	_, err = c.Get(t.Context(), c.URL("/fail", nil))
	if !IsStatus(err, 503) || !strings.Contains(err.Error(), "ServerBusy: busy") {
		t.Errorf("Get /fail = %v", err)
	}
	if _, err := c.Get(t.Context(), "http://example.com/x"); err == nil {
		t.Error("followed a link to another host")
	}
}

// TestARMRetryAfterCapped proves a Retry-After beyond MaxRetryDelay is not
// waited for: the 429 comes back at once as an *ARMError.
func TestARMRetryAfterCapped(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"code":"TooManyRequests","message":"slow down"}`))
	}))
	defer srv.Close()
	c, err := NewARM(ARMConfig{Endpoint: srv.URL, Credential: &scopeCred{},
		Retry: policy.RetryOptions{MaxRetries: 3, RetryDelay: time.Millisecond, MaxRetryDelay: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(t.Context(), c.URL("/x", nil))
	if !IsStatus(err, 429) || n.Load() != 1 {
		t.Errorf("Get = %v after %d tries; want a 429 after 1", err, n.Load())
	}
}

// TestNewARMRefusesInsecure proves http is refused except on loopback.
func TestNewARMRefusesInsecure(t *testing.T) {
	for _, ep := range []string{"http://management.azure.com", "ftp://127.0.0.1", "not a url"} {
		if _, err := NewARM(ARMConfig{Endpoint: ep, Credential: &scopeCred{}}); err == nil {
			t.Errorf("NewARM(%q) succeeded", ep)
		}
	}
	if _, err := NewARM(ARMConfig{Endpoint: "https://management.usgovcloudapi.net", Credential: &scopeCred{}}); err != nil {
		t.Error(err)
	}
}
