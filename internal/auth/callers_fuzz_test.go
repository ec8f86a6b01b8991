package auth

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/config"
)

// FuzzCallers sends arbitrary credentials in every header a caller might
// use: nothing panics, nothing but the real key is accepted, and no denial
// echoes what was sent.
func FuzzCallers(f *testing.F) {
	key, hash, _ := NewKey()
	keys, _ := NewKeys([]config.Key{{Name: "k", Hash: hash}})
	c := NewCallers(keys, &fakeIdP{})
	f.Add("api-key", "tapline_abc")
	f.Add("Authorization", "Bearer "+aJWT)
	f.Add("Authorization", "Basic Zm9vOmJhcg==")
	f.Add("Authorization", "Bearer  \t ")
	f.Add("Ocp-Apim-Subscription-Key", "0123456789abcdef")
	f.Fuzz(func(t *testing.T, header, value string) {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header[header] = []string{value}
		res, err := c.Authenticate(r)
		if err != nil {
			return // only the fake IdP's unreachable token errs
		}
		cred := value
		if scheme, rest, ok := strings.Cut(value, " "); ok && strings.EqualFold(scheme, "Bearer") {
			cred = rest
		}
		cred = strings.TrimSpace(cred)
		if res.OK && cred != key && !LooksLikeJWT(cred) {
			t.Fatalf("accepted %q: %q", header, value)
		}
		if !res.OK && len(value) > 12 && strings.Contains(res.Reason, value) {
			t.Fatalf("the denial echoes the credential: %q", res.Reason)
		}
		if !res.OK && res.Status != 401 && res.Status != 403 {
			t.Fatalf("status %d", res.Status)
		}
	})
}
