package eventhubs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/testenv"
)

// staticCred is an azcore.TokenCredential returning one token, or err.
type staticCred struct {
	tok    string
	err    error
	scopes *[]string
}

func (c staticCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if c.scopes != nil {
		*c.scopes = o.Scopes
	}
	if c.err != nil {
		return azcore.AccessToken{}, c.err
	}
	return azcore.AccessToken{Token: c.tok, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestCredential takes the Entra ID path (Namespace + Hub + Credential)
// against the stand-in over TLS: the SDK asks the credential for an Event
// Hubs token and puts it on $cbs as a "jwt". A token the hub refuses and a
// credential that fails are plain errors.
func TestCredential(t *testing.T) {
	const token = "eyJ0eXAiOiJKV1QifQ.good.sig"
	stub := testenv.LaunchEventHubsStub(t, testenv.EventHubsTLS(), testenv.EventHubsToken(token))
	withCred := func(cred azcore.TokenCredential) *Sink {
		s, err := build(Config{Namespace: stub.Namespace(), Hub: stub.Hub, Credential: cred}, nil, stub.TLSConfig())
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	ctx := timeout(t)

	var scopes []string
	s := withCred(staticCred{tok: token, scopes: &scopes})
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	recs := sinktest.Records(0, 4)
	if err := s.Write(ctx, recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if len(scopes) != 1 || scopes[0] != "https://eventhubs.azure.net//.default" {
		t.Errorf("token scopes = %q, want the Event Hubs scope", scopes)
	}

	const wrong = "eyJ0eXAiOiJKV1QifQ.wrong.sig"
	failing := []struct {
		name      string
		cred      azcore.TokenCredential
		retryable bool
	}{
		{"refused token", staticCred{tok: wrong}, false},
		// azidentity marks authentication failures and unavailable
		// credentials NonRetriable; other credential errors (a network
		// failure reaching Entra ID) are transient to the SDK.
		{"authentication failed", staticCred{err: authFailed{}}, false},
		{"credential unreachable", staticCred{err: errors.New("dial tcp 169.254.169.254:80: i/o timeout")}, true},
	}
	for _, f := range failing {
		err := withCred(f.cred).Write(ctx, sinktest.Records(10, 2))
		if err == nil {
			t.Fatalf("%s: Write returned nil", f.name)
		}
		if _, ok := sink.Retryable(err); ok != f.retryable {
			t.Errorf("%s: %v: retryable = %v, want %v", f.name, err, ok, f.retryable)
		}
		if strings.Contains(err.Error(), wrong) {
			t.Errorf("%s: error leaks the token: %v", f.name, err)
		}
	}
	// Only the good credential's records arrived.
	cc, err := azeventhubs.NewConsumerClient(stub.Namespace(), stub.Hub, azeventhubs.DefaultConsumerGroup,
		staticCred{tok: token}, &azeventhubs.ConsumerClientOptions{TLSConfig: stub.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if d := sinktest.Diff(records(readEventsWith(t, cc)), recs); d != "" {
		t.Errorf("delivered differs:\n%s", d)
	}
}

// authFailed is like *azidentity.AuthenticationFailedError: marked
// NonRetriable.
type authFailed struct{}

func (authFailed) Error() string { return "ManagedIdentityCredential authentication failed" }
func (authFailed) NonRetriable() {}
