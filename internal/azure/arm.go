package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"

	"github.com/tapline/tapline/internal/config"
)

// maxARMBody bounds one ARM response body. An activity-log page of 200
// events is about half a megabyte (emulator note, azure-contracts.md §2.3).
const maxARMBody = 64 << 20

// ARMConfig configures an ARM client.
type ARMConfig struct {
	// Endpoint is the ARM endpoint, e.g. https://management.azure.com.
	// http:// is accepted for loopback emulators only.
	Endpoint string
	// Credential issues tokens for {Endpoint}/.default.
	Credential azcore.TokenCredential
	// Retry overrides the retry policy; zero fields take DefaultARMRetry's.
	Retry policy.RetryOptions
	// Transport replaces the HTTP client (tests); nil uses azcore's.
	Transport policy.Transporter
}

// DefaultARMRetry is the one retry policy of every ARM call: 429 and the
// transient 5xx, Retry-After honoured (azcore reads it) and capped by
// MaxRetryDelay: a longer Retry-After ends the retries with that response
// rather than stall a collection pass (STYLE.md: "Retry-After wins but is
// capped").
var DefaultARMRetry = policy.RetryOptions{
	MaxRetries:    5,
	RetryDelay:    time.Second,
	MaxRetryDelay: time.Minute,
	StatusCodes: []int{http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout},
}

// ARM sends GET requests to Azure Resource Manager through one azcore
// pipeline: bearer token for the ARM scope, the retry policy, azcore's
// logging with secrets redacted. It is safe for concurrent use.
type ARM struct {
	base *url.URL
	pl   runtime.Pipeline
}

// ARMError is a response other than 200 from ARM, after retries. Code and
// Message come from either error shape ARM uses: the envelope
// {"error":{"code","message"}} or the activity log's flat {code,message}
// (also spelled Code/Message, azure-contracts.md §2.4).
type ARMError struct {
	StatusCode int
	Code       string
	Message    string
}

func (e *ARMError) Error() string {
	if e.Code == "" && e.Message == "" {
		return fmt.Sprintf("arm: status %d", e.StatusCode)
	}
	return fmt.Sprintf("arm: status %d: %s: %s", e.StatusCode, e.Code, e.Message)
}

// NewARM returns a client for cfg.
func NewARM(cfg ARMConfig) (*ARM, error) {
	u, err := url.Parse(strings.TrimRight(cfg.Endpoint, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("arm endpoint %q is not an absolute URL", cfg.Endpoint)
	}
	insecure := false
	switch u.Scheme {
	case "https":
	case "http":
		if !config.IsLoopback(u.Hostname()) {
			return nil, fmt.Errorf("arm endpoint %q: http is allowed only on loopback", cfg.Endpoint)
		}
		insecure = true // an emulator (DESIGN.md §4); the caller logs the warning
	default:
		return nil, fmt.Errorf("arm endpoint %q: scheme must be https", cfg.Endpoint)
	}
	if cfg.Credential == nil {
		return nil, errors.New("arm: no credential")
	}
	retry := cfg.Retry
	d := DefaultARMRetry
	if retry.MaxRetries == 0 {
		retry.MaxRetries = d.MaxRetries
	}
	if retry.RetryDelay == 0 {
		retry.RetryDelay = d.RetryDelay
	}
	if retry.MaxRetryDelay == 0 {
		retry.MaxRetryDelay = d.MaxRetryDelay
	}
	if retry.StatusCodes == nil {
		retry.StatusCodes = d.StatusCodes
	}
	bearer := runtime.NewBearerTokenPolicy(cfg.Credential, []string{u.String() + "/.default"},
		&policy.BearerTokenOptions{InsecureAllowCredentialWithHTTP: insecure})
	opts := &policy.ClientOptions{Retry: retry, Transport: cfg.Transport}
	pl := runtime.NewPipeline("tapline/arm", "v1", runtime.PipelineOptions{PerRetry: []policy.Policy{bearer}}, opts)
	return &ARM{base: u, pl: pl}, nil
}

// Endpoint returns the ARM endpoint without a trailing slash.
func (c *ARM) Endpoint() string { return c.base.String() }

// URL returns the absolute URL of path (starting with /) with query.
func (c *ARM) URL(path string, query url.Values) string {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode()
	return u.String()
}

// Get fetches rawURL, which must be on the ARM endpoint (a nextLink is
// followed verbatim, but never to another host: the token goes with it),
// and returns the body of a 200. Any other final status is an *ARMError.
func (c *ARM) Get(ctx context.Context, rawURL string) ([]byte, error) {
	return c.Do(ctx, http.MethodGet, rawURL, nil)
}

// Put sends body (JSON) to rawURL with PUT, an idempotent write that the
// retry policy may repeat, and returns the body of a 200 or 201.
func (c *ARM) Put(ctx context.Context, rawURL string, body []byte) ([]byte, error) {
	return c.Do(ctx, http.MethodPut, rawURL, body)
}

// Do sends one request through the pipeline; see Get.
func (c *ARM) Do(ctx context.Context, method, rawURL string, reqBody []byte) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	if !strings.EqualFold(u.Scheme, c.base.Scheme) || !strings.EqualFold(u.Host, c.base.Host) {
		return nil, fmt.Errorf("refuse to follow %s://%s: not the ARM endpoint", u.Scheme, u.Host)
	}
	req, err := runtime.NewRequest(ctx, method, rawURL)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Raw().Header.Set("Accept", "application/json")
	if reqBody != nil {
		if err := req.SetBody(streaming.NopCloser(bytes.NewReader(reqBody)), "application/json"); err != nil {
			return nil, fmt.Errorf("build request: %w", err)
		}
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", strings.ToLower(method), u.Path, err)
	}
	defer resp.Body.Close()
	// The pipeline's body download policy has read the body already;
	// Payload hands out those bytes without another copy.
	body, err := runtime.Payload(resp)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u.Path, err)
	}
	if len(body) > maxARMBody {
		return nil, fmt.Errorf("read %s: body larger than %d bytes", u.Path, maxARMBody)
	}
	if resp.StatusCode != http.StatusOK && !(method == http.MethodPut && resp.StatusCode == http.StatusCreated) {
		return nil, ParseARMError(resp.StatusCode, body)
	}
	return body, nil
}

// ParseARMError builds the *ARMError of a response. encoding/json matches
// keys case-insensitively, which covers Code/Message and code/message.
func ParseARMError(status int, body []byte) *ARMError {
	var b struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Error   *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	e := &ARMError{StatusCode: status}
	if json.Unmarshal(body, &b) != nil {
		return e
	}
	e.Code, e.Message = b.Code, b.Message
	if b.Error != nil {
		e.Code, e.Message = b.Error.Code, b.Error.Message
	}
	return e
}

// IsStatus reports whether err is an *ARMError with one of statuses.
func IsStatus(err error, statuses ...int) bool {
	var ae *ARMError
	if !errors.As(err, &ae) {
		return false
	}
	for _, s := range statuses {
		if ae.StatusCode == s {
			return true
		}
	}
	return false
}

// ARMEndpoint returns the configured ARM endpoint (defaults applied).
func ARMEndpoint(cfg config.Azure) string {
	if cfg.ARMEndpoint != "" {
		return cfg.ARMEndpoint
	}
	if cl, ok := config.Clouds[cfg.Cloud]; ok {
		return cl.ARM
	}
	return config.Clouds["public"].ARM
}
