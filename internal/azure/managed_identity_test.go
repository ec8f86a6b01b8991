package azure

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/config"
)

// The default credential chain, as the gateway builds it, gets its token
// from the managed identity endpoint that App Service and Container Apps
// provide (IDENTITY_ENDPOINT, IDENTITY_HEADER, api-version 2019-08-01), for
// the Cognitive Services scope; the token source then serves it from cache.
func TestDefaultCredentialUsesManagedIdentity(t *testing.T) {
	var calls atomic.Int32
	var resource, secret, apiVersion atomic.Value
	msi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		resource.Store(r.URL.Query().Get("resource"))
		apiVersion.Store(r.URL.Query().Get("api-version"))
		secret.Store(r.Header.Get("X-IDENTITY-HEADER"))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"mi-token-1","expires_on":"%d","resource":%q,"token_type":"Bearer"}`,
			time.Now().Add(time.Hour).Unix(), r.URL.Query().Get("resource"))
	}))
	defer msi.Close()
	for _, k := range []string{"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
		"AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME", "MSI_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT"} {
		unsetenv(t, k)
	}
	t.Setenv("IDENTITY_ENDPOINT", msi.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "platform-secret")
	unsetenv(t, "AZURE_TOKEN_CREDENTIALS") // the whole default chain, as in production

	cred, err := NewCredential(config.Azure{Credential: config.CredentialDefault, Cloud: "public"})
	if err != nil {
		t.Fatal(err)
	}
	ts := NewTokenSource(cred, CognitiveServicesScope)
	for range 3 {
		tok, err := ts.Token(context.Background())
		if err != nil || tok != "mi-token-1" {
			t.Fatalf("token %q, %v", tok, err)
		}
	}
	// MSAL caches managed identity tokens for the whole process, across
	// credentials: only the first run of this test (go test -count) asks.
	if miRuns.Add(1) > 1 {
		if calls.Load() != 0 {
			t.Errorf("the identity endpoint was asked %d times, want 0 (cached by an earlier run)", calls.Load())
		}
		return
	}
	if calls.Load() != 1 {
		t.Errorf("the identity endpoint was asked %d times, want 1 (cached)", calls.Load())
	}
	if r := resource.Load(); r != "https://cognitiveservices.azure.com" {
		t.Errorf("resource = %v", r)
	}
	if s, v := secret.Load(), apiVersion.Load(); s != "platform-secret" || v != "2019-08-01" {
		t.Errorf("identity header %v, api-version %v", s, v)
	}
}

// miRuns counts the runs of TestDefaultCredentialUsesManagedIdentity.
var miRuns atomic.Int32

// unsetenv removes k from the environment for the test (an empty value is
// not the same as none to the credential chain).
func unsetenv(t *testing.T, k string) {
	t.Setenv(k, "") // registers the restore
	os.Unsetenv(k)
}
