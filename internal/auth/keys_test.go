package auth

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tapline/tapline/internal/config"
)

func TestKeys(t *testing.T) {
	good, hash, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := NewKey()
	if good == other || !strings.HasPrefix(good, KeyPrefix) || len(good) < len(KeyPrefix)+40 {
		t.Fatalf("weak or repeated keys: %q %q", good, other)
	}
	k, err := NewKeys([]config.Key{{Name: "bot", Hash: hash}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		header  [2]string
		ok      bool
		message string
	}{
		{"api-key header", [2]string{"api-key", good}, true, ""},
		{"bearer", [2]string{"Authorization", "Bearer " + good}, true, ""},
		{"bearer lowercase scheme", [2]string{"Authorization", "bearer " + good}, true, ""},
		{"no credentials", [2]string{}, false, "no credentials"},
		{"empty api-key", [2]string{"api-key", ""}, false, "empty credential"},
		{"empty bearer", [2]string{"Authorization", "Bearer "}, false, "empty credential"},
		{"basic auth", [2]string{"Authorization", "Basic " + good}, false, "not a Bearer"},
		{"wrong gateway key", [2]string{"api-key", other}, false, "invalid gateway key"},
		{"azure openai key", [2]string{"api-key", "0123456789abcdef0123456789abcdef"}, false, "never forwarded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			if c.header[0] != "" {
				r.Header.Set(c.header[0], c.header[1])
			}
			res, err := NewCallers(k, nil).Authenticate(r)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != c.ok || !strings.Contains(res.Reason, c.message) {
				t.Fatalf("got %+v", res)
			}
			if c.ok && (res.Principal.Kind != "key" || res.Principal.KeyName != "bot") {
				t.Fatalf("principal %+v", res.Principal)
			}
			if !c.ok && (res.Status != 401 || strings.Contains(res.Reason, good) || strings.Contains(res.Reason, other)) {
				t.Fatalf("denial leaks or has wrong status: %+v", res)
			}
		})
	}
}
