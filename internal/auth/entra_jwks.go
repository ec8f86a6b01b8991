package auth

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	// entraFetchTimeout bounds one discovery or key set request.
	entraFetchTimeout = 10 * time.Second
	// entraFailRetry spaces attempts while a tenant's keys were never
	// loaded, so an outage at start-up costs seconds of 503s, not MinRefresh.
	entraFailRetry = 5 * time.Second
	// entraMaxDocBytes caps discovery documents and key sets (Entra's are ~10 KiB).
	entraMaxDocBytes = 1 << 20
	// entraMinKeyBits rejects published RSA keys weaker than Entra's own.
	entraMinKeyBits = 2048
)

// entraTenant is the cached discovery result and key set of one tenant.
type entraTenant struct {
	id string

	mu          sync.Mutex
	issuerV2    string // from discovery
	jwksURI     string // from discovery
	keys        map[string]*rsa.PublicKey
	fetchedAt   time.Time // of keys; zero: never loaded
	lastAttempt time.Time // of the latest fetch, for MinRefresh
	lastErr     error     // of the latest completed fetch; nil if it succeeded
	inflight    *keyFetch // the fetch every caller waits on, if one runs
}

// keyFetch is one fetch of a tenant's keys that concurrent callers share.
type keyFetch struct {
	done chan struct{}
	err  error // set before done is closed
}

func (t *entraTenant) issuer() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.issuerV2
}

// signingKey returns the tenant's key kid, fetching the key set when it is
// not loaded yet, when kid is unknown (at most once per MinRefresh), or when
// it is older than MaxKeyAge. It returns errUnknownKey when the current set
// has no such kid, and an error wrapping ErrKeysUnavailable when the set
// could not be fetched and kid is not cached. Concurrent callers share one
// fetch.
func (e *Entra) signingKey(ctx context.Context, t *entraTenant, kid string) (*rsa.PublicKey, error) {
	for attempt := 0; ; attempt++ {
		t.mu.Lock()
		now := e.now()
		key, have := t.keys[kid]
		if have && now.Sub(t.fetchedAt) < e.maxKeyAge {
			t.mu.Unlock()
			return key, nil
		}
		f, started := t.inflight, false
		if f == nil && attempt == 0 && e.mayFetch(t, now) {
			f, started = e.startFetch(ctx, t, now), true
		}
		lastErr := t.lastErr
		t.mu.Unlock()

		if have && !started {
			// An old set: someone else is refreshing it, or the refresh
			// failed and may not be retried yet. The key was Entra's a moment
			// ago; serve it rather than fail.
			return key, nil
		}
		if f == nil || attempt > 0 {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, errUnknownKey
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for entra signing keys: %w", context.Cause(ctx))
		}
	}
}

// mayFetch reports whether a fetch may start now (t.mu held).
func (e *Entra) mayFetch(t *entraTenant, now time.Time) bool {
	if t.lastAttempt.IsZero() {
		return true
	}
	gap := e.minRefresh
	if t.fetchedAt.IsZero() {
		gap = min(gap, entraFailRetry)
	}
	return now.Sub(t.lastAttempt) >= gap
}

// startFetch starts fetching t's keys (t.mu held). The fetch runs on a
// context cut loose from the caller's, so that one caller giving up does not
// fail the others waiting on it.
func (e *Entra) startFetch(ctx context.Context, t *entraTenant, now time.Time) *keyFetch {
	f := &keyFetch{done: make(chan struct{})}
	t.inflight = f
	t.lastAttempt = now
	go e.fetch(context.WithoutCancel(ctx), t, f, now)
	return f
}

func (e *Entra) fetch(ctx context.Context, t *entraTenant, f *keyFetch, started time.Time) {
	ctx, cancel := context.WithTimeout(ctx, entraFetchTimeout)
	defer cancel()
	keys, skipped, err := e.load(ctx, t)

	t.mu.Lock()
	wasFailing := t.lastErr != nil
	if err != nil {
		t.lastErr = fmt.Errorf("%w: tenant %s: %w", ErrKeysUnavailable, t.id, err)
	} else {
		t.keys, t.fetchedAt, t.lastErr = keys, started, nil
	}
	f.err = t.lastErr
	t.inflight = nil
	t.mu.Unlock()
	// Waiters are released only after the outcome is logged, so that what a
	// caller saw fail is already in the log when its call returns.
	defer close(f.done)

	// Log the first failure and the recovery, not every repeat.
	switch {
	case err != nil && !wasFailing:
		e.log.Warn("fetch entra signing keys", "tenant", t.id, "err", err)
	case err == nil && wasFailing:
		e.log.Info("entra signing keys reachable again", "tenant", t.id, "keys", len(keys))
	case err == nil:
		e.log.Debug("entra signing keys fetched", "tenant", t.id, "keys", len(keys), "skipped", skipped)
	}
}

// load fetches discovery (once) and then the key set.
func (e *Entra) load(ctx context.Context, t *entraTenant) (map[string]*rsa.PublicKey, int, error) {
	t.mu.Lock()
	jwksURI := t.jwksURI
	t.mu.Unlock()
	if jwksURI == "" {
		iss, uri, err := e.discover(ctx, t.id)
		if err != nil {
			return nil, 0, err
		}
		t.mu.Lock()
		t.issuerV2, t.jwksURI = iss, uri
		t.mu.Unlock()
		jwksURI = uri
	}
	body, err := e.get(ctx, jwksURI)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch key set: %w", err)
	}
	keys, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, 0, fmt.Errorf("read key set %s: %w", jwksURI, err)
	}
	return keys, skipped, nil
}

// discover reads the tenant's v2 OpenID configuration: its issuer and
// jwks_uri. The v1 document is not needed: Entra signs v1 and v2 tokens with
// the same keys, and its jwks_uri (/common/discovery/keys) is not
// tenant-specific anyway (azure-contracts.md §8).
func (e *Entra) discover(ctx context.Context, tenant string) (issuer, jwksURI string, err error) {
	u := e.authority + "/" + url.PathEscape(tenant) + "/v2.0/.well-known/openid-configuration"
	body, err := e.get(ctx, u)
	if err != nil {
		return "", "", fmt.Errorf("fetch openid configuration: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", "", fmt.Errorf("read openid configuration %s: %w", u, err)
	}
	if doc.Issuer == "" || !strings.Contains(strings.ToLower(doc.Issuer), tenant) {
		return "", "", fmt.Errorf("openid configuration %s: issuer %q does not name the tenant", u, doc.Issuer)
	}
	if _, err := checkEndpoint(doc.JWKSURI); err != nil {
		return "", "", fmt.Errorf("openid configuration %s: jwks_uri: %w", u, err)
	}
	return doc.Issuer, doc.JWKSURI, nil
}

func (e *Entra) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, entraMaxDocBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	if len(body) > entraMaxDocBytes {
		return nil, fmt.Errorf("GET %s: body over %d bytes", u, entraMaxDocBytes)
	}
	return body, nil
}

// jwk is the part of a JSON Web Key (RFC 7517) that RSA signature keys use.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// parseJWKS reads a key set and returns its RSA signing keys by kid,
// counting the keys it skipped: other key types, other uses or algorithms,
// keys without a kid, keys under 2048 bits, and repeated kids (the first
// wins). A set with no usable key is an error.
func parseJWKS(body []byte) (map[string]*rsa.PublicKey, int, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, 0, err
	}
	keys := make(map[string]*rsa.PublicKey, len(set.Keys))
	skipped := 0
	for _, raw := range set.Keys {
		var k jwk
		if json.Unmarshal(raw, &k) != nil || k.Kty != "RSA" || k.Kid == "" ||
			(k.Use != "" && k.Use != "sig") || (k.Alg != "" && k.Alg != "RS256") {
			skipped++
			continue
		}
		if _, dup := keys[k.Kid]; dup {
			skipped++
			continue
		}
		pub, err := rsaKey(k.N, k.E)
		if err != nil {
			skipped++
			continue
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("no usable RSA signing key")
	}
	return keys, skipped, nil
}

// rsaKey builds a public key from a JWK's base64url n and e.
func rsaKey(n64, e64 string) (*rsa.PublicKey, error) {
	nb, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(n64, "="))
	if err != nil {
		return nil, fmt.Errorf("modulus: %w", err)
	}
	eb, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(e64, "="))
	if err != nil {
		return nil, fmt.Errorf("exponent: %w", err)
	}
	n := new(big.Int).SetBytes(nb)
	if n.BitLen() < entraMinKeyBits {
		return nil, fmt.Errorf("modulus of %d bits, want at least %d", n.BitLen(), entraMinKeyBits)
	}
	if len(eb) == 0 || len(eb) > 4 {
		return nil, errors.New("exponent out of range")
	}
	var exp int64
	for _, b := range eb {
		exp = exp<<8 | int64(b)
	}
	if exp < 3 || exp%2 == 0 || exp > 1<<31-1 {
		return nil, fmt.Errorf("exponent %d out of range", exp)
	}
	return &rsa.PublicKey{N: n, E: int(exp)}, nil
}
