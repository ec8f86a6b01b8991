package gateway

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/tapline/tapline/internal/config"
)

// backend is one upstream: an Azure OpenAI resource or an OpenAI-compatible
// endpoint, with the credential the gateway itself presents to it.
type backend struct {
	name        string
	base        *url.URL
	api         string
	apiVersion  string
	deployments []string
	priority    int
	weight      int
	// credential returns the header (canonical name) and value that carry
	// the gateway's own credential to this backend.
	credential func(ctx context.Context) (name, value string, err error)
}

// tokenSource is what managed-identity backends need: a cached bearer token.
type tokenSource interface {
	Token(ctx context.Context) (string, error)
}

func newBackends(cfgs []config.Backend, tokens tokenSource) ([]*backend, error) {
	out := make([]*backend, 0, len(cfgs))
	for _, c := range cfgs {
		u, err := url.Parse(strings.TrimRight(c.URL, "/"))
		if err != nil {
			return nil, fmt.Errorf("backend %s: parse url: %w", c.Name, err)
		}
		b := &backend{name: c.Name, base: u, api: c.API, apiVersion: c.APIVersion,
			deployments: c.Deployments, priority: c.Priority, weight: c.Weight}
		switch {
		case c.Auth == config.AuthAPIKey && c.API == config.BackendAPIOpenAI:
			v := "Bearer " + c.APIKey
			b.credential = func(context.Context) (string, string, error) { return "Authorization", v, nil }
		case c.Auth == config.AuthAPIKey:
			k := c.APIKey
			b.credential = func(context.Context) (string, string, error) { return "Api-Key", k, nil }
		case c.Auth == config.AuthManagedIdentity:
			if tokens == nil {
				return nil, fmt.Errorf("backend %s: managed_identity needs an Azure credential", c.Name)
			}
			b.credential = func(ctx context.Context) (string, string, error) {
				tok, err := tokens.Token(ctx)
				if err != nil {
					return "", "", err
				}
				return "Authorization", "Bearer " + tok, nil
			}
		default:
			return nil, fmt.Errorf("backend %s: unknown auth %q", c.Name, c.Auth)
		}
		out = append(out, b)
	}
	// Lower priority first; the configured order breaks ties.
	sort.SliceStable(out, func(i, j int) bool { return out[i].priority < out[j].priority })
	return out, nil
}

// serves reports whether the backend serves deployment (glob patterns).
func (b *backend) serves(deployment string) bool {
	for _, p := range b.deployments {
		if p == "*" || p == deployment {
			return true
		}
		if ok, _ := path.Match(p, deployment); ok {
			return true
		}
	}
	return false
}

// target maps a call's route onto this backend's URL: Azure backends keep
// Azure paths (an OpenAI-style /v1/ call goes to Azure's /openai/v1/);
// OpenAI-compatible backends get /v1/ paths and no api-version.
func (b *backend) target(rt route, in *url.URL) (p, rawQuery string) {
	q := in.RawQuery
	if b.api == config.BackendAPIAzure {
		switch rt.style {
		case styleOpenAI:
			return "/openai/v1/" + rt.suffix, q
		default:
			return in.Path, q
		}
	}
	qv := in.Query()
	qv.Del("api-version")
	return "/v1/" + rt.suffix, qv.Encode()
}
