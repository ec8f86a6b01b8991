package blob

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/tapline/tapline/internal/sink"
	"github.com/tapline/tapline/internal/sink/sinktest"
	"github.com/tapline/tapline/internal/testenv"
)

// wrongKey is a valid base64 key that is not Azurite's.
const wrongKey = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="

// containerSAS signs a SAS for cc's container with Azurite's key.
func containerSAS(t *testing.T, cc *container.Client, perms sas.ContainerPermissions) string {
	t.Helper()
	cred, err := container.NewSharedKeyCredential(testenv.AzuriteAccount, testenv.AzuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	qp, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPSandHTTP,
		StartTime:     time.Now().Add(-time.Hour).UTC(),
		ExpiryTime:    time.Now().Add(time.Hour).UTC(),
		Permissions:   perms.String(),
		ContainerName: containerName(cc),
	}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	return cc.URL() + "?" + qp.Encode()
}

func TestSASURL(t *testing.T) {
	cc := newContainer(t)
	u := containerSAS(t, cc, sas.ContainerPermissions{Read: true, Create: true, Write: true})
	s := newSink(t, Config{SASURL: u, RunbookLayout: true})
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	recs := append(sinktest.Records(0, 4), withRun(run1, activities("mg-a", 0, 2, t0)...)...)
	write(t, s, recs)
	write(t, s, recs)                                        // the retry reads the blobs back through the SAS
	if d := sinktest.Diff(delivered(t, cc), recs); d != "" { // recs are in time order
		t.Errorf("delivered differs:\n%s", d)
	}

	// A SAS without create permission: a plain error without the signature.
	ro := containerSAS(t, cc, sas.ContainerPermissions{Read: true})
	err := newSink(t, Config{SASURL: ro}).Write(context.Background(), sinktest.Records(10, 1))
	if err == nil {
		t.Fatal("Write with a read-only SAS succeeded")
	}
	if _, ok := sink.Retryable(err); ok {
		t.Errorf("403 is retryable: %v", err)
	}
	sig := mustQuery(t, ro).Get("sig")
	if strings.Contains(err.Error(), sig) || strings.Contains(err.Error(), url.QueryEscape(sig)) {
		t.Errorf("error leaks the SAS signature: %v", err)
	}
}

func mustQuery(t *testing.T, u string) url.Values {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Query()
}

// Check with a wrong account key fails with a plain error that does not
// hold the key; so does Write.
func TestWrongKey(t *testing.T) {
	cc := newContainer(t)
	conn := strings.Replace(azuriteConn(t), testenv.AzuriteKey, wrongKey, 1)
	s := newSink(t, Config{ConnectionString: conn, Container: containerName(cc)})
	for op, err := range map[string]error{
		"Check": s.Check(context.Background()),
		"Write": s.Write(context.Background(), sinktest.Records(0, 2)),
	} {
		var se *StatusError
		switch {
		case err == nil:
			t.Errorf("%s with a wrong key succeeded", op)
		case strings.Contains(err.Error(), wrongKey):
			t.Errorf("%s error leaks the key: %v", op, err)
		case !errors.As(err, &se) || se.Status != http.StatusForbidden:
			t.Errorf("%s error %v, want a 403 *StatusError", op, err)
		}
		if _, ok := sink.Retryable(err); ok {
			t.Errorf("%s: a wrong key is retryable: %v", op, err)
		}
	}
	if got := names(t, cc); len(got) != 0 {
		t.Errorf("a wrong key wrote %v", got)
	}
}

// A missing container is a plain error that tells the operator to create it.
func TestMissingContainer(t *testing.T) {
	s := newSink(t, Config{ConnectionString: azuriteConn(t), Container: "not-created"})
	for op, err := range map[string]error{
		"Check": s.Check(context.Background()),
		"Write": s.Write(context.Background(), sinktest.Records(0, 1)),
	} {
		if err == nil || !strings.Contains(err.Error(), "ContainerNotFound") || !strings.Contains(err.Error(), "create it") {
			t.Errorf("%s: error %v, want ContainerNotFound with a hint to create it", op, err)
		}
		if _, ok := sink.Retryable(err); ok {
			t.Errorf("%s: a missing container is retryable", op)
		}
	}
}

// An endpoint that does not answer is retryable, and the error holds
// neither the key nor a SAS.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	const sig = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
	for name, cfg := range map[string]Config{
		"connection string": {Container: "audit", ConnectionString: "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" +
			testenv.AzuriteKey + ";BlobEndpoint=http://" + addr + "/devstoreaccount1;"},
		"sas url": {SASURL: "http://" + addr + "/devstoreaccount1/audit?sv=2026-02-06&sr=c&sp=rcw&sig=" + sig},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSink(t, cfg)
			for op, err := range map[string]error{
				"Check": s.Check(context.Background()),
				"Write": s.Write(context.Background(), sinktest.Records(0, 1)),
			} {
				if _, ok := sink.Retryable(err); !ok {
					t.Errorf("%s: error %v, want retryable", op, err)
				}
				if err == nil {
					continue
				}
				if msg := err.Error(); strings.Contains(msg, testenv.AzuriteKey) || strings.Contains(msg, sig) ||
					strings.Contains(msg, "c2VjcmV0") {
					t.Errorf("%s: error leaks a secret: %s", op, msg)
				}
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cred := &fakeCredential{}
	conn := "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=" + testenv.AzuriteKey + ";EndpointSuffix=core.windows.net"
	for name, cfg := range map[string]Config{
		"nothing":                {Container: "audit"},
		"two auth forms":         {Container: "audit", ConnectionString: conn, SASURL: "https://a.blob.core.windows.net/audit?sig=x"},
		"account url, no cred":   {Container: "audit", AccountURL: "https://a.blob.core.windows.net"},
		"cred without url":       {Container: "audit", ConnectionString: conn, Credential: cred},
		"http not loopback":      {Container: "audit", AccountURL: "http://a.blob.core.windows.net", Credential: cred},
		"no container":           {AccountURL: "https://a.blob.core.windows.net", Credential: cred},
		"bad container name":     {Container: "Audit_Logs", ConnectionString: conn},
		"sas without query":      {SASURL: "https://a.blob.core.windows.net/audit"},
		"sas names a blob":       {SASURL: "https://a.blob.core.windows.net/audit/x.json?sig=x"},
		"sas of other container": {Container: "other", SASURL: "https://a.blob.core.windows.net/audit?sig=x"},
		"sas without container":  {SASURL: "https://a.blob.core.windows.net/?sig=x"},
		"bad connection string":  {Container: "audit", ConnectionString: "nonsense;AccountKey=" + testenv.AzuriteKey},
		"absolute prefix":        {Container: "audit", ConnectionString: conn, Prefix: "/x"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(cfg, nil)
			if err == nil {
				t.Fatalf("New(%s) succeeded", name)
			}
			if strings.Contains(err.Error(), testenv.AzuriteKey) || strings.Contains(err.Error(), "sig=") {
				t.Errorf("error leaks a secret: %v", err)
			}
		})
	}
	good := map[string]Config{
		"account url":    {Container: "audit", AccountURL: "https://a.blob.core.windows.net/", Credential: cred},
		"loopback http":  {Container: "audit", AccountURL: "http://127.0.0.1:10000/devstoreaccount1", Credential: cred},
		"connection":     {Container: "audit", ConnectionString: conn, Prefix: "tapline"},
		"container sas":  {SASURL: "https://a.blob.core.windows.net/audit?sv=1&sig=x"},
		"account sas":    {Container: "audit", SASURL: "https://a.blob.core.windows.net/?sv=1&sig=x"},
		"azurite sas":    {SASURL: "http://127.0.0.1:10000/devstoreaccount1/audit?sv=1&sig=x"},
		"matching sas":   {Container: "audit", SASURL: "https://a.blob.core.windows.net/audit?sv=1&sig=x"},
		"root container": {Container: "$root", ConnectionString: conn},
	}
	for name, cfg := range good {
		t.Run(name, func(t *testing.T) {
			s, err := New(cfg, nil)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if !strings.HasSuffix(strings.Split(s.cc.URL(), "?")[0], "/"+s.container) || s.container == "" {
				t.Errorf("container URL %s does not end with the container %q", redactURL(s.cc.URL()), s.container)
			}
		})
	}
}

// fakeCredential hands out the token "t" and remembers the scopes asked.
type fakeCredential struct {
	mu    sync.Mutex
	asked []string
}

func (c *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = append(c.asked, o.Scopes...)
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (c *fakeCredential) scopes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asked
}

// classify follows the sink contract for each status the service returns.
func TestClassify(t *testing.T) {
	now := time.Date(2026, 11, 22, 21, 0, 0, 0, time.UTC)
	s := &Sink{container: "audit", now: func() time.Time { return now }, secrets: []string{"s3cret"}}
	for _, c := range []struct {
		status    int
		code      string
		header    http.Header
		retryable bool
		after     time.Duration
		invalid   bool
	}{
		{status: 503, code: "ServerBusy", retryable: true},
		{status: 500, code: "InternalError", header: http.Header{"Retry-After": {"7"}}, retryable: true, after: 7 * time.Second},
		{status: 429, code: "", header: http.Header{"Retry-After-Ms": {"1500"}}, retryable: true, after: 1500 * time.Millisecond},
		{status: 503, code: "ServerBusy", header: http.Header{"Retry-After": {now.Add(30 * time.Second).Format(http.TimeFormat)}}, retryable: true, after: 30 * time.Second},
		{status: 408, code: "OperationTimedOut", retryable: true},
		{status: 502, retryable: true},
		{status: 504, retryable: true},
		{status: 403, code: "AuthorizationFailure"},
		{status: 403, code: "AuthenticationFailed"},
		{status: 401, code: "NoAuthenticationInformation"},
		{status: 404, code: "ContainerNotFound"},
		{status: 400, code: "InvalidResourceName"},
		{status: 409, code: "BlobImmutableDueToPolicy"},
		{status: 413, code: "RequestBodyTooLarge", invalid: true},
	} {
		resp := &http.Response{StatusCode: c.status, Header: http.Header{}, Body: http.NoBody,
			Request: &http.Request{Method: "PUT", URL: &url.URL{Scheme: "https", Host: "a", Path: "/audit/x", RawQuery: "sig=s3cret"}}}
		for k, v := range c.header {
			resp.Header[http.CanonicalHeaderKey(k)] = v
		}
		if c.code != "" {
			resp.Header.Set("x-ms-error-code", c.code)
		}
		err := s.classify("put blob", "x", runtime.NewResponseError(resp))
		after, retryable := sink.Retryable(err)
		var inv *sink.InvalidError
		switch {
		case retryable != c.retryable:
			t.Errorf("%d %s: retryable %v, want %v (%v)", c.status, c.code, retryable, c.retryable, err)
		case after != c.after:
			t.Errorf("%d %s: after %v, want %v", c.status, c.code, after, c.after)
		case errors.As(err, &inv) != c.invalid:
			t.Errorf("%d %s: invalid %v, want %v", c.status, c.code, !c.invalid, c.invalid)
		case strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "\n"):
			t.Errorf("%d %s: message %q leaks the URL or body", c.status, c.code, err)
		}
	}
	if err := s.classify("put blob", "x", errors.New("read: s3cret broke")); strings.Contains(err.Error(), "s3cret") {
		t.Errorf("generic error not redacted: %v", err)
	}
}

// With account_url the sink sends the credential's bearer token for
// Storage, and every put is create-only on the wire.
func TestAccountURLCredential(t *testing.T) {
	var mu sync.Mutex
	var auths, conds []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		conds = append(conds, r.Header.Get("If-None-Match"))
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	cred := &fakeCredential{}
	s := newSink(t, Config{AccountURL: srv.URL + "/devstoreaccount1", Credential: cred, Container: "audit"})
	write(t, s, sinktest.Records(0, 2))
	mu.Lock()
	defer mu.Unlock()
	if len(auths) != 2 {
		t.Fatalf("server saw %d requests, want 2 (one blob per kind)", len(auths))
	}
	for i := range auths {
		if auths[i] != "Bearer t" || conds[i] != "*" {
			t.Errorf("request %d: Authorization %q, If-None-Match %q; want \"Bearer t\", \"*\"", i, auths[i], conds[i])
		}
	}
	if got := cred.scopes(); len(got) == 0 || got[0] != "https://storage.azure.com/.default" {
		t.Errorf("token scopes %v, want [https://storage.azure.com/.default]", got)
	}
}
