package emulator

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

const entraTestTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// entraTestKey is generated once: 2048-bit generation is slow on a busy machine.
var entraTestKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newTestEntra(t *testing.T, now func() time.Time) (*Entra, *httptest.Server) {
	t.Helper()
	e, err := NewEntra(EntraConfig{TenantID: entraTestTenant, Now: now, Key: entraTestKey()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	e.SetBaseURL(srv.URL)
	return e, srv
}

func getJSON(t *testing.T, url string, want int, v any) http.Header {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s: status %d, want %d", url, resp.StatusCode, want)
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.Header
}

func TestEntraDiscovery(t *testing.T) {
	_, srv := newTestEntra(t, nil)
	tb := srv.URL + "/" + entraTestTenant

	var v2 map[string]any
	h := getJSON(t, tb+"/v2.0/.well-known/openid-configuration", http.StatusOK, &v2)
	if ct := h.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if v2["issuer"] != tb+"/v2.0" || v2["jwks_uri"] != tb+"/discovery/v2.0/keys" {
		t.Errorf("v2: issuer %v, jwks_uri %v", v2["issuer"], v2["jwks_uri"])
	}

	var v1 map[string]any
	getJSON(t, tb+"/.well-known/openid-configuration", http.StatusOK, &v1)
	// The v1 quirks (azure-contracts.md §8): sts.windows.net issuer, common keys.
	if v1["issuer"] != "https://sts.windows.net/"+entraTestTenant+"/" || v1["jwks_uri"] != srv.URL+"/common/discovery/keys" {
		t.Errorf("v1: issuer %v, jwks_uri %v", v1["issuer"], v1["jwks_uri"])
	}

	// Tenant ids are case-insensitive, as GUIDs.
	getJSON(t, srv.URL+"/"+strings.ToUpper(entraTestTenant)+"/v2.0/.well-known/openid-configuration", http.StatusOK, nil)
}

func TestEntraUnknownTenant(t *testing.T) {
	e, srv := newTestEntra(t, nil)
	for _, path := range []string{
		"/00000000-0000-0000-0000-000000000001/v2.0/.well-known/openid-configuration",
		"/contoso.onmicrosoft.com/.well-known/openid-configuration",
		"/common/v2.0/.well-known/openid-configuration",
		"/00000000-0000-0000-0000-000000000001/discovery/v2.0/keys",
	} {
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
			Codes       []int  `json:"error_codes"`
			TraceID     string `json:"trace_id"`
			ErrorURI    string `json:"error_uri"`
		}
		getJSON(t, srv.URL+path, http.StatusBadRequest, &body)
		if body.Error != "invalid_tenant" || !strings.HasPrefix(body.Description, "AADSTS90002: Tenant '") ||
			!slices.Equal(body.Codes, []int{90002}) || body.TraceID == "" || !strings.HasSuffix(body.ErrorURI, "?code=90002") {
			t.Errorf("%s: %+v", path, body)
		}
	}
	getJSON(t, srv.URL+"/"+entraTestTenant+"/oauth2/v2.0/token", http.StatusNotFound, nil)
	resp, err := http.Post(srv.URL+"/common/discovery/keys", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	if got := e.Requests(); got != 6 {
		t.Errorf("Requests() = %d, want 6 (every request counts)", got)
	}
}

type testJWKS struct {
	Keys []struct {
		Kty, Use, Kid, X5t, N, E, Issuer string
		X5c                              []string
	} `json:"keys"`
}

// TestEntraKeySets checks every key set publishes the signing key with a
// certificate whose SHA-1 thumbprint is x5t (and kid), and n/e matching it.
func TestEntraKeySets(t *testing.T) {
	e, srv := newTestEntra(t, nil)
	tb := srv.URL + "/" + entraTestTenant
	for url, issuer := range map[string]string{
		tb + "/discovery/v2.0/keys":             tb + "/v2.0",
		srv.URL + "/common/discovery/keys":      "",
		srv.URL + "/common/discovery/v2.0/keys": "https://login.microsoftonline.com/{tenantid}/v2.0",
	} {
		var set testJWKS
		getJSON(t, url, http.StatusOK, &set)
		if len(set.Keys) != 1 {
			t.Fatalf("%s: %d keys", url, len(set.Keys))
		}
		k := set.Keys[0]
		if k.Kty != "RSA" || k.Use != "sig" || k.Kid != e.SigningKid() || k.X5t != k.Kid || k.Issuer != issuer {
			t.Errorf("%s: %+v", url, k)
		}
		der, err := base64.StdEncoding.DecodeString(k.X5c[0])
		if err != nil {
			t.Fatal(err)
		}
		sum := sha1.Sum(der)
		if got := base64.RawURLEncoding.EncodeToString(sum[:]); got != k.X5t {
			t.Errorf("x5t %s, certificate thumbprint %s", k.X5t, got)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		pub := entraTestKey().PublicKey
		if !pub.Equal(cert.PublicKey) {
			t.Error("x5c certificate does not hold the signing key")
		}
		n, _ := base64.RawURLEncoding.DecodeString(k.N)
		ex, _ := base64.RawURLEncoding.DecodeString(k.E)
		if new(big.Int).SetBytes(n).Cmp(pub.N) != 0 || new(big.Int).SetBytes(ex).Int64() != int64(pub.E) {
			t.Error("n/e do not match the signing key")
		}
	}
}

func TestEntraRotateRemove(t *testing.T) {
	if testing.Short() {
		t.Skip("generates an RSA key")
	}
	e, _ := newTestEntra(t, nil)
	old := e.SigningKid()
	kid := e.Rotate()
	if kid == old || e.SigningKid() != kid {
		t.Fatalf("Rotate: kid %s, old %s, signing %s", kid, old, e.SigningKid())
	}
	if diff := cmp.Diff([]string{old, kid}, e.Kids()); diff != "" {
		t.Errorf("after Rotate (-want +got):\n%s", diff)
	}
	tok, err := e.Mint(TokenSpec{Version: 1, Audience: "api://tapline"})
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, _ := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if parsed.Header["kid"] != kid || parsed.Header["x5t"] != kid {
		t.Errorf("minted with header %v, want kid %s", parsed.Header, kid)
	}
	e.Remove(old)
	if diff := cmp.Diff([]string{kid}, e.Kids()); diff != "" {
		t.Errorf("after Remove (-want +got):\n%s", diff)
	}
}

func TestEntraMint(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e, srv := newTestEntra(t, func() time.Time { return now })
	pub := &entraTestKey().PublicKey
	tb := srv.URL + "/" + entraTestTenant

	tests := []struct {
		name       string
		spec       TokenSpec
		want       map[string]any
		absent     []string
		wantHeader map[string]any
	}{
		{
			name: "v1 user",
			spec: TokenSpec{Version: 1, Audience: "api://tapline", OID: "o1", UPN: "ada@contoso.com", Name: "Ada", Roles: []string{"r"}},
			want: map[string]any{"iss": "https://sts.windows.net/" + entraTestTenant + "/", "ver": "1.0", "aud": "api://tapline",
				"appid": EntraDefaultAppID, "appidacr": "0", "upn": "ada@contoso.com", "unique_name": "ada@contoso.com", "name": "Ada",
				"oid": "o1", "tid": entraTestTenant, "scp": EntraDefaultScope, "roles": []any{"r"},
				"iat": float64(now.Unix()), "nbf": float64(now.Unix()), "exp": float64(now.Add(time.Hour).Unix())},
			absent:     []string{"azp", "preferred_username", "idtyp"},
			wantHeader: map[string]any{"alg": "RS256", "typ": "JWT", "kid": e.SigningKid(), "x5t": e.SigningKid()},
		},
		{
			name: "v1 app",
			spec: TokenSpec{Version: 1, App: true, Audience: "api://tapline", AppID: "a1", Roles: []string{"Tapline.Use"}},
			want: map[string]any{"ver": "1.0", "appid": "a1", "appidacr": "1", "idtyp": "app", "roles": []any{"Tapline.Use"},
				"idp": "https://sts.windows.net/" + entraTestTenant + "/"},
			absent: []string{"scp", "upn", "unique_name", "name"},
		},
		{
			name: "v2 user",
			spec: TokenSpec{Version: 2, Audience: "c1", UPN: "ada@contoso.com", Scope: "access_as_user"},
			want: map[string]any{"iss": tb + "/v2.0", "ver": "2.0", "azp": EntraDefaultAppID, "azpacr": "0",
				"preferred_username": "ada@contoso.com", "scp": "access_as_user"},
			absent:     []string{"appid", "upn", "unique_name", "idtyp", "roles"},
			wantHeader: map[string]any{"alg": "RS256", "typ": "JWT", "kid": e.SigningKid()},
		},
		{
			name:   "v2 app",
			spec:   TokenSpec{Version: 2, App: true, Audience: "c1", AppID: "a2"},
			want:   map[string]any{"ver": "2.0", "azp": "a2", "azpacr": "1", "idtyp": "app"},
			absent: []string{"scp", "preferred_username", "appid"},
		},
		{
			name: "overrides",
			spec: TokenSpec{Version: 2, Audience: "c1", Issuer: "https://evil.example/x/v2.0", TenantID: "t2", Kid: "forged",
				Expiry: now.Add(-time.Hour), NotBefore: now.Add(-2 * time.Hour)},
			want: map[string]any{"iss": "https://evil.example/x/v2.0", "tid": "t2",
				"exp": float64(now.Add(-time.Hour).Unix()), "nbf": float64(now.Add(-2 * time.Hour).Unix())},
			wantHeader: map[string]any{"alg": "RS256", "typ": "JWT", "kid": "forged"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := e.Mint(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			claims := jwt.MapClaims{}
			// Verify the signature only: the claims are what is under test.
			parsed, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation()).
				ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return pub, nil })
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if diff := cmp.Diff(v, claims[k]); diff != "" {
					t.Errorf("claim %s (-want +got):\n%s", k, diff)
				}
			}
			for _, k := range tt.absent {
				if v, ok := claims[k]; ok {
					t.Errorf("claim %s = %v, want absent", k, v)
				}
			}
			if tt.wantHeader != nil {
				if diff := cmp.Diff(tt.wantHeader, parsed.Header); diff != "" {
					t.Errorf("header (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestEntraMintErrors(t *testing.T) {
	e, err := NewEntra(EntraConfig{TenantID: entraTestTenant, Key: entraTestKey()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]TokenSpec{
		"version 0":       {Audience: "a"},
		"version 3":       {Version: 3, Audience: "a"},
		"no audience":     {Version: 1},
		"v2 without base": {Version: 2, Audience: "a"},
	} {
		if _, err := e.Mint(spec); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := e.Mint(TokenSpec{Version: 1, Audience: "a"}); err != nil {
		t.Errorf("v1 needs no base URL: %v", err)
	}
	for _, id := range []string{"", "a/b", "a b"} {
		if _, err := NewEntra(EntraConfig{TenantID: id, Key: entraTestKey()}, nil); err == nil {
			t.Errorf("tenant %q accepted", id)
		}
	}
}

func TestListenEntra(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:0", "[::]:0", "example.com:0"} {
		if _, _, _, err := ListenEntra(t.Context(), addr, EntraConfig{TenantID: entraTestTenant, Key: entraTestKey()}, nil); err == nil {
			t.Errorf("%s: listening off loopback", addr)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, e, stop, err := ListenEntra(ctx, "", EntraConfig{TenantID: entraTestTenant, Key: entraTestKey()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("base %s", base)
	}
	var doc map[string]any
	getJSON(t, base+"/"+entraTestTenant+"/v2.0/.well-known/openid-configuration", http.StatusOK, &doc)
	tok, err := e.Mint(TokenSpec{Version: 2, Audience: "a"})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		t.Fatal(err)
	}
	if claims["iss"] != doc["issuer"] {
		t.Errorf("minted iss %v, discovery issuer %v", claims["iss"], doc["issuer"])
	}
	stop()
	stop() // idempotent
	if _, err := http.Get(base + "/common/discovery/keys"); err == nil {
		t.Error("still serving after stop")
	}
}
