package config

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Validate checks the configuration after defaults and returns an *Error
// listing every problem, or nil. It has no side effects: it opens no file
// and no connection.
func (c *Config) Validate() error {
	v := &validator{}
	v.store(&c.Store)
	v.azure(&c.Azure)
	if c.Gateway != nil {
		v.gateway(c.Gateway)
	}
	if c.Collector != nil {
		v.collector(c.Collector)
	}
	v.sinks(c.Sinks)
	if c.Metrics != nil {
		v.metrics(c.Metrics)
	}
	if c.Dashboard != nil {
		v.dashboard(c.Dashboard)
	}
	if len(v.probs) == 0 {
		return nil
	}
	return &Error{Problems: v.probs}
}

type validator struct{ probs []Problem }

func (v *validator) add(path, format string, args ...any) {
	v.probs = append(v.probs, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(path, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.add(path, "%q is not one of %s", val, strings.Join(allowed, ", "))
}

func (v *validator) store(s *Store) {
	if s.Path == "" {
		v.add("store.path", "must not be empty")
	}
	if s.Retention < 0 {
		v.add("store.retention", "must not be negative")
	}
	if s.MaxBytes < 1<<20 {
		v.add("store.max_bytes", "must be at least 1MiB")
	}
	v.oneOf("store.when_full", s.WhenFull, WhenFullReject, WhenFullDropOldest)
}

func (v *validator) azure(a *Azure) {
	if _, ok := Clouds[a.Cloud]; !ok {
		v.add("azure.cloud", "%q is not one of public, usgovernment, china", a.Cloud)
	}
	v.endpoint("azure.authority", a.Authority)
	v.endpoint("azure.arm_endpoint", a.ARMEndpoint)
	v.oneOf("azure.credential", a.Credential, CredentialDefault, CredentialToken)
	if a.Credential == CredentialToken && a.AccessToken == "" {
		v.add("azure.access_token", "required with credential: token")
	}
	if a.Credential != CredentialToken && a.AccessToken != "" {
		v.add("azure.access_token", "only used with credential: token")
	}
}

// endpoint checks an Azure endpoint URL: https, or http only on loopback
// (emulators), per DESIGN.md §4.
func (v *validator) endpoint(path, raw string) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		v.add(path, "%q is not an absolute URL", raw)
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopback(u.Hostname()) {
			v.add(path, "http:// is allowed only for emulators on loopback; use https://")
		}
	default:
		v.add(path, "scheme must be https (or http on loopback)")
	}
}

// IsLoopback reports whether host names the local machine.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

var (
	keyHash     = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	guid        = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	backendName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

func (v *validator) gateway(g *Gateway) {
	if _, _, err := net.SplitHostPort(g.Listen); err != nil {
		v.add("gateway.listen", "%q is not host:port", g.Listen)
	}
	v.oneOf("gateway.audit", g.Audit, AuditStrict, AuditStandard)
	v.oneOf("gateway.capture", g.Capture, CaptureNone, CaptureMetadata, CaptureFull)
	if g.MaxCaptureBytes < 0 {
		v.add("gateway.max_capture_bytes", "must not be negative")
	}
	if g.Timeout < 0 {
		v.add("gateway.timeout", "must not be negative")
	}
	for i, r := range g.Redact {
		p := fmt.Sprintf("gateway.redact[%d]", i)
		if r.Name == "" {
			v.add(p+".name", "must not be empty")
		}
		if _, err := regexp.Compile(r.Pattern); err != nil || r.Pattern == "" {
			v.add(p+".pattern", "not a valid regular expression")
		}
	}
	for i, s := range g.TrustedProxies {
		if _, err := ParsePrefix(s); err != nil {
			v.add(fmt.Sprintf("gateway.trusted_proxies[%d]", i), "%v", err)
		}
	}
	if len(g.Auth.Keys) == 0 && g.Auth.Entra == nil {
		v.add("gateway.auth", "no way for callers to authenticate: add keys (tapline keys new --name NAME) or entra")
	}
	if e := g.Auth.Entra; e != nil {
		if len(e.Tenants) == 0 {
			v.add("gateway.auth.entra.tenants", "at least one tenant id is required")
		}
		for i, t := range e.Tenants {
			if !guid.MatchString(t) {
				v.add(fmt.Sprintf("gateway.auth.entra.tenants[%d]", i), "%q is not a tenant id (a GUID)", t)
			}
		}
		if len(e.Audiences) == 0 {
			v.add("gateway.auth.entra.audiences", "at least one audience is required (the API's App ID URI or client id)")
		}
		for i, a := range e.Audiences {
			if a == "" {
				v.add(fmt.Sprintf("gateway.auth.entra.audiences[%d]", i), "must not be empty")
			}
		}
	}
	names := map[string]bool{}
	for i, k := range g.Auth.Keys {
		p := fmt.Sprintf("gateway.auth.keys[%d]", i)
		if k.Name == "" {
			v.add(p+".name", "must not be empty")
		} else if names[k.Name] {
			v.add(p+".name", "duplicate key name %q", k.Name)
		}
		names[k.Name] = true
		if !keyHash.MatchString(k.Hash) {
			v.add(p+".hash", `must be "sha256:" and 64 lowercase hex digits (tapline keys new prints it); never the key itself`)
		}
	}
	v.limits(g)
	if len(g.Backends) == 0 {
		v.add("gateway.backends", "at least one backend is required")
	}
	bnames := map[string]bool{}
	for i := range g.Backends {
		v.backend(fmt.Sprintf("gateway.backends[%d]", i), &g.Backends[i], bnames)
	}
}

func (v *validator) backend(p string, b *Backend, names map[string]bool) {
	if !backendName.MatchString(b.Name) {
		v.add(p+".name", "%q: use letters, digits, '.', '_' or '-'", b.Name)
	} else if names[b.Name] {
		v.add(p+".name", "duplicate backend name %q", b.Name)
	}
	names[b.Name] = true
	if b.URL == "" {
		v.add(p+".url", "required")
	} else {
		v.endpoint(p+".url", b.URL)
	}
	v.oneOf(p+".api", b.API, BackendAPIAzure, BackendAPIOpenAI)
	v.oneOf(p+".auth", b.Auth, AuthManagedIdentity, AuthAPIKey)
	if b.Auth == AuthAPIKey && b.APIKey == "" {
		v.add(p+".api_key", "required with auth: api_key")
	}
	if b.Auth == AuthManagedIdentity && b.API == BackendAPIOpenAI {
		v.add(p+".auth", "managed_identity works only with api: azure")
	}
	if b.Priority < 0 {
		v.add(p+".priority", "must not be negative")
	}
	if b.Weight < 0 {
		v.add(p+".weight", "must not be negative")
	}
	for j, d := range b.Deployments {
		if d == "" {
			v.add(fmt.Sprintf("%s.deployments[%d]", p, j), "must not be empty")
		}
	}
}

// ParsePrefix parses an IP address or CIDR prefix ("10.0.0.0/8", "::1").
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// HashKey returns the configuration form of a gateway key's hash.
func HashKey(hash [32]byte) string { return "sha256:" + hex.EncodeToString(hash[:]) }

// collectorMaxBackfill is the Activity Log's retention (azure-contracts.md
// §2.4): nothing older can be read.
const collectorMaxBackfill = 90 * 24 * time.Hour

func (v *validator) collector(c *Collector) {
	if c.Every != nil && *c.Every < 0 {
		v.add("collector.every", "must not be negative (0 disables the schedule)")
	}
	if c.Backfill <= 0 || c.Backfill.D() > collectorMaxBackfill {
		v.add("collector.backfill", "must be more than 0 and at most 90d, the Activity Log's retention")
	}
	if c.Lag < 0 {
		v.add("collector.lag", "must not be negative")
	}
	if c.Overlap < 0 {
		v.add("collector.overlap", "must not be negative")
	}
	if c.Concurrency < 1 || c.Concurrency > 64 {
		v.add("collector.concurrency", "must be between 1 and 64")
	}
	s := c.Scopes
	if !s.ManagementGroups.All() && len(s.ManagementGroups.IDs) == 0 && !s.Tenant && len(s.Subscriptions) == 0 {
		v.add("collector.scopes", "selects nothing: set management_groups to all or a list, tenant: true, or subscriptions")
	}
	for i, id := range s.ManagementGroups.IDs {
		if strings.TrimSpace(id) == "" || strings.ContainsAny(id, "/?#% ") {
			v.add(fmt.Sprintf("collector.scopes.management_groups[%d]", i), "%q is not a management group id", id)
		}
	}
	for i, id := range s.Subscriptions {
		if !guid.MatchString(id) {
			v.add(fmt.Sprintf("collector.scopes.subscriptions[%d]", i), "%q is not a subscription id (a GUID)", id)
		}
	}
}
