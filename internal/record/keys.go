package record

import "github.com/tidwall/gjson"

// PrincipalID returns Principal.ID of a gateway_request payload without
// decoding it whole: sinks key and partition by it on their hot path, and
// every sink must agree with the store and the dashboard on who a caller is.
func PrincipalID(data []byte) string {
	f := gjson.GetManyBytes(data, "principal.key_name", "principal.upn", "principal.oid")
	return Principal{KeyName: f[0].String(), UPN: f[1].String(), OID: f[2].String()}.ID()
}

// ScopeKey returns the scope id of an activity_log payload, or its kind
// when it has none (the tenant scope), "" without a scope.
func ScopeKey(data []byte) string {
	sc := gjson.GetBytes(data, "scope")
	if id := sc.Get("id").String(); id != "" {
		return id
	}
	return sc.Get("kind").String()
}
