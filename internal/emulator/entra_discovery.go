package emulator

// entraDiscoveryV2 is the v2 OpenID configuration, field for field (and in
// order) as recorded from login.microsoftonline.com
// (shared/fixtures/entra-openid-configuration-v2.recorded.json, REC), with
// the login host replaced by the emulator's base URL. Hosts of other
// services (Graph, PAS) are kept as recorded.
type entraDiscoveryV2 struct {
	TokenEndpoint                     string   `json:"token_endpoint"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	JWKSURI                           string   `json:"jwks_uri"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	Issuer                            string   `json:"issuer"`
	RequestURIParameterSupported      bool     `json:"request_uri_parameter_supported"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	HTTPLogoutSupported               bool     `json:"http_logout_supported"`
	FrontchannelLogoutSupported       bool     `json:"frontchannel_logout_supported"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	ClaimsSupported                   []string `json:"claims_supported"`
	KerberosEndpoint                  string   `json:"kerberos_endpoint"`
	TenantRegionScope                 string   `json:"tenant_region_scope"`
	CloudInstanceName                 string   `json:"cloud_instance_name"`
	CloudGraphHostName                string   `json:"cloud_graph_host_name"`
	MSGraphHost                       string   `json:"msgraph_host"`
	RBACURL                           string   `json:"rbac_url"`
}

func (e *Entra) discoveryV2(base string) entraDiscoveryV2 {
	t := base + "/" + e.tenant
	return entraDiscoveryV2{
		TokenEndpoint:                     t + "/oauth2/v2.0/token",
		TokenEndpointAuthMethodsSupported: []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		JWKSURI:                           t + "/discovery/v2.0/keys",
		ResponseModesSupported:            []string{"query", "fragment", "form_post"},
		SubjectTypesSupported:             []string{"pairwise"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		ResponseTypesSupported:            []string{"code", "id_token", "code id_token", "id_token token"},
		ScopesSupported:                   []string{"openid", "profile", "email", "offline_access"},
		Issuer:                            t + "/v2.0",
		RequestURIParameterSupported:      false,
		UserinfoEndpoint:                  "https://graph.microsoft.com/oidc/userinfo",
		AuthorizationEndpoint:             t + "/oauth2/v2.0/authorize",
		DeviceAuthorizationEndpoint:       t + "/oauth2/v2.0/devicecode",
		HTTPLogoutSupported:               true,
		FrontchannelLogoutSupported:       true,
		EndSessionEndpoint:                t + "/oauth2/v2.0/logout",
		ClaimsSupported: []string{"sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
			"msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver",
			"at_hash", "c_hash", "email"},
		KerberosEndpoint:   t + "/kerberos",
		TenantRegionScope:  "WW",
		CloudInstanceName:  "microsoftonline.com",
		CloudGraphHostName: "graph.windows.net",
		MSGraphHost:        "graph.microsoft.com",
		RBACURL:            "https://pas.windows.net",
	}
}

// entraDiscoveryV1 is the v1 OpenID configuration. Its shape follows a
// tenant document quoted verbatim in a 2017 blog post (3P, shawntabrizi.com,
// "Get the Tenant ID"): the issuer is https://sts.windows.net/{tenant}/
// whatever host served it, and jwks_uri is the *common* key set even for a
// tenant's own document (azure-contracts.md §8, "the v1 jwks_uri quirk").
// That today's document has the same field set is INFERRED.
type entraDiscoveryV1 struct {
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	JWKSURI                           string   `json:"jwks_uri"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	HTTPLogoutSupported               bool     `json:"http_logout_supported"`
	FrontchannelLogoutSupported       bool     `json:"frontchannel_logout_supported"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	Issuer                            string   `json:"issuer"`
	ClaimsSupported                   []string `json:"claims_supported"`
	MicrosoftMultiRefreshToken        bool     `json:"microsoft_multi_refresh_token"`
	CheckSessionIframe                string   `json:"check_session_iframe"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	TenantRegionScope                 string   `json:"tenant_region_scope"`
	CloudInstanceName                 string   `json:"cloud_instance_name"`
	CloudGraphHostName                string   `json:"cloud_graph_host_name"`
}

func (e *Entra) discoveryV1(base string) entraDiscoveryV1 {
	t := base + "/" + e.tenant
	return entraDiscoveryV1{
		AuthorizationEndpoint:             t + "/oauth2/authorize",
		TokenEndpoint:                     t + "/oauth2/token",
		TokenEndpointAuthMethodsSupported: []string{"client_secret_post", "private_key_jwt"},
		JWKSURI:                           base + "/common/discovery/keys",
		ResponseModesSupported:            []string{"query", "fragment", "form_post"},
		SubjectTypesSupported:             []string{"pairwise"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		HTTPLogoutSupported:               true,
		FrontchannelLogoutSupported:       true,
		EndSessionEndpoint:                t + "/oauth2/logout",
		ResponseTypesSupported:            []string{"code", "id_token", "code id_token", "token id_token", "token"},
		ScopesSupported:                   []string{"openid"},
		Issuer:                            entraV1Issuer(e.tenant),
		ClaimsSupported: []string{"sub", "iss", "cloud_instance_name", "cloud_graph_host_name", "aud", "exp", "iat",
			"auth_time", "acr", "amr", "nonce", "email", "given_name", "family_name", "nickname"},
		MicrosoftMultiRefreshToken: true,
		CheckSessionIframe:         t + "/oauth2/checksession",
		UserinfoEndpoint:           t + "/openid/userinfo",
		TenantRegionScope:          "WW",
		CloudInstanceName:          "microsoftonline.com",
		CloudGraphHostName:         "graph.windows.net",
	}
}

// entraV1Issuer is the issuer of v1 tokens (azure-contracts.md §8, DOC).
func entraV1Issuer(tenant string) string { return "https://sts.windows.net/" + tenant + "/" }
