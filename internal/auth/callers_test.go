package auth

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/config"
)

// fakeIdP records which tokens reached the Entra verifier.
type fakeIdP struct{ got []string }

func (f *fakeIdP) Authenticate(_ context.Context, token string) (Result, error) {
	f.got = append(f.got, token)
	if token == unreachableJWT {
		return Result{}, errors.New("idp unreachable")
	}
	return Result{OK: true}, nil
}

const (
	aJWT           = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJ0aWQiOiJ0In0.c2ln"
	unreachableJWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsyIn0.eyJ0aWQiOiJ0In0.c2ln"
)

func TestCallersRouteByCredentialShape(t *testing.T) {
	key, hash, _ := NewKey()
	keys, _ := NewKeys([]config.Key{{Name: "k", Hash: hash}})
	cases := []struct {
		name        string
		keys        *Keys
		entra       bool
		hdr, val    string
		ok, toEntra bool
		reason      string
	}{
		{"key in api-key", keys, true, "api-key", key, true, false, ""},
		{"key as bearer", keys, true, "Authorization", "Bearer " + key, true, false, ""},
		{"jwt as bearer goes to entra", keys, true, "Authorization", "Bearer " + aJWT, true, true, ""},
		{"jwt in api-key is the wrong header", keys, true, "api-key", aJWT, false, false, "not in the api-key header"},
		{"jwt without entra configured", keys, false, "Authorization", "Bearer " + aJWT, false, false, "does not accept Entra ID tokens"},
		{"key without keys configured", nil, true, "api-key", key, false, false, "accepts only Entra ID tokens"},
		{"apim subscription key", keys, true, "Ocp-Apim-Subscription-Key", "abc", false, false, "not accepted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			idp := &fakeIdP{}
			var v TokenVerifier
			if c.entra {
				v = idp
			}
			r := httptest.NewRequest("POST", "/", nil)
			r.Header.Set(c.hdr, c.val)
			res, err := NewCallers(c.keys, v).Authenticate(r)
			if err != nil || res.OK != c.ok || (len(idp.got) == 1) != c.toEntra || !strings.Contains(res.Reason, c.reason) {
				t.Fatalf("res %+v err %v entra got %v", res, err, idp.got)
			}
			if !c.ok && (res.Status != 401 || strings.Contains(res.Reason, c.val)) {
				t.Fatalf("denial %+v", res)
			}
		})
	}
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set("Authorization", "Bearer "+unreachableJWT)
	if _, err := NewCallers(keys, &fakeIdP{}).Authenticate(r); err == nil {
		t.Error("a technical failure of the verifier must be an error, not a denial")
	}
}
