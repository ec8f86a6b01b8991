package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tapline/tapline/internal/emulator"
)

const (
	testTenant   = "3f6a1c2e-9b7d-4e21-8c55-0d9e4b7a6f10"
	otherTenant  = "c0ffee00-1234-4abc-9def-000000000002"
	testAudience = "api://tapline"
	testClientID = "5b1e2c3d-4f50-4a6b-8c7d-9e0f1a2b3c4d" // the API's client id, also an accepted audience
	testRole     = "Tapline.Use"
)

// testKeys are two 2048-bit keys generated once for the package: the IdP's,
// and a stranger's (another emulator's).
var testKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var ks [2]*rsa.PrivateKey
	for i := range ks {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		ks[i] = k
	}
	return ks
})

// testClock is a settable clock shared by the emulator and the authenticator.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testIdP is the Entra emulator served by httptest.
type testIdP struct {
	*emulator.Entra
	srv *httptest.Server
}

func newTestIdP(t testing.TB, clock *testClock, key *rsa.PrivateKey) *testIdP {
	t.Helper()
	e, err := emulator.NewEntra(emulator.EntraConfig{TenantID: testTenant, Now: clock.Now, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	e.SetBaseURL(srv.URL)
	return &testIdP{Entra: e, srv: srv}
}

func (p *testIdP) v2Issuer() string { return p.srv.URL + "/" + testTenant + "/v2.0" }

func (p *testIdP) mint(t testing.TB, spec emulator.TokenSpec) string {
	t.Helper()
	tok, err := p.Mint(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// lockedBuffer collects log output from concurrent goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newTestEntra returns an authenticator for idp; mod may change the config.
func newTestEntra(t testing.TB, idp *testIdP, clock *testClock, mod func(*EntraConfig)) (*Entra, *lockedBuffer) {
	t.Helper()
	cfg := EntraConfig{
		Authority:  idp.srv.URL,
		Tenants:    []string{testTenant},
		Audiences:  []string{testAudience, testClientID},
		HTTPClient: idp.srv.Client(),
		Now:        clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	logs := &lockedBuffer{}
	e, err := NewEntra(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return e, logs
}

// userSpec is a valid v2 user token's spec.
func userSpec() emulator.TokenSpec {
	return emulator.TokenSpec{Version: 2, Audience: testAudience, OID: "9a8b7c6d-0000-4000-8000-000000000001",
		UPN: "ada@contoso.com", Name: "Ada Lovelace"}
}

// signRS256 signs claims with key under header fields hdr (kid, x5t), for
// tokens the emulator would not mint.
func signRS256(t testing.TB, key *rsa.PrivateKey, hdr map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// baseClaims are valid v2 claims for idp at clock's time.
func baseClaims(idp *testIdP, clock *testClock) jwt.MapClaims {
	now := clock.Now()
	return jwt.MapClaims{
		"aud": testAudience, "iss": idp.v2Issuer(), "tid": testTenant, "ver": "2.0",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"oid": "9a8b7c6d-0000-4000-8000-000000000002", "azp": emulator.EntraDefaultAppID, "scp": "user_impersonation",
		"preferred_username": "bob@contoso.com",
	}
}

// authOK authenticates tok and fails the test unless it is accepted.
func authOK(t testing.TB, e *Entra, tok string) Result {
	t.Helper()
	res, err := e.Authenticate(context.Background(), tok)
	if err != nil || !res.OK {
		t.Fatalf("Authenticate: %+v, %v", res, err)
	}
	return res
}

// authDenied authenticates tok and fails the test unless it is refused
// with status and a reason containing want, and not containing the token.
func authDenied(t testing.TB, e *Entra, tok string, status int, want string) {
	t.Helper()
	res, err := e.Authenticate(context.Background(), tok)
	if err != nil {
		t.Fatalf("Authenticate: technical error %v, want a %d", err, status)
	}
	if res.OK || res.Status != status || !strings.Contains(res.Reason, want) {
		t.Fatalf("Authenticate = %+v, want status %d and a reason containing %q", res, status, want)
	}
	if res.Principal.Kind != "" || res.Principal.OID != "" {
		t.Errorf("refused token yields principal %+v", res.Principal)
	}
	if leaks(res.Reason, tok) {
		t.Errorf("reason %q contains the token", res.Reason)
	}
}

// leaks reports whether s contains tok or any of its parts long enough to
// be recognisable.
func leaks(s, tok string) bool {
	if len(tok) >= 8 && strings.Contains(s, tok) {
		return true
	}
	for _, part := range strings.Split(tok, ".") {
		if len(part) >= 12 && strings.Contains(s, part) {
			return true
		}
	}
	return false
}
