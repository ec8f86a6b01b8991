package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
)

const (
	tenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	audience = "api://tapline"
	callRole = "Tapline.Call"
)

var (
	idpKeyOnce sync.Once
	idpKey     *rsa.PrivateKey
)

// newEntraEmulator starts an Entra ID stand-in; the signing key is made
// once per test binary (2048-bit keys are slow to generate).
func newEntraEmulator(t *testing.T, tenant string) (*emulator.Entra, *httptest.Server) {
	t.Helper()
	idpKeyOnce.Do(func() {
		var err error
		if idpKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	e, err := emulator.NewEntra(emulator.EntraConfig{TenantID: tenant, Key: idpKey}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	e.SetBaseURL(srv.URL)
	return e, srv
}

func withEntra(roles ...string) setup {
	return func(c *config.Config, _ *emulator.AOAIConfig) {
		c.Gateway.Auth.Entra = &config.Entra{Tenants: []string{tenantID}, Audiences: []string{audience}, RequiredRoles: roles}
	}
}

func (h *harness) mint(spec emulator.TokenSpec) string {
	h.t.Helper()
	if spec.Audience == "" {
		spec.Audience = audience
	}
	tok, err := h.idp.Mint(spec)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func TestEntraCallersAreRecordedWithTheirIdentity(t *testing.T) {
	h := newHarness(t, withEntra())
	cases := []struct {
		name string
		spec emulator.TokenSpec
		want record.Principal
	}{
		{"v1 user", emulator.TokenSpec{Version: 1, OID: "oid-u1", UPN: "ana@contoso.com", Name: "Ana", Roles: []string{"Reader"}},
			record.Principal{Kind: record.PrincipalEntraUser, OID: "oid-u1", TID: tenantID, AppID: emulator.EntraDefaultAppID,
				UPN: "ana@contoso.com", Name: "Ana", Roles: []string{"Reader"}}},
		{"v2 user", emulator.TokenSpec{Version: 2, OID: "oid-u2", UPN: "bo@contoso.com", Name: "Bo"},
			record.Principal{Kind: record.PrincipalEntraUser, OID: "oid-u2", TID: tenantID, AppID: emulator.EntraDefaultAppID,
				UPN: "bo@contoso.com", Name: "Bo"}},
		{"v1 app", emulator.TokenSpec{Version: 1, App: true, OID: "oid-a1", AppID: "app-1", Roles: []string{callRole}},
			record.Principal{Kind: record.PrincipalEntraApp, OID: "oid-a1", TID: tenantID, AppID: "app-1", Roles: []string{callRole}}},
		{"v2 app", emulator.TokenSpec{Version: 2, App: true, OID: "oid-a2", AppID: "app-2"},
			record.Principal{Kind: record.PrincipalEntraApp, OID: "oid-a2", TID: tenantID, AppID: "app-2"}},
	}
	for _, c := range cases {
		resp, body := h.post(chatPath, `{"messages":[{"role":"user","content":"hi"}]}`,
			"api-key", "", "Authorization", "Bearer "+h.mint(c.spec))
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.name, resp.StatusCode, body)
		}
	}
	recs := h.waitRecords(len(cases))
	for i, c := range cases {
		got := recs[i].Principal
		got.Name = strings.TrimSpace(got.Name)
		if got.Kind != c.want.Kind || got.OID != c.want.OID || got.TID != c.want.TID || got.UPN != c.want.UPN ||
			got.AppID != c.want.AppID || got.Name != c.want.Name || strings.Join(got.Roles, ",") != strings.Join(c.want.Roles, ",") {
			t.Errorf("%s: principal %+v, want %+v", c.name, got, c.want)
		}
	}
	if n := len(h.aoai.Requests()); n != len(cases) {
		t.Errorf("the backend saw %d calls", n)
	}
}

// The attack table: every forged, stale or misdirected credential is
// answered 401 (403 for a missing role), recorded as denied with the
// caller's IP, and never reaches the backend.
func TestEntraAttacksAreDeniedAndRecorded(t *testing.T) {
	h := newHarness(t, withEntra(callRole))
	// Another IdP for the same tenant, with its own key, minting tokens that
	// claim our issuer and our IdP's kid.
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, err := emulator.NewEntra(emulator.EntraConfig{TenantID: tenantID, Key: otherKey}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	other.SetBaseURL(h.idpSrv.URL)
	good := emulator.TokenSpec{Version: 2, App: true, Roles: []string{callRole}}
	valid := h.mint(good)
	parts := strings.Split(valid, ".")
	pubPEM := publicKeyPEM(t, h.idpSrv.URL+"/"+tenantID+"/discovery/v2.0/keys", h.idp.SigningKid())

	var payload map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(raw, &payload)
	payload["roles"] = []string{callRole, "Admin"}
	tampered, _ := json.Marshal(payload)

	forged := func(alg jwt.SigningMethod, key any) string {
		tok := jwt.NewWithClaims(alg, jwt.MapClaims(payload))
		tok.Header["kid"] = h.idp.SigningKid()
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	foreignKey, _ := other.Mint(emulator.TokenSpec{Version: 2, App: true, Audience: audience, Roles: []string{callRole}, Kid: h.idp.SigningKid()})

	cases := []struct {
		name   string
		hdr    [2]string
		status int
	}{
		{"alg none", bearer(b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "."), 401},
		{"HS256 keyed with the public key", bearer(forged(jwt.SigningMethodHS256, pubPEM)), 401},
		{"unknown kid", bearer(h.mint(emulator.TokenSpec{Version: 2, App: true, Roles: []string{callRole}, Kid: "not-a-kid"})), 401},
		{"a key from another JWKS", bearer(foreignKey), 401},
		{"expired", bearer(h.mint(emulator.TokenSpec{Version: 2, App: true, Roles: []string{callRole}, Expiry: time.Now().Add(-time.Hour), NotBefore: time.Now().Add(-2 * time.Hour)})), 401},
		{"not yet valid", bearer(h.mint(emulator.TokenSpec{Version: 2, App: true, Roles: []string{callRole}, NotBefore: time.Now().Add(time.Hour), Expiry: time.Now().Add(2 * time.Hour)})), 401},
		{"wrong audience", bearer(h.mint(emulator.TokenSpec{Version: 2, App: true, Roles: []string{callRole}, Audience: "api://someone-else"})), 401},
		{"wrong issuer", bearer(h.mint(emulator.TokenSpec{Version: 2, App: true, Roles: []string{callRole}, Issuer: "https://evil.example/" + tenantID + "/v2.0"})), 401},
		{"tenant not allowed", bearer(h.mint(emulator.TokenSpec{Version: 2, App: true, Roles: []string{callRole}, TenantID: "11111111-2222-3333-4444-555555555555"})), 401},
		{"tampered payload", bearer(parts[0] + "." + base64.RawURLEncoding.EncodeToString(tampered) + "." + parts[2]), 401},
		{"missing required role", bearer(h.mint(emulator.TokenSpec{Version: 2, App: true})), 403},
		{"token in the api-key header", [2]string{"api-key", valid}, 401},
		{"empty bearer", [2]string{"Authorization", "Bearer "}, 401},
		{"truncated token", bearer(valid[:len(valid)-20]), 401},
		{"64 KB header", bearer(valid + strings.Repeat("A", 64<<10)), 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := h.post(chatPath, `{"messages":[{"role":"user","content":"hi"}]}`, "api-key", "", c.hdr[0], c.hdr[1])
			e := parseError(t, body)
			if resp.StatusCode != c.status {
				t.Fatalf("got %d %+v, want %d", resp.StatusCode, e, c.status)
			}
			if tok := strings.TrimPrefix(c.hdr[1], "Bearer "); len(tok) > 20 && strings.Contains(string(body), tok[len(tok)-20:]) {
				t.Error("the error echoes the token")
			}
		})
	}
	recs := h.waitRecords(len(cases))
	for i, r := range recs {
		if r.State != record.StateDenied || r.Status != cases[i].status || r.ClientIP != "127.0.0.1" || r.Error == nil {
			t.Errorf("%s: recorded %+v", cases[i].name, r)
		}
	}
	if n := len(h.aoai.Requests()); n != 0 {
		t.Errorf("%d denied calls reached the backend", n)
	}
	// And the genuine token still works.
	if resp, body := h.post(chatPath, `{"messages":[{"role":"user","content":"hi"}]}`, "api-key", "", "Authorization", "Bearer "+valid); resp.StatusCode != 200 {
		t.Errorf("the valid token: %d %s", resp.StatusCode, body)
	}
}

func TestEntraUnreachableIsA503(t *testing.T) {
	h := newHarness(t, withEntra())
	tok := h.mint(emulator.TokenSpec{Version: 2, App: true})
	h.idpSrv.Close()
	resp, body := h.post(chatPath, `{"messages":[]}`, "api-key", "", "Authorization", "Bearer "+tok)
	if e := parseError(t, body); resp.StatusCode != 503 || !strings.Contains(e.Error.Message, "cannot verify credentials") {
		t.Fatalf("got %d %+v", resp.StatusCode, e)
	}
	if rec := h.only(); rec.State != record.StateDenied || rec.Status != 503 {
		t.Errorf("record %+v", rec)
	}
	if len(h.aoai.Requests()) != 0 {
		t.Error("an unverified call reached the backend")
	}
}

func bearer(tok string) [2]string { return [2]string{"Authorization", "Bearer " + tok} }

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// publicKeyPEM fetches the IdP's published signing key, the material an
// attacker has, as PEM.
func publicKeyPEM(t *testing.T, jwksURL, kid string) []byte {
	t.Helper()
	resp, err := http.Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct{ Keys []struct{ Kid, N, E string } }
	json.NewDecoder(resp.Body).Decode(&set)
	for _, k := range set.Keys {
		if k.Kid != kid {
			continue
		}
		n, _ := base64.RawURLEncoding.DecodeString(k.N)
		e, _ := base64.RawURLEncoding.DecodeString(k.E)
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	t.Fatalf("kid %s not published", kid)
	return nil
}
