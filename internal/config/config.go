// Package config loads, defaults and validates Tapline's YAML configuration
// (DESIGN.md §4). Loading reads the file and the environment; Validate has
// no side effects.
package config

import (
	"fmt"
	"net/url"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration. A nil section turns its part off.
type Config struct {
	Store   Store    `yaml:"store"`
	Azure   Azure    `yaml:"azure"`
	Gateway *Gateway `yaml:"gateway"`
	// Collector turns on the Activity Log collector (tapline collect, and
	// serve's schedule).
	Collector *Collector `yaml:"collector"`
	// Sinks are the destinations the shipper delivers every record to.
	Sinks     []Sink     `yaml:"sinks"`
	Metrics   *Metrics   `yaml:"metrics"`
	Dashboard *Dashboard `yaml:"dashboard"`
}

// Dashboard configures the read-only web dashboard (DESIGN.md §4). On a
// loopback address it needs no sign-in; on any other, Token is required.
type Dashboard struct {
	Listen string `yaml:"listen"`
	Token  string `yaml:"token"`
}

// Collector configures the Activity Log collector (DESIGN.md §4).
type Collector struct {
	Every       *Duration       `yaml:"every"`    // serve's schedule; 0 disables it, unset means 5m
	Backfill    Duration        `yaml:"backfill"` // how far back a scope's first window reaches (max 90 days)
	Lag         Duration        `yaml:"lag"`      // windows end this long before now
	Overlap     Duration        `yaml:"overlap"`  // windows re-read this much before the checkpoint
	Concurrency int             `yaml:"concurrency"`
	Scopes      CollectorScopes `yaml:"scopes"`
}

// CollectorScopes says whose Activity Logs are collected.
type CollectorScopes struct {
	ManagementGroups GroupSelection `yaml:"management_groups"`
	Tenant           bool           `yaml:"tenant"`
	Subscriptions    []string       `yaml:"subscriptions"`
}

// GroupSelection is `all` (the tenant root group and every descendant) or
// a list of management group ids. The zero value is all.
type GroupSelection struct {
	IDs []string // nil means all
}

// All reports whether every group of the tenant is selected.
func (g GroupSelection) All() bool { return g.IDs == nil }

// UnmarshalYAML accepts the scalar "all" or a sequence of ids.
func (g *GroupSelection) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "all" {
			return fmt.Errorf("line %d: management_groups: %q is neither all nor a list of group ids", n.Line, n.Value)
		}
		g.IDs = nil
		return nil
	case yaml.SequenceNode:
		ids := []string{}
		if err := n.Decode(&ids); err != nil {
			return err
		}
		g.IDs = ids
		return nil
	}
	return fmt.Errorf("line %d: management_groups: want all or a list of group ids", n.Line)
}

// MarshalYAML writes all or the list.
func (g GroupSelection) MarshalYAML() (any, error) {
	if g.All() {
		return "all", nil
	}
	return g.IDs, nil
}

// Store configures the embedded SQLite store.
type Store struct {
	Path      string   `yaml:"path"`
	Retention Duration `yaml:"retention"`
	MaxBytes  ByteSize `yaml:"max_bytes"`
	WhenFull  string   `yaml:"when_full"`
}

// Azure configures how Tapline authenticates to Azure and which cloud it
// talks to.
type Azure struct {
	TenantID    string `yaml:"tenant_id"`
	Cloud       string `yaml:"cloud"`
	Authority   string `yaml:"authority"`
	ARMEndpoint string `yaml:"arm_endpoint"`
	Credential  string `yaml:"credential"`
	AccessToken string `yaml:"access_token"`
}

// Gateway configures the AI gateway.
type Gateway struct {
	Listen          string       `yaml:"listen"`
	Audit           string       `yaml:"audit"`
	Capture         string       `yaml:"capture"`
	MaxCaptureBytes ByteSize     `yaml:"max_capture_bytes"`
	MaxRequestBytes ByteSize     `yaml:"max_request_bytes"`
	Timeout         Duration     `yaml:"timeout"`
	Redact          []RedactRule `yaml:"redact"`
	TrustedProxies  []string     `yaml:"trusted_proxies"`
	Auth            GatewayAuth  `yaml:"auth"`
	Limits          *Limits      `yaml:"limits,omitempty"`
	Backends        []Backend    `yaml:"backends"`
}

// RedactRule replaces every match of Pattern in captured content.
type RedactRule struct {
	Name    string `yaml:"name"`
	Pattern string `yaml:"pattern"`
}

// GatewayAuth says how callers prove who they are: gateway keys, Entra ID
// tokens, or both.
type GatewayAuth struct {
	Entra *Entra `yaml:"entra"`
	Keys  []Key  `yaml:"keys"`
}

// Entra accepts Entra ID access tokens (v1 and v2) issued by these tenants
// for these audiences. Discovery is at
// {azure.authority}/{tenant}/v2.0/.well-known/openid-configuration.
type Entra struct {
	Tenants       []string `yaml:"tenants"`
	Audiences     []string `yaml:"audiences"`
	RequiredRoles []string `yaml:"required_roles"`
}

// Key is a gateway key, stored only as its SHA-256 ("sha256:<64 hex>").
type Key struct {
	Name string `yaml:"name"`
	Hash string `yaml:"hash"`
	// Limits replace gateway.limits.default for this key; nil inherits.
	Limits *LimitValues `yaml:"limits,omitempty"`
}

// Backend is an Azure OpenAI resource or an OpenAI-compatible endpoint.
type Backend struct {
	Name        string   `yaml:"name"`
	URL         string   `yaml:"url"`
	API         string   `yaml:"api"`  // azure (default) | openai
	Auth        string   `yaml:"auth"` // managed_identity | api_key
	APIKey      string   `yaml:"api_key"`
	APIVersion  string   `yaml:"api_version"` // used when an OpenAI-style call goes to an Azure classic path
	Deployments []string `yaml:"deployments"`
	Priority    int      `yaml:"priority"`
	Weight      int      `yaml:"weight"`
}

// Values accepted by enumerated settings.
const (
	AuditStrict   = "strict"
	AuditStandard = "standard"

	CaptureNone     = "none"
	CaptureMetadata = "metadata"
	CaptureFull     = "full"

	WhenFullReject     = "reject"
	WhenFullDropOldest = "drop_oldest"

	BackendAPIAzure  = "azure"
	BackendAPIOpenAI = "openai"

	AuthManagedIdentity = "managed_identity"
	AuthAPIKey          = "api_key"

	CredentialDefault = "default"
	CredentialToken   = "token"
)

// Clouds maps azure.cloud to its authority and ARM endpoint.
var Clouds = map[string]struct{ Authority, ARM string }{
	"public":       {"https://login.microsoftonline.com", "https://management.azure.com"},
	"usgovernment": {"https://login.microsoftonline.us", "https://management.usgovcloudapi.net"},
	"china":        {"https://login.chinacloudapi.cn", "https://management.chinacloudapi.cn"},
}

// ApplyDefaults fills every unset field with its default.
func (c *Config) ApplyDefaults() {
	s := &c.Store
	if s.Path == "" {
		s.Path = "./tapline.db"
	}
	if s.Retention == 0 {
		s.Retention = Duration(720 * time.Hour)
	}
	if s.MaxBytes == 0 {
		s.MaxBytes = 10 << 30
	}
	if s.WhenFull == "" {
		s.WhenFull = WhenFullReject
	}
	a := &c.Azure
	if a.Cloud == "" {
		a.Cloud = "public"
	}
	if cl, ok := Clouds[a.Cloud]; ok {
		if a.Authority == "" {
			a.Authority = cl.Authority
		}
		if a.ARMEndpoint == "" {
			a.ARMEndpoint = cl.ARM
		}
	}
	if a.Credential == "" {
		a.Credential = CredentialDefault
	}
	sinkDefaults(c.Sinks)
	if cl := c.Collector; cl != nil {
		if cl.Every == nil {
			every := Duration(5 * time.Minute)
			cl.Every = &every
		}
		if cl.Backfill == 0 {
			cl.Backfill = Duration(168 * time.Hour)
		}
		if cl.Lag == 0 {
			cl.Lag = Duration(5 * time.Minute)
		}
		if cl.Overlap == 0 {
			cl.Overlap = Duration(30 * time.Minute)
		}
		if cl.Concurrency == 0 {
			cl.Concurrency = 4
		}
	}
	if g := c.Gateway; g != nil {
		if g.Listen == "" {
			g.Listen = "127.0.0.1:8080"
		}
		if g.Audit == "" {
			g.Audit = AuditStrict
		}
		if g.Capture == "" {
			g.Capture = CaptureFull
		}
		if g.MaxCaptureBytes == 0 {
			g.MaxCaptureBytes = 1 << 20
		}
		if g.MaxRequestBytes == 0 {
			g.MaxRequestBytes = 32 << 20
		}
		if g.Timeout == 0 {
			g.Timeout = Duration(10 * time.Minute)
		}
		limitDefaults(g)
		for i := range g.Backends {
			b := &g.Backends[i]
			if b.API == "" {
				b.API = BackendAPIAzure
			}
			if b.Auth == "" {
				b.Auth = AuthManagedIdentity
				if b.APIKey != "" {
					b.Auth = AuthAPIKey
				}
			}
			if b.APIVersion == "" {
				b.APIVersion = "2024-10-21"
			}
			if len(b.Deployments) == 0 {
				b.Deployments = []string{"*"}
			}
			if b.Priority == 0 {
				b.Priority = 1
			}
			if b.Weight == 0 {
				b.Weight = 1
			}
			if b.Name == "" {
				if u, err := url.Parse(b.URL); err == nil {
					b.Name = u.Hostname()
				}
			}
		}
	}
}
