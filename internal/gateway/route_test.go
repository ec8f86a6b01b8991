package gateway

import (
	"net/url"
	"testing"
)

// FuzzQueryGet holds queryGet to what URL.Query().Get returns.
func FuzzQueryGet(f *testing.F) {
	for _, q := range []string{
		"api-version=2024-10-21",
		"a=1&api-version=2024-10-21&api-version=2",
		"api%2Dversion=x%20y",
		"api-version=a+b",
		"api-version=%zz&api-version=ok",
		"api-version=1;2&api-version=3",
		"&&api-version&x=1",
		"api-version",
		"x=1",
		"",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		want := (&url.URL{RawQuery: raw}).Query().Get("api-version")
		if got := queryGet(raw, "api-version"); got != want {
			t.Errorf("queryGet(%q) = %q, URL.Query().Get = %q", raw, got, want)
		}
	})
}
