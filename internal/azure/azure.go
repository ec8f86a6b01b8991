// Package azure builds the one Azure credential Tapline uses, from the
// `azure` configuration section, and caches the tokens it issues.
package azure

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/tapline/tapline/internal/config"
)

// CognitiveServicesScope is the scope of tokens for Azure OpenAI
// (azure-contracts.md §7.2).
const CognitiveServicesScope = "https://cognitiveservices.azure.com/.default"

// NewCredential returns the credential named by cfg.Credential: azidentity's
// DefaultAzureCredential chain (environment service principal, workload
// identity, managed identity, Azure CLI), or a bearer token obtained
// elsewhere and used as is.
func NewCredential(cfg config.Azure) (azcore.TokenCredential, error) {
	switch cfg.Credential {
	case config.CredentialToken:
		return staticToken(cfg.AccessToken), nil
	case config.CredentialDefault, "":
		opts := &azidentity.DefaultAzureCredentialOptions{
			TenantID:      cfg.TenantID,
			ClientOptions: policy.ClientOptions{Cloud: cloudConfig(cfg)},
		}
		cred, err := azidentity.NewDefaultAzureCredential(opts)
		if err != nil {
			return nil, fmt.Errorf("create default azure credential: %w", err)
		}
		return cred, nil
	}
	return nil, fmt.Errorf("unknown credential %q", cfg.Credential)
}

func cloudConfig(cfg config.Azure) cloud.Configuration {
	c := cloud.AzurePublic
	switch cfg.Cloud {
	case "usgovernment":
		c = cloud.AzureGovernment
	case "china":
		c = cloud.AzureChina
	}
	if cfg.Authority != "" {
		c.ActiveDirectoryAuthorityHost = cfg.Authority
	}
	return c
}

// staticToken is a token obtained elsewhere (az account get-access-token).
type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TokenSource hands out a cached token for one scope, refreshing it five
// minutes before it expires (or at the credential's RefreshOn). Concurrent
// callers share one refresh. It is the gateway's hot path for managed
// identity, so the common case takes a read lock only.
type TokenSource struct {
	cred  azcore.TokenCredential
	scope string
	now   func() time.Time

	mu  sync.RWMutex
	tok azcore.AccessToken
}

// NewTokenSource returns a TokenSource for scope.
func NewTokenSource(cred azcore.TokenCredential, scope string) *TokenSource {
	return &TokenSource{cred: cred, scope: scope, now: time.Now}
}

const refreshMargin = 5 * time.Minute

// Token returns a valid token, from the cache when it is fresh.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	s.mu.RLock()
	tok := s.tok
	s.mu.RUnlock()
	if s.fresh(tok) {
		return tok.Token, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fresh(s.tok) {
		return s.tok.Token, nil
	}
	t, err := s.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{s.scope}})
	if err != nil {
		// A token that is stale but not expired still works: use it and
		// try again on the next call.
		if s.tok.Token != "" && s.now().Before(s.tok.ExpiresOn) {
			return s.tok.Token, nil
		}
		return "", fmt.Errorf("get token for %s: %w", s.scope, err)
	}
	s.tok = t
	return t.Token, nil
}

func (s *TokenSource) fresh(t azcore.AccessToken) bool {
	if t.Token == "" {
		return false
	}
	now := s.now()
	if !t.RefreshOn.IsZero() && !now.Before(t.RefreshOn) {
		return false
	}
	return now.Add(refreshMargin).Before(t.ExpiresOn)
}
