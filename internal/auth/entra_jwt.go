package auth

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// jwtHeader is the part of a JWS header Authenticate reads before verifying.
type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// LooksLikeJWT reports whether s has the shape of a JWT: three base64url
// segments separated by dots (the signature may be empty, as in an
// alg "none" token, which is then refused by Authenticate rather than
// mistaken for a gateway key), whose header decodes to a JSON object with
// a string "alg". It verifies nothing.
func LooksLikeJWT(s string) bool {
	h, rest, ok := strings.Cut(s, ".")
	if !ok {
		return false
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok || h == "" || p == "" || strings.Contains(sig, ".") {
		return false
	}
	if !isBase64URL(h) || !isBase64URL(p) || !isBase64URL(sig) || len(h) > MaxTokenBytes {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return false
	}
	var hdr struct {
		Alg *string `json:"alg"`
	}
	return json.Unmarshal(raw, &hdr) == nil && hdr.Alg != nil
}

// peekJWT decodes a token's header and its tid claim without verifying
// anything: enough to refuse a wrong algorithm or tenant without a key
// lookup. Decoding is strict, as in the parser that verifies afterwards.
func peekJWT(token string) (hdr jwtHeader, tid string, ok bool) {
	h, rest, ok1 := strings.Cut(token, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return jwtHeader{}, "", false
	}
	enc := base64.RawURLEncoding.Strict()
	hb, err := enc.DecodeString(h)
	if err != nil || json.Unmarshal(hb, &hdr) != nil {
		return jwtHeader{}, "", false
	}
	pb, err := enc.DecodeString(p)
	if err != nil {
		return jwtHeader{}, "", false
	}
	var claims struct {
		TID string `json:"tid"`
	}
	if json.Unmarshal(pb, &claims) != nil {
		return jwtHeader{}, "", false
	}
	return hdr, claims.TID, true
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
