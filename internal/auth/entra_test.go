package auth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
)

func TestEntraAccepts(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t, clock, testKeys()[0])
	auth, _ := newTestEntra(t, idp, clock, nil)
	key, kid := testKeys()[0], idp.SigningKid()

	const oid, appOID, appID = "11111111-2222-4333-8444-555555555555", "66666666-7777-4888-9999-000000000000", "0a1b2c3d-0000-4000-8000-00000000abcd"
	tests := []struct {
		name  string
		token func() string
		want  record.Principal
	}{
		{
			name: "v1 user",
			token: func() string {
				return idp.mint(t, emulator.TokenSpec{Version: 1, Audience: testAudience, OID: oid, UPN: "ada@contoso.com",
					Name: "Ada Lovelace", AppID: appID, Roles: []string{testRole}})
			},
			want: record.Principal{Kind: record.PrincipalEntraUser, OID: oid, TID: testTenant, AppID: appID,
				UPN: "ada@contoso.com", Name: "Ada Lovelace", Roles: []string{testRole}},
		},
		{
			name: "v1 app",
			token: func() string {
				return idp.mint(t, emulator.TokenSpec{Version: 1, App: true, Audience: testAudience, OID: appOID, AppID: appID,
					Roles: []string{testRole, "Other"}})
			},
			want: record.Principal{Kind: record.PrincipalEntraApp, OID: appOID, TID: testTenant, AppID: appID,
				Roles: []string{testRole, "Other"}},
		},
		{
			name: "v2 user",
			token: func() string {
				return idp.mint(t, emulator.TokenSpec{Version: 2, Audience: testClientID, OID: oid, UPN: "ada@contoso.com",
					Name: "Ada Lovelace", AppID: appID})
			},
			want: record.Principal{Kind: record.PrincipalEntraUser, OID: oid, TID: testTenant, AppID: appID,
				UPN: "ada@contoso.com", Name: "Ada Lovelace"},
		},
		{
			name: "v2 app",
			token: func() string {
				return idp.mint(t, emulator.TokenSpec{Version: 2, App: true, Audience: testClientID, OID: appOID, AppID: appID,
					Roles: []string{testRole}})
			},
			want: record.Principal{Kind: record.PrincipalEntraApp, OID: appOID, TID: testTenant, AppID: appID, Roles: []string{testRole}},
		},
		{
			name: "v1 user known by unique_name only",
			token: func() string {
				c := baseClaims(idp, clock)
				delete(c, "preferred_username")
				delete(c, "azp")
				c["iss"], c["ver"], c["appid"], c["unique_name"] = "https://sts.windows.net/"+testTenant+"/", "1.0", appID, "live.com#ada@outlook.com"
				return signRS256(t, key, map[string]any{"kid": kid, "x5t": kid}, c)
			},
			want: record.Principal{Kind: record.PrincipalEntraUser, OID: "9a8b7c6d-0000-4000-8000-000000000002", TID: testTenant,
				AppID: appID, UPN: "live.com#ada@outlook.com"},
		},
		{
			name: "client credentials token without idtyp",
			token: func() string {
				c := baseClaims(idp, clock)
				delete(c, "preferred_username")
				delete(c, "scp")
				c["roles"] = []string{testRole}
				return signRS256(t, key, map[string]any{"kid": kid}, c)
			},
			want: record.Principal{Kind: record.PrincipalEntraApp, OID: "9a8b7c6d-0000-4000-8000-000000000002", TID: testTenant,
				AppID: emulator.EntraDefaultAppID, Roles: []string{testRole}},
		},
		{
			name: "idtyp user is a user",
			token: func() string {
				c := baseClaims(idp, clock)
				c["idtyp"] = "user" // ARM / Azure CLI user tokens carry it (azure-contracts.md §8)
				return signRS256(t, key, map[string]any{"kid": kid}, c)
			},
			want: record.Principal{Kind: record.PrincipalEntraUser, OID: "9a8b7c6d-0000-4000-8000-000000000002", TID: testTenant,
				AppID: emulator.EntraDefaultAppID, UPN: "bob@contoso.com"},
		},
		{
			name: "expired a minute ago, within the leeway",
			token: func() string {
				s := userSpec()
				s.OID, s.AppID = oid, appID
				s.Expiry, s.NotBefore = clock.Now().Add(-time.Minute), clock.Now().Add(-time.Hour)
				return idp.mint(t, s)
			},
			want: record.Principal{Kind: record.PrincipalEntraUser, OID: oid, TID: testTenant, AppID: appID,
				UPN: "ada@contoso.com", Name: "Ada Lovelace"},
		},
		{
			name: "upper-case tid",
			token: func() string {
				c := baseClaims(idp, clock)
				c["tid"] = strings.ToUpper(testTenant)
				return signRS256(t, key, map[string]any{"kid": kid}, c)
			},
			want: record.Principal{Kind: record.PrincipalEntraUser, OID: "9a8b7c6d-0000-4000-8000-000000000002",
				TID: strings.ToUpper(testTenant), AppID: emulator.EntraDefaultAppID, UPN: "bob@contoso.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := authOK(t, auth, tt.token())
			if diff := cmp.Diff(tt.want, res.Principal); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEntraRejects is the attack table: every token is refused with 401
// (403 for the missing role), a reason naming what was wrong, no technical
// error, and no trace of the token in the reason or the log.
func TestEntraRejects(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t, clock, testKeys()[0])
	stranger := newTestIdP(t, clock, testKeys()[1]) // another emulator, same tenant id, its own key
	auth, logs := newTestEntra(t, idp, clock, nil)
	withRole, roleLogs := newTestEntra(t, idp, clock, func(c *EntraConfig) { c.RequiredRoles = []string{testRole} })
	key, kid := testKeys()[0], idp.SigningKid()

	valid := idp.mint(t, userSpec())
	authOK(t, auth, valid)
	parts := strings.Split(valid, ".")

	// The attacker's view of the public key: the published JWKS.
	resp, err := http.Get(idp.srv.URL + "/" + testTenant + "/discovery/v2.0/keys")
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	err = json.NewDecoder(resp.Body).Decode(&set)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rsaKey(set.Keys[0].N, set.Keys[0].E)
	if err != nil {
		t.Fatal(err)
	}
	pkix, _ := x509.MarshalPKIXPublicKey(pub)
	pkcs1 := x509.MarshalPKCS1PublicKey(pub)
	pemPKIX := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	pemPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pkcs1})

	// hmacWith signs the valid token's claims HS256 with secret as the key.
	hmacWith := func(secret []byte) string {
		var c jwt.MapClaims
		if _, _, err := jwt.NewParser().ParseUnverified(valid, &c); err != nil {
			t.Fatal(err)
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	withHeader := func(hdr string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." + parts[1] + "."
	}
	signWith := func(m jwt.SigningMethod) string {
		c := baseClaims(idp, clock)
		tok := jwt.NewWithClaims(m, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	spec := func(mod func(*emulator.TokenSpec)) string {
		s := userSpec()
		mod(&s)
		return idp.mint(t, s)
	}
	claims := func(mod func(jwt.MapClaims)) string {
		c := baseClaims(idp, clock)
		mod(c)
		return signRS256(t, key, map[string]any{"kid": kid}, c)
	}
	tamper := func() string {
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		forged := strings.Replace(string(payload), "ada@contoso.com", "eve@contoso.com", 1)
		if forged == string(payload) {
			t.Fatal("nothing tampered")
		}
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]
	}

	tests := []struct {
		name   string
		token  string
		roles  bool // authenticate with RequiredRoles [Tapline.Use]
		status int
		reason string
	}{
		{"alg none", withHeader(`{"alg":"none","typ":"JWT","kid":"` + kid + `"}`), false, 401, "algorithm not allowed"},
		{"alg None", withHeader(`{"alg":"None","typ":"JWT"}`), false, 401, "algorithm not allowed"},
		{"alg none with the real signature", withHeader(`{"alg":"none","kid":"`+kid+`"}`) + parts[2], false, 401, "algorithm not allowed"},
		{"HS256 keyed with the public key, PEM (PKIX)", hmacWith(pemPKIX), false, 401, "algorithm not allowed"},
		{"HS256 keyed with the public key, PEM (PKCS#1)", hmacWith(pemPKCS1), false, 401, "algorithm not allowed"},
		{"HS256 keyed with the public key, DER (PKIX)", hmacWith(pkix), false, 401, "algorithm not allowed"},
		{"HS256 keyed with the public key, DER (PKCS#1)", hmacWith(pkcs1), false, 401, "algorithm not allowed"},
		{"HS256 keyed with the modulus", hmacWith(pub.N.Bytes()), false, 401, "algorithm not allowed"},
		{"RS384 with the real key", signWith(jwt.SigningMethodRS384), false, 401, "algorithm not allowed"},
		{"PS256 with the real key", signWith(jwt.SigningMethodPS256), false, 401, "algorithm not allowed"},
		{"unknown kid", spec(func(s *emulator.TokenSpec) { s.Kid = "no-such-kid" }), false, 401, "unknown signing key"},
		{"no kid", signRS256(t, key, nil, baseClaims(idp, clock)), false, 401, "unknown signing key"},
		{"another emulator's key under the same kid", stranger.mint(t, emulator.TokenSpec{Version: 2, Audience: testAudience,
			UPN: "eve@contoso.com", Kid: kid, Issuer: idp.v2Issuer()}), false, 401, "bad signature"},
		{"another emulator's own issuer and key", stranger.mint(t, emulator.TokenSpec{Version: 2, Audience: testAudience}),
			false, 401, "unknown signing key"},
		{"expired", spec(func(s *emulator.TokenSpec) {
			s.Expiry, s.NotBefore = clock.Now().Add(-10*time.Minute), clock.Now().Add(-2*time.Hour)
		}), false, 401, "expired"},
		{"not yet valid", spec(func(s *emulator.TokenSpec) { s.NotBefore = clock.Now().Add(10 * time.Minute) }), false, 401, "not yet valid"},
		{"wrong audience", spec(func(s *emulator.TokenSpec) { s.Audience = "https://management.azure.com/" }), false, 401, "wrong audience"},
		{"audience list without ours", claims(func(c jwt.MapClaims) { c["aud"] = []string{"a", "b"} }), false, 401, "wrong audience"},
		{"no audience", claims(func(c jwt.MapClaims) { delete(c, "aud") }), false, 401, "required claim"},
		{"no exp", claims(func(c jwt.MapClaims) { delete(c, "exp") }), false, 401, "required claim"},
		{"wrong issuer host", spec(func(s *emulator.TokenSpec) { s.Issuer = "http://evil.example/" + testTenant + "/v2.0" }), false, 401, "issuer not accepted"},
		{"issuer of another tenant", spec(func(s *emulator.TokenSpec) {
			s.Issuer = "https://sts.windows.net/" + otherTenant + "/"
		}), false, 401, "issuer not accepted"},
		{"v2 token with the v1 issuer", spec(func(s *emulator.TokenSpec) { s.Issuer = "https://sts.windows.net/" + testTenant + "/" }),
			false, 401, "version"},
		{"v1 token with the v2 issuer", spec(func(s *emulator.TokenSpec) { s.Version, s.Issuer = 1, idp.v2Issuer() }), false, 401, "version"},
		{"no ver", claims(func(c jwt.MapClaims) { delete(c, "ver") }), false, 401, "version"},
		{"tenant not allowed", spec(func(s *emulator.TokenSpec) { s.TenantID = otherTenant }), false, 401, "tenant not allowed"},
		{"no tid", claims(func(c jwt.MapClaims) { delete(c, "tid") }), false, 401, "no tid"},
		{"tampered payload, original signature", tamper(), false, 401, "bad signature"},
		{"payload of another token", parts[0] + "." + strings.Split(spec(func(s *emulator.TokenSpec) { s.UPN = "eve@contoso.com" }), ".")[1] +
			"." + parts[2], false, 401, "bad signature"},
		{"missing required role", valid, true, 403, "missing role " + testRole},
		{"other role only", spec(func(s *emulator.TokenSpec) { s.Roles = []string{"Tapline.Admin"} }), true, 403, "missing role " + testRole},
		{"roles of the wrong type", claims(func(c jwt.MapClaims) { c["roles"] = testRole }), true, 401, "malformed"},
		{"exp of the wrong type", claims(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), false, 401, "malformed"},
		{"empty", "", false, 401, "empty"},
		{"truncated in the payload", valid[:len(valid)/2], false, 401, "malformed"},
		// 342 signature characters less one: a length no base64 text has.
		{"truncated signature", valid[:len(valid)-1], false, 401, "malformed"},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(spec(func(s *emulator.TokenSpec) {
			s.UPN = "eve@contoso.com"
		}), ".")[2], false, 401, "bad signature"},
		{"signature with a non-canonical last character", valid[:len(valid)-1] + nonCanonical(valid), false, 401, "malformed"},
		{"64 KiB", valid + strings.Repeat("A", 64<<10), false, 401, "longer than 16 KiB"},
		{"garbage", "this is not a token", false, 401, "malformed"},
		{"three dots of garbage", "a.b.c", false, 401, "malformed"},
		{"four parts", valid + ".AAAA", false, 401, "malformed"},
		{"binary", "\x00\xff\xfe.\x01.\x02", false, 401, "malformed"},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("RS256")) + "." + parts[1] + "." + parts[2], false, 401, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := auth
			if tt.roles {
				a = withRole
			}
			authDenied(t, a, tt.token, tt.status, tt.reason)
		})
	}
	for _, l := range []*lockedBuffer{logs, roleLogs} {
		for _, tt := range tests {
			if leaks(l.String(), tt.token) {
				t.Errorf("the log holds the token of %q", tt.name)
			}
		}
	}
}

// nonCanonical returns a different last character for tok that decodes to
// the same bytes when trailing bits are ignored, or the last character if
// there is none (then the test token is unchanged and still valid: caught).
func nonCanonical(tok string) string {
	last := tok[len(tok)-1]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, last)
	// A 256-byte RSA signature is 342 base64url characters: the last one
	// carries 2 bits and 4 ignored ones.
	return string(alphabet[i^1])
}

func TestEntraTenantNotAllowedMakesNoRequest(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t, clock, testKeys()[0])
	auth, _ := newTestEntra(t, idp, clock, nil)
	for range 20 {
		tok := idp.mint(t, emulator.TokenSpec{Version: 2, Audience: testAudience, TenantID: otherTenant,
			Issuer: idp.srv.URL + "/" + otherTenant + "/v2.0"})
		authDenied(t, auth, tok, http.StatusUnauthorized, "tenant not allowed")
	}
	if n := idp.Requests(); n != 0 {
		t.Errorf("%d requests to the IdP for a tenant that is not allowed, want 0", n)
	}
}

func TestNewEntraValidates(t *testing.T) {
	ok := EntraConfig{Authority: "https://login.microsoftonline.com", Tenants: []string{testTenant}, Audiences: []string{testAudience}}
	if _, err := NewEntra(ok, nil); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mod := range map[string]func(*EntraConfig){
		"no tenants":            func(c *EntraConfig) { c.Tenants = nil },
		"tenant by domain name": func(c *EntraConfig) { c.Tenants = []string{"contoso.onmicrosoft.com"} },
		"tenant common":         func(c *EntraConfig) { c.Tenants = []string{"common"} },
		"no audiences":          func(c *EntraConfig) { c.Audiences = nil },
		"empty audience":        func(c *EntraConfig) { c.Audiences = []string{""} },
		"no authority":          func(c *EntraConfig) { c.Authority = "" },
		"http off loopback":     func(c *EntraConfig) { c.Authority = "http://login.microsoftonline.com" },
		"authority with query":  func(c *EntraConfig) { c.Authority = "https://login.microsoftonline.com/?x=1" },
		"not a URL":             func(c *EntraConfig) { c.Authority = "login.microsoftonline.com" },
	} {
		c := ok
		mod(&c)
		if _, err := NewEntra(c, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := ok
	c.Authority = "http://127.0.0.1:8089/"
	if _, err := NewEntra(c, nil); err != nil {
		t.Errorf("http on loopback: %v", err)
	}
}

func TestLooksLikeJWT(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t, clock, testKeys()[0])
	valid := idp.mint(t, userSpec())
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + ".e30."
	for s, want := range map[string]bool{
		valid:                               true,
		none:                                true,
		"":                                  false,
		"tapline_abcDEF123":                 false,
		"a.b.c":                             false, // header is not JSON
		valid + ".x":                        false,
		strings.Replace(valid, ".", "+", 1): false,
		"e30.e30.":                          false, // {} has no alg
		base64.RawURLEncoding.EncodeToString([]byte(`{"alg":1}`)) + ".e30.":    false,
		base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256"}`)) + "..": false, // empty payload
		"0123456789abcdef0123456789abcdef":                                     false, // an Azure OpenAI key
	} {
		if got := LooksLikeJWT(s); got != want {
			t.Errorf("LooksLikeJWT(%.40q) = %v, want %v", s, got, want)
		}
	}
}
