package config

import (
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limits is gateway.limits: the per-identity budgets of the gateway and where
// their counters live (issue 6). Without it, and without limits on any key,
// the gateway limits nothing.
type Limits struct {
	// Default applies to every principal without its own entry.
	Default LimitValues `yaml:"default"`
	// Groups give Entra app roles their own limits; the first group whose
	// role the caller holds wins. A key's own limits win over any group.
	Groups []LimitGroup `yaml:"groups,omitempty"`
	// MaxOutputTokens is the output estimate of a request that asks for no
	// max_tokens (or max_completion_tokens, max_output_tokens).
	MaxOutputTokens int64 `yaml:"max_output_tokens"`
	// Redis, a redis:// or rediss:// URL, shares the counters across gateway
	// replicas; "" keeps them in this process.
	Redis string `yaml:"redis,omitempty"`
	// OnRedisError is what happens while Redis is unreachable: fail_closed
	// (503) or local (this replica's own counters).
	OnRedisError string `yaml:"on_redis_error"`
	// KeyPrefix starts every Redis key.
	KeyPrefix string `yaml:"key_prefix"`
	// TimeZone sets where a day and a month of the quotas begin (IANA name).
	TimeZone string `yaml:"time_zone"`
}

// LimitValues are the budgets of one identity. Zero is unlimited; an entry
// replaces the default entirely (a field left out is unlimited, not
// inherited).
type LimitValues struct {
	RPM            int64 `yaml:"rpm,omitempty"`
	TPM            int64 `yaml:"tpm,omitempty"`
	TokensPerDay   int64 `yaml:"tokens_per_day,omitempty"`
	TokensPerMonth int64 `yaml:"tokens_per_month,omitempty"`
}

// LimitGroup gives the principals holding an Entra app role their limits.
type LimitGroup struct {
	Role   string      `yaml:"role"`
	Limits LimitValues `yaml:"limits"`
}

// The values of gateway.limits.on_redis_error.
const (
	OnRedisErrorFailClosed = "fail_closed"
	OnRedisErrorLocal      = "local"
)

// limitDefaults turns limits on when a key has its own (a key's limits need
// somewhere to count) and fills the unset fields of gateway.limits.
func limitDefaults(g *Gateway) {
	if g.Limits == nil {
		for _, k := range g.Auth.Keys {
			if k.Limits != nil {
				g.Limits = &Limits{}
				break
			}
		}
	}
	l := g.Limits
	if l == nil {
		return
	}
	if l.MaxOutputTokens == 0 {
		l.MaxOutputTokens = 4096
	}
	if l.OnRedisError == "" {
		l.OnRedisError = OnRedisErrorFailClosed
	}
	if l.KeyPrefix == "" {
		l.KeyPrefix = "tapline:rl:"
	}
	if l.TimeZone == "" {
		l.TimeZone = "UTC"
	}
}

func (v *validator) limits(g *Gateway) {
	for i, k := range g.Auth.Keys {
		if k.Limits != nil {
			v.limitValues(fmt.Sprintf("gateway.auth.keys[%d].limits", i), *k.Limits)
		}
	}
	l := g.Limits
	if l == nil {
		return
	}
	v.limitValues("gateway.limits.default", l.Default)
	roles := map[string]bool{}
	for i, gr := range l.Groups {
		p := fmt.Sprintf("gateway.limits.groups[%d]", i)
		switch {
		case gr.Role == "":
			v.add(p+".role", "must not be empty (an Entra app role, e.g. Tapline.Batch)")
		case roles[gr.Role]:
			v.add(p+".role", "duplicate role %q: only the first group of a role applies", gr.Role)
		}
		roles[gr.Role] = true
		v.limitValues(p+".limits", gr.Limits)
	}
	if l.MaxOutputTokens < 0 {
		v.add("gateway.limits.max_output_tokens", "must not be negative")
	}
	v.oneOf("gateway.limits.on_redis_error", l.OnRedisError, OnRedisErrorFailClosed, OnRedisErrorLocal)
	if l.Redis != "" {
		v.redisURL("gateway.limits.redis", l.Redis)
	}
	if _, err := time.LoadLocation(l.TimeZone); err != nil || l.TimeZone == "" {
		v.add("gateway.limits.time_zone", "%q is not an IANA time zone (e.g. UTC, Europe/Paris)", l.TimeZone)
	}
}

func (v *validator) limitValues(p string, l LimitValues) {
	for _, f := range []struct {
		name string
		n    int64
	}{{"rpm", l.RPM}, {"tpm", l.TPM}, {"tokens_per_day", l.TokensPerDay}, {"tokens_per_month", l.TokensPerMonth}} {
		if f.n < 0 {
			v.add(p+"."+f.name, "must not be negative (0 is unlimited)")
		}
	}
}

// redisURL checks a Redis URL the way the limiter will parse it. The URL
// may hold a password, so no message repeats it or a parser's error (which
// quotes the URL).
func (v *validator) redisURL(p, raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		v.add(p, "not a valid URL (want redis://[:password@]host:6379/0 or rediss://...)")
		return
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		v.add(p, "scheme must be redis or rediss (got %q)", u.Scheme)
		return
	}
	if _, err := redis.ParseURL(raw); err != nil {
		v.add(p, "not a valid Redis URL (want redis://[:password@]host:6379/0); check the host, port and database number")
	}
}
