package emulator

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Defaults Mint fills in when a TokenSpec leaves them empty.
const (
	EntraDefaultAppID = "7d3c1a52-7a4e-4f3b-9c1e-2b5d8e6f0a11" // the calling client application
	EntraDefaultScope = "user_impersonation"                   // scp of user tokens
	entraTokenLife    = time.Hour                              // Entra issues 60 to 90 minutes (DOC)
)

// TokenSpec describes an access token for Mint. Zero fields take defaults.
type TokenSpec struct {
	Version   int    // 1 or 2: the resource's accessTokenAcceptedVersion (azure-contracts.md §8)
	App       bool   // an app-only (client credentials) token: idtyp app, roles, no scp, no user names
	Audience  string // required: the API's App ID URI or client id
	OID       string // default: a random GUID
	UPN       string // user tokens: upn and unique_name (v1) or preferred_username (v2)
	Name      string // user tokens: display name
	AppID     string // appid (v1) or azp (v2); default EntraDefaultAppID
	Roles     []string
	Scope     string    // user tokens: scp; default EntraDefaultScope
	Expiry    time.Time // default: now + 1h
	NotBefore time.Time // default: now
	Issuer    string    // overrides iss
	TenantID  string    // overrides tid (and the tenant in the default iss)
	Kid       string    // overrides the kid header (and x5t in v1), not the key that signs
}

// Mint issues a token for spec, signed RS256 with the current key. v1 tokens
// carry iss https://sts.windows.net/{tid}/, ver 1.0, appid, upn and
// unique_name, and x5t next to kid in the header; v2 tokens carry iss
// {base}/{tid}/v2.0, ver 2.0, azp and preferred_username (DOC
// access-token-claims-reference). App tokens carry idtyp app and roles and
// no scp.
func (e *Entra) Mint(spec TokenSpec) (string, error) {
	if spec.Version != 1 && spec.Version != 2 {
		return "", fmt.Errorf("entra emulator: token version %d, want 1 or 2", spec.Version)
	}
	if spec.Audience == "" {
		return "", errors.New("entra emulator: token audience is required")
	}
	e.mu.Lock()
	base, signer := e.base, e.signer
	e.mu.Unlock()

	now := e.now()
	tid := spec.TenantID
	if tid == "" {
		tid = e.tenant
	}
	iss := spec.Issuer
	if iss == "" {
		if spec.Version == 1 {
			iss = entraV1Issuer(tid)
		} else if base == "" {
			return "", errEntraNoBase
		} else {
			iss = base + "/" + tid + "/v2.0"
		}
	}
	oid := spec.OID
	if oid == "" {
		oid = uuid.NewString()
	}
	appID := spec.AppID
	if appID == "" {
		appID = EntraDefaultAppID
	}
	exp, nbf := spec.Expiry, spec.NotBefore
	if exp.IsZero() {
		exp = now.Add(entraTokenLife)
	}
	if nbf.IsZero() {
		nbf = now
	}
	uti := make([]byte, 16)
	_, _ = rand.Read(uti)
	sub := sha256.Sum256([]byte(oid + "|" + appID + "|" + spec.Audience)) // pairwise per app (DOC)

	c := jwt.MapClaims{
		"aud": spec.Audience,
		"iss": iss,
		"iat": now.Unix(),
		"nbf": nbf.Unix(),
		"exp": exp.Unix(),
		"oid": oid,
		"sub": base64.RawURLEncoding.EncodeToString(sub[:]),
		"tid": tid,
		"uti": base64.RawURLEncoding.EncodeToString(uti),
	}
	acr := "0" // public client (a user signing in through a CLI)
	if spec.App {
		acr = "1" // client secret
		c["idtyp"] = "app"
	} else {
		scope := spec.Scope
		if scope == "" {
			scope = EntraDefaultScope
		}
		c["scp"] = scope
		if spec.Name != "" {
			c["name"] = spec.Name
		}
	}
	if len(spec.Roles) > 0 {
		c["roles"] = spec.Roles
	}
	kid := signer.kid
	if spec.Kid != "" {
		kid = spec.Kid
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = kid
	if spec.Version == 1 {
		c["ver"] = "1.0"
		c["appid"] = appID
		c["appidacr"] = acr
		if spec.App {
			c["idp"] = entraV1Issuer(tid) // the tenant itself authenticated the app (INFERRED from the idp claim's DOC)
		} else if spec.UPN != "" {
			c["upn"] = spec.UPN
			c["unique_name"] = spec.UPN
		}
		tok.Header["x5t"] = kid
	} else {
		c["ver"] = "2.0"
		c["azp"] = appID
		c["azpacr"] = acr
		if !spec.App && spec.UPN != "" {
			c["preferred_username"] = spec.UPN
		}
	}
	s, err := tok.SignedString(signer.priv)
	if err != nil {
		return "", fmt.Errorf("entra emulator: sign token: %w", err)
	}
	return s, nil
}
