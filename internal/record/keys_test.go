package record

import (
	"encoding/json"
	"testing"
)

func TestPrincipalIDMatchesPrincipal(t *testing.T) {
	for _, p := range []Principal{
		{Kind: PrincipalKey, KeyName: "build-bot"},
		{Kind: PrincipalEntraUser, UPN: "ana@contoso.com", OID: "oid-ana", Name: "Ana"},
		{Kind: PrincipalEntraApp, OID: "oid-app", AppID: "app-1"},
		{},
	} {
		data, err := json.Marshal(GatewayRequest{Principal: p})
		if err != nil {
			t.Fatal(err)
		}
		if got := PrincipalID(data); got != p.ID() {
			t.Errorf("PrincipalID(%s) = %q, want %q", data, got, p.ID())
		}
	}
}

func TestScopeKey(t *testing.T) {
	for data, want := range map[string]string{
		`{"scope":{"kind":"management_group","id":"mg-corp"}}`: "mg-corp",
		`{"scope":{"kind":"tenant"}}`:                          "tenant",
		`{"scope":{"kind":"subscription","id":"0000"}}`:        "0000",
		`{}`: "",
	} {
		if got := ScopeKey([]byte(data)); got != want {
			t.Errorf("ScopeKey(%s) = %q, want %q", data, got, want)
		}
	}
}
