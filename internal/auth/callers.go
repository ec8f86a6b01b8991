package auth

import (
	"context"
	"net/http"
)

// TokenVerifier validates bearer tokens from an identity provider. It
// returns an error only when it cannot decide (the provider is unreachable
// and the signing key is not cached); a bad token is a Result that is not OK.
type TokenVerifier interface {
	Authenticate(ctx context.Context, token string) (Result, error)
}

var _ TokenVerifier = (*Entra)(nil)

// Callers identifies the caller of a gateway request by the credential it
// presents: a JWT in `Authorization: Bearer` is an Entra ID token, anything
// else in `api-key` or `Authorization: Bearer` is a gateway key. Either may
// be turned off (nil).
type Callers struct {
	keys  *Keys
	entra TokenVerifier
}

// NewCallers returns an authenticator over gateway keys and Entra ID.
func NewCallers(keys *Keys, entra TokenVerifier) *Callers {
	return &Callers{keys: keys, entra: entra}
}

// Authenticate identifies the caller of r.
func (c *Callers) Authenticate(r *http.Request) (Result, error) {
	cred, where := credential(r)
	switch {
	case where == "" && r.Header.Get("Ocp-Apim-Subscription-Key") != "":
		return deny(http.StatusUnauthorized, "API Management subscription keys are not accepted here; "+
			"send a gateway key or an Entra ID token as Authorization: Bearer"), nil
	case where == "":
		return deny(http.StatusUnauthorized, "no credentials: send a gateway key in the api-key header, "+
			"or a gateway key or Entra ID token as Authorization: Bearer"), nil
	case cred == "":
		return deny(http.StatusUnauthorized, "empty credential in the "+where+" header"), nil
	}
	jwt := LooksLikeJWT(cred)
	switch {
	case jwt && where != "Authorization":
		return deny(http.StatusUnauthorized, "an Entra ID token goes in Authorization: Bearer, not in the "+where+" header"), nil
	case jwt && c.entra == nil:
		return deny(http.StatusUnauthorized, "this gateway does not accept Entra ID tokens (gateway.auth.entra is not set); use a gateway key"), nil
	case jwt:
		return c.entra.Authenticate(r.Context(), cred)
	case c.keys == nil:
		return deny(http.StatusUnauthorized, "this gateway accepts only Entra ID tokens, sent as Authorization: Bearer"), nil
	}
	return c.keys.Verify(cred, where), nil
}
