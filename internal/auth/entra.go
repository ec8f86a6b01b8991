package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tapline/tapline/internal/record"
)

// Defaults for EntraConfig.
const (
	DefaultEntraLeeway     = 2 * time.Minute
	DefaultEntraMinRefresh = time.Minute
	DefaultEntraMaxKeyAge  = 24 * time.Hour

	// MaxTokenBytes caps a bearer token before any parsing. Entra access
	// tokens are a few KiB; group overage keeps them well under this.
	MaxTokenBytes = 16 << 10
)

// ErrKeysUnavailable wraps the technical failures of Authenticate: the
// identity provider could not be reached (or answered nonsense) and the
// token's signing key is not cached. The gateway answers 503: the token may
// well be good.
var ErrKeysUnavailable = errors.New("entra signing keys unavailable")

// EntraConfig configures Entra ID bearer-token validation
// (DESIGN.md §4 gateway.auth.entra and azure.authority).
type EntraConfig struct {
	// Authority is the login host: https://login.microsoftonline.com, or
	// http://127.0.0.1:PORT for an emulator (http only on loopback).
	// Discovery is at {Authority}/{tenant}/v2.0/.well-known/openid-configuration.
	Authority string
	// Tenants are the allowed tenant ids (GUIDs, as in the tid claim).
	Tenants []string
	// Audiences are the accepted aud values (App ID URI like api://tapline,
	// or the API's client id); at least one.
	Audiences []string
	// RequiredRoles must each be in the token's roles claim; empty: none.
	RequiredRoles []string
	// HTTPClient fetches discovery documents and key sets; nil: a client
	// with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Leeway is the allowed clock skew for exp and nbf; 0: 2m.
	Leeway time.Duration
	// MinRefresh spaces key set fetches per tenant: an unknown kid causes
	// at most one refresh per MinRefresh, so forged kids cannot hammer the
	// identity provider; 0: 1m.
	MinRefresh time.Duration
	// MaxKeyAge is how long a fetched key set is used before the next
	// token refreshes it (so that keys Entra withdrew stop being accepted);
	// if that refresh fails the old set is kept. 0: 24h, Microsoft's
	// advice for key caching.
	MaxKeyAge time.Duration
}

// Entra authenticates callers by Entra ID access token (v1 or v2), checking
// the RS256 signature against the tenant's published keys, the issuer,
// audience, lifetime, token version and required roles. Authenticate is
// safe for concurrent use.
type Entra struct {
	authority  string
	tenants    map[string]*entraTenant // by lower-case tenant id
	audiences  []string
	roles      []string
	client     *http.Client
	now        func() time.Time
	minRefresh time.Duration
	maxKeyAge  time.Duration
	parser     *jwt.Parser
	log        *slog.Logger
}

// NewEntra validates cfg and returns an authenticator. It does not contact
// the identity provider: keys are fetched on first use.
func NewEntra(cfg EntraConfig, log *slog.Logger) (*Entra, error) {
	authority, err := checkEndpoint(strings.TrimRight(cfg.Authority, "/"))
	if err != nil {
		return nil, fmt.Errorf("entra authority: %w", err)
	}
	if len(cfg.Tenants) == 0 {
		return nil, errors.New("entra: no tenants allowed")
	}
	if len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, "") {
		// Without an audience any token the tenant issues, for any API, would do.
		return nil, errors.New("entra: audiences must be non-empty")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Entra{
		authority:  authority,
		tenants:    make(map[string]*entraTenant, len(cfg.Tenants)),
		audiences:  slices.Clone(cfg.Audiences),
		roles:      slices.Clone(cfg.RequiredRoles),
		client:     cfg.HTTPClient,
		now:        cfg.Now,
		minRefresh: cmp.Or(cfg.MinRefresh, DefaultEntraMinRefresh),
		maxKeyAge:  cmp.Or(cfg.MaxKeyAge, DefaultEntraMaxKeyAge),
		log:        log.With("component", "auth.entra"),
	}
	for _, t := range cfg.Tenants {
		if !isGUID(t) {
			return nil, fmt.Errorf("entra: tenant %q is not a tenant id (a GUID, as in the token's tid claim)", t)
		}
		id := strings.ToLower(t)
		e.tenants[id] = &entraTenant{id: id}
	}
	if e.client == nil {
		e.client = &http.Client{Timeout: entraFetchTimeout}
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}), // alg none, HS256 keyed with the public key, ... never
		jwt.WithLeeway(cmp.Or(cfg.Leeway, DefaultEntraLeeway)),
		jwt.WithTimeFunc(func() time.Time { return e.now() }),
		jwt.WithAudience(e.audiences...),
		jwt.WithExpirationRequired(),
		jwt.WithStrictDecoding(), // one encoding per token: no malleable trailing bits
	)
	return e, nil
}

// Reasons a token is refused, safe to show the caller: none contains the token.
const (
	reasonEmpty      = "empty bearer token"
	reasonTooLong    = "malformed token: longer than 16 KiB"
	reasonMalformed  = "malformed token: not a JWT (three base64url parts, JSON header and claims)"
	reasonAlg        = "token signing algorithm not allowed: only RS256 is accepted"
	reasonNoTenant   = "malformed token: no tid (tenant) claim"
	reasonTenant     = "token tenant not allowed"
	reasonNoKid      = "unknown signing key: the token names no kid"
	reasonUnknownKey = "unknown signing key: the tenant publishes no key with this kid"
	reasonSignature  = "bad signature"
	reasonExpired    = "token expired"
	reasonNotYet     = "token not yet valid (nbf)"
	reasonAudience   = "wrong audience: the token is not for this gateway"
	reasonMissing    = "malformed token: a required claim (exp or aud) is missing"
	reasonClaims     = "malformed token: claims of the wrong type"
	reasonIssuer     = "issuer not accepted"
	reasonVersion    = "token version (ver) does not match its issuer"
)

// errUnknownKey: the tenant's current key set has no such kid.
var errUnknownKey = errors.New("unknown signing key")

// Authenticate validates an Entra ID access token (the bearer credential,
// without "Bearer "). A bad token is a Result with OK false and Status 401,
// or 403 for a valid token that lacks a required role. The error is non-nil
// only for technical failures (it wraps ErrKeysUnavailable, or is the
// context's error): the identity provider is unreachable and the kid is not
// cached. A token is never accepted on a failure.
func (e *Entra) Authenticate(ctx context.Context, token string) (Result, error) {
	switch {
	case token == "":
		return deny(http.StatusUnauthorized, reasonEmpty), nil
	case len(token) > MaxTokenBytes:
		return deny(http.StatusUnauthorized, reasonTooLong), nil
	}
	hdr, tid, ok := peekJWT(token)
	if !ok {
		return deny(http.StatusUnauthorized, reasonMalformed), nil
	}
	// Checked again by the parser; refusing here spends no key lookup on it.
	if hdr.Alg != "RS256" {
		return deny(http.StatusUnauthorized, reasonAlg), nil
	}
	if tid == "" {
		return deny(http.StatusUnauthorized, reasonNoTenant), nil
	}
	// tid is unverified here: it only picks the tenant whose keys and
	// issuer must then match. Unknown tenants cost no network request.
	t, ok := e.tenants[strings.ToLower(tid)]
	if !ok {
		return deny(http.StatusUnauthorized, reasonTenant), nil
	}
	if hdr.Kid == "" {
		return deny(http.StatusUnauthorized, reasonNoKid), nil
	}
	key, err := e.signingKey(ctx, t, hdr.Kid)
	switch {
	case errors.Is(err, errUnknownKey):
		return deny(http.StatusUnauthorized, reasonUnknownKey), nil
	case err != nil:
		return Result{}, err
	}

	var c entraClaims
	if _, err := e.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
		return deny(http.StatusUnauthorized, parseReason(err)), nil
	}
	v2Issuer := t.issuer()
	switch {
	case c.Issuer == v2Issuer && v2Issuer != "":
		if c.Ver != "2.0" {
			return deny(http.StatusUnauthorized, reasonVersion), nil
		}
	case c.Issuer == v1Issuer(t.id):
		if c.Ver != "1.0" {
			return deny(http.StatusUnauthorized, reasonVersion), nil
		}
	default:
		return deny(http.StatusUnauthorized, reasonIssuer), nil
	}
	for _, r := range e.roles {
		if !slices.Contains(c.Roles, r) {
			return deny(http.StatusForbidden, "missing role "+r), nil
		}
	}
	return Result{OK: true, Principal: c.principal()}, nil
}

// parseReason names what golang-jwt found wrong, most fundamental first.
func parseReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reasonMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return reasonSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return reasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reasonNotYet
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return reasonAudience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return reasonMissing
	}
	return reasonClaims
}

// v1Issuer is the issuer of v1 tokens, whatever host served discovery
// (azure-contracts.md §8). Sovereign clouds other than US Government use
// other sts hosts; they are not supported here.
func v1Issuer(tenant string) string { return "https://sts.windows.net/" + tenant + "/" }

// entraClaims are the claims read from v1 and v2 access tokens
// (azure-contracts.md §8).
type entraClaims struct {
	jwt.RegisteredClaims
	Ver               string   `json:"ver"`
	TID               string   `json:"tid"`
	OID               string   `json:"oid"`
	AppID             string   `json:"appid"` // v1
	AZP               string   `json:"azp"`   // v2
	UPN               string   `json:"upn"`   // v1
	UniqueName        string   `json:"unique_name"`
	PreferredUsername string   `json:"preferred_username"` // v2
	Name              string   `json:"name"`
	Roles             []string `json:"roles"`
	Scp               string   `json:"scp"`
	IDType            string   `json:"idtyp"`
}

func (c *entraClaims) principal() record.Principal {
	p := record.Principal{OID: c.OID, TID: c.TID, Name: c.Name, Roles: c.Roles}
	if c.Ver == "1.0" {
		p.AppID = c.AppID
		p.UPN = cmp.Or(c.UPN, c.UniqueName)
	} else {
		p.AppID = c.AZP
		p.UPN = c.PreferredUsername
	}
	// idtyp is optional (absent means user); client-credentials tokens
	// carry no scp and no user name either.
	if c.IDType == "app" || (c.Scp == "" && p.UPN == "") {
		p.Kind = record.PrincipalEntraApp
	} else {
		p.Kind = record.PrincipalEntraUser
	}
	return p
}

// checkEndpoint accepts https URLs, and http ones on loopback (emulators).
func checkEndpoint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", raw, err)
	}
	switch {
	case u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return "", fmt.Errorf("%q is not a base URL like https://login.microsoftonline.com", raw)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return "", fmt.Errorf("%q: want https (http only on loopback, for emulators)", raw)
	}
	return raw, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case '0' <= r && r <= '9', 'a' <= r && r <= 'f', 'A' <= r && r <= 'F':
		default:
			return false
		}
	}
	return true
}
