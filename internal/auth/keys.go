// Package auth identifies the callers of the gateway, by gateway key or by
// Entra ID token. An authenticator returns an error only for technical
// failures; bad credentials are a Result that is not OK.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/record"
)

// KeyPrefix starts every gateway key, so that secret scanners and people
// can tell one from an Azure OpenAI key.
const KeyPrefix = "tapline_"

// Result is the outcome of authenticating one request. When OK is false,
// Status (401 or 403) and Reason say why, in words safe to show the caller:
// they never contain the credential.
type Result struct {
	OK        bool
	Principal record.Principal
	Status    int
	Reason    string
}

// Keys authenticates callers by gateway key, presented as `api-key: KEY` or
// `Authorization: Bearer KEY`. Only SHA-256 hashes are held (DESIGN.md §6).
type Keys struct {
	keys []key
}

type key struct {
	name string
	hash [32]byte
}

// NewKeys builds the key table from configuration (hashes already validated).
func NewKeys(cfg []config.Key) (*Keys, error) {
	k := &Keys{}
	for _, c := range cfg {
		raw, err := hex.DecodeString(strings.TrimPrefix(c.Hash, "sha256:"))
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("key %q: hash is not sha256:<64 hex>", c.Name)
		}
		var h [32]byte
		copy(h[:], raw)
		k.keys = append(k.keys, key{name: c.Name, hash: h})
	}
	return k, nil
}

// Verify checks a gateway key presented in the named header.
func (k *Keys) Verify(cred, where string) Result {
	h := sha256.Sum256([]byte(cred))
	match := -1
	for i := range k.keys {
		// Every configured hash is compared, in constant time, whatever matched.
		if subtle.ConstantTimeCompare(h[:], k.keys[i].hash[:]) == 1 {
			match = i
		}
	}
	if match >= 0 {
		return Result{OK: true, Principal: record.Principal{Kind: record.PrincipalKey, KeyName: k.keys[match].name}}
	}
	if !strings.HasPrefix(cred, KeyPrefix) {
		return deny(http.StatusUnauthorized, "the credential in the "+where+" header is not a Tapline gateway key; "+
			"Azure OpenAI keys and tokens are not accepted here and are never forwarded")
	}
	return deny(http.StatusUnauthorized, "invalid gateway key in the "+where+" header")
}

func deny(status int, reason string) Result {
	return Result{Status: status, Reason: reason}
}

// credential returns the presented secret and the header it came in.
func credential(r *http.Request) (string, string) {
	if v, ok := r.Header["Api-Key"]; ok && len(v) > 0 {
		return strings.TrimSpace(v[0]), "api-key"
	}
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, rest, _ := strings.Cut(v, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", "Authorization (not a Bearer credential)"
		}
		return strings.TrimSpace(rest), "Authorization"
	}
	return "", ""
}

// NewKey returns a new random gateway key (256 bits) and the configuration
// form of its hash.
func NewKey() (keyText, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("read random: %w", err)
	}
	keyText = KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return keyText, HashKey(keyText), nil
}

// HashKey returns the configuration form of a key's hash.
func HashKey(keyText string) string {
	return config.HashKey(sha256.Sum256([]byte(keyText)))
}
