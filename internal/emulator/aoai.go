package emulator

import (
	"crypto/subtle"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// AOAIConfig configures an Azure OpenAI stand-in.
type AOAIConfig struct {
	// Deployments maps a deployment name to its underlying model, e.g.
	// "gpt-4o" -> "gpt-4o-2024-08-06". On the OpenAI-style /v1 paths the
	// deployment names serve as model names.
	Deployments map[string]string
	// APIKeys are the accepted `api-key` values.
	APIKeys []string
	// AcceptBearer reports whether an `Authorization: Bearer` token is
	// accepted (the managed-identity path). Nil rejects every bearer token
	// except, on the /openai/v1 and /v1 paths, one equal to an API key.
	AcceptBearer func(token string) bool
	// Latency is the wait before the response headers of every request that
	// reaches a model.
	Latency time.Duration
	// TokensPerSecond paces generated tokens; 0 sends them as fast as possible.
	// Streams wait between content events; non-streamed responses wait the
	// time the same tokens would take to stream.
	TokensPerSecond float64
	// CompletionTokens is how many tokens a completion has when the request
	// sets no lower maximum; 0 means about 20, varying with the prompt.
	CompletionTokens int
	// Region is sent as x-ms-region; "" means "East US".
	Region string
	// RequestLog is how many of the most recent requests Requests keeps;
	// 0 means 100,000.
	RequestLog int
}

// AOAIFault makes requests fail. The zero Status with a Delay or
// ResetAfterEvents only slows or breaks an otherwise normal response.
type AOAIFault struct {
	Deployment       string        // "" matches any deployment
	Status           int           // e.g. 429, 500, 503; 0 answers normally
	RetryAfter       time.Duration // sent as Retry-After (whole seconds, rounded up) when > 0
	RetryAfterMS     bool          // also send retry-after-ms
	ResetAfterEvents int           // stream: close the connection abruptly after N events (the prompt-filter chunk counts), no [DONE]; non-stream: close without a response
	Delay            time.Duration // slow upstream: wait before the headers
	Count            int           // how many requests it hits; 0 means 1
}

// AOAIRequest is one request the stand-in received.
type AOAIRequest struct {
	Time            time.Time
	Method          string
	Path            string
	APIVersion      string // the api-version query parameter, "" when absent
	Deployment      string // from the path, or the body's model on the v1 paths
	ClientRequestID string // the x-ms-client-request-id header
	Auth            string // "api-key", "bearer" or "" (the credential presented, accepted or not)
	Status          int    // 0 while in flight, and when the client left before any response
	Stream          bool
}

// AOAI is an Azure OpenAI data-plane stand-in; it is an http.Handler.
// It is safe for concurrent use.
type AOAI struct {
	cfg AOAIConfig
	log *slog.Logger

	mu        sync.Mutex
	faults    []AOAIFault
	requests  []AOAIRequest
	forgotten int // entries dropped from the front of requests
	windows   map[string]*aoaiWindow
	seen      map[uint64]bool // prompts seen before, for cached_tokens
}

var _ http.Handler = (*AOAI)(nil)

// NewAOAI returns a stand-in serving cfg. A nil log discards.
func NewAOAI(cfg AOAIConfig, log *slog.Logger) *AOAI {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Region == "" {
		cfg.Region = "East US"
	}
	return &AOAI{
		cfg:     cfg,
		log:     log.With("component", "aoai_emulator"),
		windows: make(map[string]*aoaiWindow),
		seen:    make(map[uint64]bool),
	}
}

// Inject queues f: the next f.Count matching requests fail this way. Faults
// are matched in the order they were injected, after authentication and
// deployment lookup succeeded.
func (a *AOAI) Inject(f AOAIFault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	a.mu.Lock()
	a.faults = append(a.faults, f)
	a.mu.Unlock()
}

// Requests returns a copy of the log of every request received, rejected
// ones included, in order of arrival.
// Only the most recent AOAIConfig.RequestLog requests are kept.
func (a *AOAI) Requests() []AOAIRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// takeFault removes one use of the first fault matching deployment.
func (a *AOAI) takeFault(deployment string) (AOAIFault, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.faults {
		f := &a.faults[i]
		if f.Deployment != "" && f.Deployment != deployment {
			continue
		}
		got := *f
		if f.Count--; f.Count == 0 {
			a.faults = slices.Delete(a.faults, i, i+1)
		}
		return got, true
	}
	return AOAIFault{}, false
}

// logRequest appends e to the request log and returns its number. The log
// keeps the most recent RequestLog entries, so a long-running emulator
// (the demo, a benchmark) does not grow without bound.
func (a *AOAI) logRequest(e AOAIRequest) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	keep := a.cfg.RequestLog
	if keep <= 0 {
		keep = defaultAOAIRequestLog
	}
	if len(a.requests) >= keep {
		half := len(a.requests) / 2
		a.requests = append(a.requests[:0], a.requests[half:]...)
		a.forgotten += half
	}
	a.requests = append(a.requests, e)
	return a.forgotten + len(a.requests) - 1
}

// updateRequest changes entry i of the log, unless it was forgotten.
func (a *AOAI) updateRequest(i int, f func(*AOAIRequest)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i -= a.forgotten; i >= 0 {
		f(&a.requests[i])
	}
}

const defaultAOAIRequestLog = 100_000

// aoaiFlavor is the family of path a request came in on.
type aoaiFlavor int

const (
	aoaiClassic aoaiFlavor = iota // /openai/deployments/{d}/..., /openai/responses, /openai/models: api-version required
	aoaiV1                        // /openai/v1/...: deployment in the body, no api-version
	aoaiOpenAI                    // /v1/...: OpenAI-compatible, model in the body
)

type aoaiOp int

const (
	aoaiOpUnknown aoaiOp = iota
	aoaiOpChat
	aoaiOpCompletions
	aoaiOpEmbeddings
	aoaiOpResponses
	aoaiOpImages
	aoaiOpSpeech
	aoaiOpTranscriptions
	aoaiOpModels
)

var aoaiOps = map[string]aoaiOp{
	"chat/completions":     aoaiOpChat,
	"completions":          aoaiOpCompletions,
	"embeddings":           aoaiOpEmbeddings,
	"responses":            aoaiOpResponses,
	"images/generations":   aoaiOpImages,
	"audio/speech":         aoaiOpSpeech,
	"audio/transcriptions": aoaiOpTranscriptions,
	"models":               aoaiOpModels,
}

// aoaiRoute maps a request path to its flavor, operation and, on the
// classic deployment paths, the deployment (azure-contracts.md §7.1).
func aoaiRoute(escapedPath string) (fl aoaiFlavor, op aoaiOp, deployment string) {
	switch {
	case strings.HasPrefix(escapedPath, "/openai/deployments/"):
		dep, rest, ok := strings.Cut(strings.TrimPrefix(escapedPath, "/openai/deployments/"), "/")
		d, err := url.PathUnescape(dep)
		op := aoaiOps[rest]
		if !ok || err != nil || d == "" || op == aoaiOpResponses || op == aoaiOpModels {
			return aoaiClassic, aoaiOpUnknown, ""
		}
		return aoaiClassic, op, d
	case escapedPath == "/openai/responses":
		return aoaiClassic, aoaiOpResponses, ""
	case escapedPath == "/openai/models":
		return aoaiClassic, aoaiOpModels, ""
	case strings.HasPrefix(escapedPath, "/openai/v1/"):
		return aoaiV1, aoaiOps[strings.TrimPrefix(escapedPath, "/openai/v1/")], ""
	case strings.HasPrefix(escapedPath, "/v1/"):
		return aoaiOpenAI, aoaiOps[strings.TrimPrefix(escapedPath, "/v1/")], ""
	}
	return aoaiClassic, aoaiOpUnknown, ""
}

// authenticate returns the credential kind presented and whether it is
// accepted. An api-key header wins over Authorization (INFERRED: the
// contract does not say which Azure checks first).
func (a *AOAI) authenticate(r *http.Request, fl aoaiFlavor) (kind string, ok bool) {
	if key := r.Header.Get("api-key"); key != "" {
		return "api-key", a.isKey(key)
	}
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	if a.cfg.AcceptBearer != nil && a.cfg.AcceptBearer(tok) {
		return "bearer", true
	}
	// The v1 API takes the key in Authorization, as the OpenAI clients send
	// it (DOC api-version-lifecycle.md: OpenAI(api_key=..., base_url=.../openai/v1/)).
	return "bearer", fl != aoaiClassic && a.isKey(tok)
}

func (a *AOAI) isKey(key string) bool {
	for _, k := range a.cfg.APIKeys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			return true
		}
	}
	return false
}

// aoaiMaxBody bounds request bodies (INFERRED: Azure's audio limit is 25 MB).
const aoaiMaxBody = 32 << 20

// ServeHTTP serves one request: route, authenticate, check the api-version,
// find the deployment, apply an injected fault, validate, then answer.
func (a *AOAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fl, op, dep := aoaiRoute(r.URL.EscapedPath())
	c := newAOAICall(a, w, r, fl, op, dep)
	defer c.done()
	kind, authenticated := a.authenticate(r, fl)
	a.updateRequest(c.entry, func(e *AOAIRequest) { e.Auth = kind })

	if op == aoaiOpUnknown {
		c.writeNotFound()
		return
	}
	wantMethod := http.MethodPost
	if op == aoaiOpModels {
		wantMethod = http.MethodGet
	}
	if r.Method != wantMethod {
		w.Header().Set("Allow", wantMethod)
		c.writeJSONError(http.StatusMethodNotAllowed, aoaiOpenAIError("Method not allowed.", "invalid_request_error", nil, nil))
		return
	}
	if !authenticated {
		c.writeUnauthorized()
		return
	}
	if fl == aoaiClassic && c.apiVersion == "" {
		c.writeNotFound()
		return
	}
	if op == aoaiOpModels {
		c.serveModels()
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, aoaiMaxBody))
	if err != nil {
		c.writeJSONError(http.StatusRequestEntityTooLarge, aoaiOpenAIError("Request body too large or unreadable.", "invalid_request_error", nil, nil))
		return
	}
	c.raw = raw
	if !c.resolveDeployment() {
		return
	}
	if !c.applyFault() {
		return
	}
	if !c.parseBody() {
		return
	}
	c.serve()
}

// serve runs the operation once the request is known to be valid.
func (c *aoaiCall) serve() {
	if c.wait(c.a.cfg.Latency) != nil {
		return // the client left; nothing is written
	}
	switch c.op {
	case aoaiOpChat:
		c.serveChat()
	case aoaiOpCompletions:
		c.serveCompletions()
	case aoaiOpResponses:
		c.serveResponses()
	case aoaiOpEmbeddings:
		c.serveEmbeddings()
	case aoaiOpImages:
		c.serveImages()
	case aoaiOpSpeech:
		c.serveSpeech()
	case aoaiOpTranscriptions:
		c.serveTranscription()
	}
}
