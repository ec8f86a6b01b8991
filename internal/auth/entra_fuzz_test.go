package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/emulator"
)

// FuzzAuthenticate: no input panics, none but the genuine tokens is
// accepted, refusals are 401 or 403 with a reason that does not echo the
// input, and with the keys cached no input causes a technical error.
func FuzzAuthenticate(f *testing.F) {
	clock := newTestClock()
	idp := newTestIdP(f, clock, testKeys()[0])
	auth, _ := newTestEntra(f, idp, clock, func(c *EntraConfig) { c.RequiredRoles = []string{testRole} })
	app := emulator.TokenSpec{Version: 1, App: true, Audience: testAudience, Roles: []string{testRole}}
	v2 := userSpec()
	v2.Roles = []string{testRole}
	genuine := map[string]bool{idp.mint(f, app): true, idp.mint(f, v2): true}
	for tok := range genuine {
		authOK(f, auth, tok) // warm the cache: from here on the fuzzer costs the IdP nothing
		f.Add(tok)
		parts := strings.Split(tok, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(parts[0] + ".." + parts[2])
		f.Add(tok[:len(tok)-1])
	}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"` + idp.SigningKid() + `"}`))
	claims, _ := json.Marshal(map[string]any{"tid": testTenant, "aud": testAudience, "exp": 1 << 40, "roles": []string{testRole}})
	f.Add(none + "." + base64.RawURLEncoding.EncodeToString(claims) + ".")
	for _, s := range []string{"", ".", "..", "a.b.c", "e30.e30.e30", "tapline_x", "\x00", strings.Repeat("A", MaxTokenBytes+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		res, err := auth.Authenticate(context.Background(), s)
		if err != nil {
			t.Fatalf("technical error with the keys cached: %v", err)
		}
		if res.OK {
			if !genuine[s] {
				t.Fatalf("accepted a token the IdP never issued: %q", s)
			}
			return
		}
		if res.Status != http.StatusUnauthorized && res.Status != http.StatusForbidden {
			t.Fatalf("status %d", res.Status)
		}
		// Reasons are fixed texts, so none can carry the input.
		if !fixedReasons[res.Reason] {
			t.Fatalf("reason %q for %q", res.Reason, s)
		}
	})
}

var fixedReasons = map[string]bool{
	reasonEmpty: true, reasonTooLong: true, reasonMalformed: true, reasonAlg: true, reasonNoTenant: true,
	reasonTenant: true, reasonNoKid: true, reasonUnknownKey: true, reasonSignature: true, reasonExpired: true,
	reasonNotYet: true, reasonAudience: true, reasonMissing: true, reasonClaims: true, reasonIssuer: true,
	reasonVersion: true, "missing role " + testRole: true,
}

// FuzzLooksLikeJWT: no input panics, and whatever LooksLikeJWT accepts has
// three parts and a header with an alg.
func FuzzLooksLikeJWT(f *testing.F) {
	clock := newTestClock()
	idp := newTestIdP(f, clock, testKeys()[0])
	f.Add(idp.mint(f, userSpec()))
	for _, s := range []string{"", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "tapline_abc", "e30.e30.", "...", "eyJhbGciOjF9.e30."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !LooksLikeJWT(s) {
			return
		}
		parts := strings.Split(s, ".")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
			t.Fatalf("accepted %q", s)
		}
		raw, err := base64.RawURLEncoding.DecodeString(parts[0])
		var hdr map[string]any
		if err != nil || json.Unmarshal(raw, &hdr) != nil {
			t.Fatalf("accepted %q: header %q", s, raw)
		}
		if _, ok := hdr["alg"].(string); !ok {
			t.Fatalf("accepted %q: no string alg in %q", s, raw)
		}
	})
}
