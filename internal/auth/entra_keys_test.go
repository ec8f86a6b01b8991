package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/emulator"
)

func TestEntraCaching(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t, clock, testKeys()[0])
	auth, _ := newTestEntra(t, idp, clock, nil)
	tok := idp.mint(t, userSpec())
	for range 1000 {
		authOK(t, auth, tok)
	}
	if n := idp.Requests(); n != 2 {
		t.Errorf("1000 validations made %d IdP requests, want 2 (discovery, keys)", n)
	}

	// Cold and concurrent: the callers share one discovery and one key fetch.
	cold, _ := newTestEntra(t, idp, clock, nil)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { authOK(t, cold, tok) })
	}
	wg.Wait()
	if n := idp.Requests(); n != 4 {
		t.Errorf("50 concurrent first validations made %d more IdP requests, want 2", n-2)
	}
}

func TestEntraKeyRotation(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t, clock, testKeys()[0])
	auth, _ := newTestEntra(t, idp, clock, nil)
	oldKid := idp.SigningKid()
	oldTok := idp.mint(t, userSpec())
	authOK(t, auth, oldTok)
	base := idp.Requests()

	newKid := idp.Rotate()
	newTok := idp.mint(t, userSpec())
	// Right after the first fetch a refresh is not due yet (MinRefresh): the
	// new kid is unknown for now, and asking costs no request.
	authDenied(t, auth, newTok, http.StatusUnauthorized, "unknown signing key")
	if n := idp.Requests() - base; n != 0 {
		t.Fatalf("%d requests within MinRefresh of the first fetch", n)
	}
	clock.Advance(DefaultEntraMinRefresh)
	authOK(t, auth, newTok)
	if n := idp.Requests() - base; n != 1 {
		t.Errorf("the new kid cost %d requests, want 1 key set refresh", n)
	}
	authOK(t, auth, oldTok) // still published, still good

	idp.Remove(oldKid)
	clock.Advance(DefaultEntraMinRefresh)
	// Any unknown kid triggers the refresh that learns the old key is gone.
	authDenied(t, auth, idp.mint(t, emulator.TokenSpec{Version: 2, Audience: testAudience, Kid: "whatever"}),
		http.StatusUnauthorized, "unknown signing key")
	authDenied(t, auth, oldTok, http.StatusUnauthorized, "unknown signing key")
	authOK(t, auth, newTok)
	if newKid == oldKid {
		t.Fatal("Rotate reused the kid")
	}
}

func TestEntraRefreshRateLimit(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t, clock, testKeys()[0])
	auth, _ := newTestEntra(t, idp, clock, nil)
	authOK(t, auth, idp.mint(t, userSpec()))
	clock.Advance(DefaultEntraMinRefresh) // a refresh is allowed again
	base := idp.Requests()

	forged := make([]string, 100)
	for i := range forged {
		b := make([]byte, 20)
		_, _ = rand.Read(b)
		forged[i] = idp.mint(t, emulator.TokenSpec{Version: 2, Audience: testAudience, Kid: hex.EncodeToString(b)})
	}
	var wg sync.WaitGroup
	for _, tok := range forged {
		wg.Go(func() { authDenied(t, auth, tok, http.StatusUnauthorized, "unknown signing key") })
	}
	wg.Wait()
	if n := idp.Requests() - base; n > 1 {
		t.Errorf("100 forged kids caused %d key set fetches, want at most 1", n)
	}
	base = idp.Requests()
	for _, tok := range forged[:10] {
		authDenied(t, auth, tok, http.StatusUnauthorized, "unknown signing key")
	}
	if n := idp.Requests() - base; n != 0 {
		t.Errorf("forged kids within MinRefresh caused %d fetches, want 0", n)
	}

	clock.Advance(DefaultEntraMinRefresh - time.Second)
	authDenied(t, auth, forged[0], http.StatusUnauthorized, "unknown signing key")
	if n := idp.Requests() - base; n != 0 {
		t.Errorf("a refresh before MinRefresh passed: %d fetches", n)
	}
	clock.Advance(time.Second)
	authDenied(t, auth, forged[0], http.StatusUnauthorized, "unknown signing key")
	if n := idp.Requests() - base; n != 1 {
		t.Errorf("after MinRefresh an unknown kid caused %d fetches, want 1", n)
	}
}

func TestEntraIdPUnreachable(t *testing.T) {
	t.Run("cold", func(t *testing.T) {
		clock := newTestClock()
		idp := newTestIdP(t, clock, testKeys()[0])
		auth, logs := newTestEntra(t, idp, clock, nil)
		tok := idp.mint(t, userSpec())
		idp.srv.Close()
		for range 3 { // the first fails on the network, the next on the remembered failure
			res, err := auth.Authenticate(context.Background(), tok)
			if err == nil || res.OK || res.Status != 0 {
				t.Fatalf("Authenticate = %+v, %v; want a technical error", res, err)
			}
			if !errors.Is(err, ErrKeysUnavailable) || strings.Contains(err.Error(), tok) {
				t.Errorf("error %q", err)
			}
		}
		if strings.Count(logs.String(), "level=WARN") != 1 {
			t.Errorf("want the failure logged once:\n%s", logs.String())
		}
	})
	t.Run("warm", func(t *testing.T) {
		clock := newTestClock()
		idp := newTestIdP(t, clock, testKeys()[0])
		auth, _ := newTestEntra(t, idp, clock, nil)
		long := userSpec()
		long.Expiry = clock.Now().Add(2 * DefaultEntraMaxKeyAge)
		tok := idp.mint(t, long)
		forged := idp.mint(t, emulator.TokenSpec{Version: 2, Audience: testAudience, Kid: "not-cached"})
		authOK(t, auth, tok)
		idp.srv.Close()

		authOK(t, auth, tok) // a cached kid needs no IdP
		clock.Advance(DefaultEntraMinRefresh)
		res, err := auth.Authenticate(context.Background(), forged)
		if err == nil || res.OK {
			t.Fatalf("unknown kid with the IdP down: %+v, %v; want a technical error", res, err)
		}
		authOK(t, auth, tok)
		// Past MaxKeyAge the refresh fails: the cached set is kept.
		clock.Advance(DefaultEntraMaxKeyAge)
		authOK(t, auth, tok)
		authOK(t, auth, tok)
	})
}

// TestEntraMaxKeyAge: an old key set is refreshed by the next token, so a
// key the IdP withdrew stops being accepted even if no unknown kid arrives.
func TestEntraMaxKeyAge(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t, clock, testKeys()[0])
	auth, _ := newTestEntra(t, idp, clock, nil)
	oldKid := idp.SigningKid()
	oldTok := idp.mint(t, userSpec())
	authOK(t, auth, oldTok)
	idp.Rotate()
	idp.Remove(oldKid)
	authOK(t, auth, oldTok) // cached and young
	base := idp.Requests()

	clock.Advance(DefaultEntraMaxKeyAge)
	// A fresh token signed by the withdrawn key (its private half is ours).
	withdrawn := signRS256(t, testKeys()[0], map[string]any{"kid": oldKid}, baseClaims(idp, clock))
	authDenied(t, auth, withdrawn, http.StatusUnauthorized, "unknown signing key")
	if n := idp.Requests() - base; n != 1 {
		t.Errorf("an old key set cost %d fetches, want 1", n)
	}
	authOK(t, auth, idp.mint(t, userSpec())) // the new key, fetched with the refresh
}

// TestEntraWaitHonoursContext: a caller whose context ends stops waiting for
// a slow IdP; the fetch goes on for the others.
func TestEntraWaitHonoursContext(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t, clock, testKeys()[0])
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		r.Host = strings.TrimPrefix(idp.srv.URL, "http://") // documents name the emulator
		idp.ServeHTTP(w, r)
	}))
	defer slow.Close()
	auth, err := NewEntra(EntraConfig{Authority: slow.URL, Tenants: []string{testTenant}, Audiences: []string{testAudience},
		HTTPClient: slow.Client(), Now: clock.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok := idp.mint(t, userSpec())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := auth.Authenticate(ctx, tok)
		done <- err
	}()
	other := make(chan Result)
	go func() {
		res, _ := auth.Authenticate(context.Background(), tok)
		other <- res
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v", err)
	}
	close(release)
	if res := <-other; !res.OK {
		t.Errorf("patient caller: %+v", res)
	}
}

func TestParseJWKS(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t, clock, testKeys()[0])
	resp, err := http.Get(idp.srv.URL + "/common/discovery/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	good := string(body)
	keys, skipped, err := parseJWKS([]byte(good))
	if err != nil || len(keys) != 1 || skipped != 0 || keys[idp.SigningKid()] == nil ||
		!keys[idp.SigningKid()].Equal(&testKeys()[0].PublicKey) {
		t.Fatalf("parseJWKS(emulator set) = %v, %d, %v", keys, skipped, err)
	}

	k := `"n":"` + strings.Split(strings.Split(good, `"n":"`)[1], `"`)[0] + `"`
	set := `{"keys":[
		{"kty":"EC","use":"sig","kid":"ec","crv":"P-256","x":"AA","y":"AA"},
		{"kty":"RSA","use":"enc","kid":"enc",` + k + `,"e":"AQAB"},
		{"kty":"RSA","alg":"RS512","kid":"rs512",` + k + `,"e":"AQAB"},
		{"kty":"RSA","use":"sig",` + k + `,"e":"AQAB"},
		{"kty":"RSA","use":"sig","kid":"small","n":"AQAB","e":"AQAB"},
		{"kty":"RSA","use":"sig","kid":"even-e",` + k + `,"e":"Ag"},
		{"kty":"RSA","use":"sig","kid":"huge-e",` + k + `,"e":"AQAAAAAB"},
		{"kty":"RSA","use":"sig","kid":"bad-n","n":"!!","e":"AQAB"},
		{"kty":"RSA","use":"sig","kid":"good",` + k + `,"e":"AQAB"},
		{"kty":"RSA","use":"sig","kid":"good",` + k + `,"e":"Aw"},
		"not an object"
	]}`
	keys, skipped, err = parseJWKS([]byte(set))
	if err != nil || len(keys) != 1 || keys["good"] == nil || keys["good"].E != 65537 || skipped != 10 {
		t.Errorf("parseJWKS(mixed) = %v, skipped %d, %v", keys, skipped, err)
	}
	for _, bad := range []string{`{"keys":[]}`, `{}`, `[]`, `nope`, `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`} {
		if _, _, err := parseJWKS([]byte(bad)); err == nil {
			t.Errorf("parseJWKS(%s): no error", bad)
		}
	}
}
