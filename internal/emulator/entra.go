package emulator

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" // x5t is the SHA-1 thumbprint of the certificate (RFC 7517 §4.8)
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// entraKeyBits is the size of the emulator's RSA signing keys, as Entra's.
const entraKeyBits = 2048

// EntraConfig configures an Entra ID (Microsoft identity platform) stand-in.
type EntraConfig struct {
	// TenantID is the one tenant the emulator knows; discovery for any
	// other answers 400 invalid_tenant.
	TenantID string
	// Now is the clock used for token times; nil means time.Now.
	Now func() time.Time
	// Key, when set, is the first signing key (it must be RSA, 2048 bits or
	// more). Nil generates a 2048-bit key, which takes a noticeable fraction
	// of a second: tests share one key to stay fast.
	Key *rsa.PrivateKey
}

// Entra is an http.Handler standing in for login.microsoftonline.com for one
// tenant: OpenID discovery (v1 and v2), the signing keys (JWKS), and Mint,
// which issues access tokens the way Entra shapes them
// (azure-contracts.md §8). It is safe for concurrent use.
type Entra struct {
	tenant   string
	now      func() time.Time
	log      *slog.Logger
	requests atomic.Int64

	mu     sync.Mutex
	base   string      // for the v2 issuer of minted tokens
	keys   []*entraKey // published, oldest first
	signer *entraKey   // signs minted tokens; normally the newest key
}

var _ http.Handler = (*Entra)(nil)

// entraKey is one signing key with the self-signed certificate Entra
// publishes alongside it (x5c); kid and x5t are both the certificate's
// SHA-1 thumbprint, as in Entra's key sets.
type entraKey struct {
	kid  string
	priv *rsa.PrivateKey
	cert []byte // DER
}

// NewEntra returns an Entra stand-in for cfg.TenantID.
func NewEntra(cfg EntraConfig, log *slog.Logger) (*Entra, error) {
	if cfg.TenantID == "" || strings.ContainsAny(cfg.TenantID, "/?#% \t\r\n") {
		return nil, fmt.Errorf("entra emulator: tenant id %q is empty or not a path segment", cfg.TenantID)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Entra{tenant: cfg.TenantID, now: cfg.Now, log: log.With("component", "emulator.entra")}
	if e.now == nil {
		e.now = time.Now
	}
	priv := cfg.Key
	if priv == nil {
		var err error
		if priv, err = rsa.GenerateKey(rand.Reader, entraKeyBits); err != nil {
			return nil, fmt.Errorf("entra emulator: generate key: %w", err)
		}
	} else if priv.N.BitLen() < entraKeyBits {
		return nil, fmt.Errorf("entra emulator: key has %d bits, want at least %d", priv.N.BitLen(), entraKeyBits)
	}
	k, err := newEntraKey(priv, e.now())
	if err != nil {
		return nil, err
	}
	e.keys = []*entraKey{k}
	e.signer = k
	return e, nil
}

func newEntraKey(priv *rsa.PrivateKey, now time.Time) (*entraKey, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, fmt.Errorf("entra emulator: certificate serial: %w", err)
	}
	// Entra's published certificates are self-signed, CN
	// accounts.accesscontrol.windows.net, valid five years (3P: the live key
	// set as snapshotted in panva/wellknown issuers/entra-common).
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "accounts.accesscontrol.windows.net"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, fmt.Errorf("entra emulator: self-sign certificate: %w", err)
	}
	sum := sha1.Sum(der)
	return &entraKey{kid: base64.RawURLEncoding.EncodeToString(sum[:]), priv: priv, cert: der}, nil
}

// TenantID returns the tenant the emulator serves.
func (e *Entra) TenantID() string { return e.tenant }

// SetBaseURL sets the emulator's own base URL (http://127.0.0.1:PORT), used
// as the v2 issuer's host in minted tokens. Documents served over HTTP take
// their base from the request instead.
func (e *Entra) SetBaseURL(base string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.base = strings.TrimRight(base, "/")
}

// Rotate adds a new 2048-bit signing key, publishes it next to the old ones
// and signs with it from now on. It returns the new key's kid.
func (e *Entra) Rotate() (kid string) {
	priv, err := rsa.GenerateKey(rand.Reader, entraKeyBits)
	if err != nil {
		panic(fmt.Sprintf("entra emulator: generate key: %v", err)) // crypto/rand does not fail
	}
	k, err := newEntraKey(priv, e.now())
	if err != nil {
		panic(err.Error())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.keys = append(e.keys, k)
	e.signer = k
	e.log.Info("signing key rotated", "kid", k.kid)
	return k.kid
}

// Remove stops publishing the key kid. If it is the current signing key it
// keeps signing, so that tests can mint tokens whose key is gone.
func (e *Entra) Remove(kid string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	kept := e.keys[:0]
	for _, k := range e.keys {
		if k.kid != kid {
			kept = append(kept, k)
		}
	}
	clear(e.keys[len(kept):])
	e.keys = kept
}

// Kids returns the kids published now, oldest first.
func (e *Entra) Kids() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, len(e.keys))
	for i, k := range e.keys {
		out[i] = k.kid
	}
	return out
}

// SigningKid returns the kid of the key Mint signs with.
func (e *Entra) SigningKid() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.signer.kid
}

// Requests returns how many requests the handler has served (discovery and
// key sets, and anything else that reached it), to prove callers cache.
func (e *Entra) Requests() int { return int(e.requests.Load()) }

// ServeHTTP serves:
//
//	GET /{tenant}/v2.0/.well-known/openid-configuration   v2 discovery
//	GET /{tenant}/.well-known/openid-configuration        v1 discovery
//	GET /{tenant}/discovery/v2.0/keys                     the v2 jwks_uri
//	GET /common/discovery/keys                            the v1 jwks_uri (every tenant's v1 document points here)
//	GET /common/discovery/v2.0/keys                       the multi-tenant v2 key set
//
// Discovery for any other tenant, including the multi-tenant "common" and
// "organizations" documents that Entra does serve, answers 400
// invalid_tenant; other paths 404.
func (e *Entra) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.requests.Add(1)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	base := "http://" + r.Host
	if r.TLS != nil {
		base = "https://" + r.Host
	}
	seg := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(seg) == 3 && seg[0] == "common" && seg[1] == "discovery" && seg[2] == "keys":
		e.writeJSON(w, http.StatusOK, e.keySet(""))
		return
	case len(seg) == 4 && seg[0] == "common" && seg[1] == "discovery" && seg[2] == "v2.0" && seg[3] == "keys":
		// The multi-tenant key set carries the issuer template per key (3P, panva/wellknown).
		e.writeJSON(w, http.StatusOK, e.keySet("https://login.microsoftonline.com/{tenantid}/v2.0"))
		return
	}
	var doc any
	switch {
	case len(seg) == 4 && seg[1] == "v2.0" && seg[2] == ".well-known" && seg[3] == "openid-configuration":
		doc = e.discoveryV2(base)
	case len(seg) == 3 && seg[1] == ".well-known" && seg[2] == "openid-configuration":
		doc = e.discoveryV1(base)
	case len(seg) == 4 && seg[1] == "discovery" && seg[2] == "v2.0" && seg[3] == "keys":
		doc = e.keySet(base + "/" + e.tenant + "/v2.0")
	default:
		http.NotFound(w, r)
		return
	}
	if !strings.EqualFold(seg[0], e.tenant) {
		e.writeInvalidTenant(w, base, seg[0])
		return
	}
	e.writeJSON(w, http.StatusOK, doc)
}

// writeInvalidTenant answers as Entra does for a tenant it does not know.
// The body's shape is quoted verbatim in public issues (3P: Azure/azure-cli
// #22145, james-gould/azure-keyvault-emulator #324); the status code 400 is
// INFERRED (the quotes show the body, not the status line).
func (e *Entra) writeInvalidTenant(w http.ResponseWriter, base, tenant string) {
	now := e.now().UTC().Format("2006-01-02 15:04:05Z")
	trace, corr := uuid.NewString(), uuid.NewString()
	e.writeJSON(w, http.StatusBadRequest, map[string]any{
		"error": "invalid_tenant",
		"error_description": "AADSTS90002: Tenant '" + tenant + "' not found. Check to make sure you have the correct tenant ID " +
			"and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are " +
			"no active subscriptions for the tenant.\r\nTrace ID: " + trace + "\r\nCorrelation ID: " + corr + "\r\nTimestamp: " + now,
		"error_codes":    []int{90002},
		"timestamp":      now,
		"trace_id":       trace,
		"correlation_id": corr,
		"error_uri":      base + "/error?code=90002",
	})
}

func (e *Entra) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Headers as recorded (entra-openid-configuration-v2.recorded.json), cookies left out.
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "max-age=86400, private")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// entraJWK is one key as Entra publishes it. issuer appears only in the v2
// key sets (3P, panva/wellknown issuers/entra-common); that the
// tenant-specific v2 set carries the tenant's own issuer there is INFERRED.
type entraJWK struct {
	Kty    string   `json:"kty"`
	Use    string   `json:"use"`
	Kid    string   `json:"kid"`
	X5t    string   `json:"x5t"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X5c    []string `json:"x5c"`
	Issuer string   `json:"issuer,omitempty"`
}

func (e *Entra) keySet(issuer string) map[string][]entraJWK {
	e.mu.Lock()
	defer e.mu.Unlock()
	keys := make([]entraJWK, 0, len(e.keys))
	for _, k := range e.keys {
		pub := k.priv.PublicKey
		keys = append(keys, entraJWK{
			Kty:    "RSA",
			Use:    "sig",
			Kid:    k.kid,
			X5t:    k.kid,
			N:      base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			E:      base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
			X5c:    []string{base64.StdEncoding.EncodeToString(k.cert)},
			Issuer: issuer,
		})
	}
	return map[string][]entraJWK{"keys": keys}
}

// errEntraNoBase is returned by Mint for a v2 token before the base URL is known.
var errEntraNoBase = errors.New("entra emulator: base URL unknown: call SetBaseURL or use ListenEntra")
