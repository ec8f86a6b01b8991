// Package gateway is the AI gateway: an http.Handler that authenticates the
// caller, forwards the call to an Azure OpenAI or OpenAI-compatible backend
// with the gateway's own credential, and records the call: who, from where,
// what was asked, what came back and how many tokens it took.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapline/tapline/internal/auth"
	"github.com/tapline/tapline/internal/config"
	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/usage"
)

// HeaderRequestID is the response header that tells a caller the id of the
// audit record of its call.
const HeaderRequestID = "X-Tapline-Request-Id"

// Authenticator identifies the caller of a request. It returns an error
// only when it cannot decide (an identity provider is unreachable); bad
// credentials are a Result that is not OK.
type Authenticator interface {
	Authenticate(r *http.Request) (auth.Result, error)
}

// TokenSource gives the gateway a bearer token for managed-identity backends.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// Options are the parts a Gateway is built from.
type Options struct {
	Config    *config.Gateway
	Journal   record.Journal
	Auth      Authenticator
	Tokens    TokenSource       // required when a backend uses managed_identity
	Transport http.RoundTripper // nil: a transport tuned for many calls to few hosts
	Estimator *usage.Estimator  // nil: a new one
	Now       func() time.Time  // nil: time.Now
	// Limiter admits calls against Rules (gateway.limits); nil limits
	// nothing. Close closes it when it is an io.Closer.
	Limiter ratelimit.Limiter
	Rules   ratelimit.Rules
}

// Gateway is the AI gateway handler. It is safe for concurrent use.
type Gateway struct {
	journal  record.Journal
	auth     Authenticator
	backends []*backend
	pool     *pool
	capture  *capturer
	est      *usage.Estimator
	trusted  []netip.Prefix
	proxy    *httputil.ReverseProxy
	log      *slog.Logger
	now      func() time.Time
	strict   bool
	maxBody  int64
	timeout  time.Duration

	limiter   ratelimit.Limiter
	rules     ratelimit.Rules
	maxOutput int64 // output tokens estimated when a request sets no max

	dropped          atomic.Int64 // records the store did not take (standard audit)
	lastDrop         atomic.Int64 // unix seconds of the last drop logged
	lastReconcileErr atomic.Int64 // unix seconds of the last reconcile failure logged
	limDegraded      atomic.Bool  // the limiter's fallback state last logged
}

// Stats are the gateway's counters.
type Stats struct {
	Dropped int64 // records lost because the store refused them (standard audit)
}

// New builds a Gateway.
func New(o Options, logger *slog.Logger) (*Gateway, error) {
	cfg := o.Config
	g := &Gateway{
		journal: o.Journal,
		auth:    o.Auth,
		capture: newCapturer(cfg),
		est:     o.Estimator,
		log:     logger.With("component", "gateway"),
		now:     o.Now,
		strict:  cfg.Audit != config.AuditStandard,
		maxBody: int64(cfg.MaxRequestBytes),
		timeout: cfg.Timeout.D(),

		limiter:   o.Limiter,
		rules:     o.Rules,
		maxOutput: defaultMaxOutput,
	}
	if cfg.Limits != nil && cfg.Limits.MaxOutputTokens > 0 {
		g.maxOutput = cfg.Limits.MaxOutputTokens
	}
	if g.est == nil {
		g.est = usage.NewEstimator()
	}
	if g.now == nil {
		g.now = time.Now
	}
	for _, s := range cfg.TrustedProxies {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy: %w", err)
		}
		g.trusted = append(g.trusted, p)
	}
	var err error
	if g.backends, err = newBackends(cfg.Backends, o.Tokens); err != nil {
		return nil, err
	}
	tr := o.Transport
	if tr == nil {
		tr = NewTransport()
	}
	g.pool = newPool(g.backends, g.now, rand.IntN)
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      &failover{g: g, base: tr},
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.errorHandler,
		BufferPool:     copyBuffers,
		ErrorLog:       log.New(io.Discard, "", 0), // every failure is in the call's record
	}
	return g, nil
}

// NewTransport returns an http.Transport for a gateway: many idle
// connections per backend host (the default of 2 makes a busy proxy dial
// on most calls), HTTP/2 where the backend offers it.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats { return Stats{Dropped: g.dropped.Load()} }

type callKey struct{}

// ServeHTTP handles one call: authenticate, route, read the body, admit it
// against its limits, commit the started record (strict audit), forward,
// and record the outcome.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := g.newCall(r)
	w.Header().Set(HeaderRequestID, c.id)
	defer g.end(c, w)

	res, err := g.auth.Authenticate(r)
	c.rec.Principal = res.Principal
	switch {
	case err != nil:
		g.log.Error("cannot verify credentials", "request_id", c.id, "err", err)
		c.refuse(w, http.StatusServiceUnavailable, "503",
			"the gateway cannot verify credentials right now (its identity provider is unreachable); try again later")
		return
	case !res.OK:
		c.refuse(w, res.Status, "", res.Reason)
		return
	}
	rt, rerr := parseRoute(r)
	if rerr != nil {
		c.refuse(w, rerr.status, rerr.code, rerr.message)
		return
	}
	c.route = rt
	c.rec.Operation, c.rec.APIVersion, c.rec.Deployment = rt.op, rt.apiVersion, rt.deployment
	if !g.readBody(c, w, r) {
		return
	}
	order, wait := g.pool.order(c.rec.Deployment)
	switch {
	case len(order) == 0 && wait == 0:
		c.refuse(w, http.StatusNotFound, "DeploymentNotFound",
			fmt.Sprintf("no backend of this gateway serves deployment %q", c.rec.Deployment))
		return
	case len(order) == 0:
		secs := int64((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		c.refuse(w, http.StatusTooManyRequests, "429", fmt.Sprintf(
			"every backend of deployment %q is cooling down after a 429 or failing; retry after %d seconds",
			c.rec.Deployment, secs))
		return
	}
	b := order[0]
	c.candidates, c.backend = order, b
	c.rec.Backend = b.name
	if !g.admit(c, w, r) {
		return
	}
	if !g.prepareUpstream(c, w) {
		return
	}
	if g.strict {
		buf := getBuffer() // Begin copies the record (record.Journal)
		c.bufs = append(c.bufs, buf)
		if err := g.journal.Begin(r.Context(), c.marshal(record.StateStarted, buf)); err != nil {
			g.log.Error("audit store refused a call, answered 503", "request_id", c.id, "err", err)
			c.refuse(w, http.StatusServiceUnavailable, "503",
				"the gateway cannot record this call right now, so it was not forwarded; try again later")
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), callKey{}, c), g.timeout)
	defer cancel()
	g.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// readBody reads and inspects the request body: size bound, JSON syntax,
// the model that routes body-routed calls, the stream flag.
func (g *Gateway) readBody(c *call, w http.ResponseWriter, r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		buf := getBuffer()
		c.bufs = append(c.bufs, buf)
		_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, g.maxBody))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			c.rec.RequestBytes = r.ContentLength
			c.refuse(w, http.StatusRequestEntityTooLarge, "413",
				fmt.Sprintf("the request body is larger than the gateway's limit of %d bytes", g.maxBody))
			return false
		case err != nil:
			c.refuse(w, http.StatusBadRequest, "400", "could not read the request body: "+err.Error())
			return false
		}
		c.body = buf.Bytes()
	}
	c.rec.RequestBytes = int64(len(c.body))
	c.jsonBody = isJSON(c.contentType, c.body)
	if c.jsonBody {
		info, err := usage.ParseRequest(c.route.op, c.body)
		if err != nil {
			c.refuse(w, http.StatusBadRequest, "400", "the request body is not valid JSON: "+err.Error())
			return false
		}
		c.info = info
		c.rec.ModelRequested, c.rec.Stream = info.Model, info.Stream
	}
	if c.route.bodyRouted(r.Method) {
		c.rec.Deployment = c.info.Model
		if c.rec.Deployment == "" && c.route.op != record.OpModels && c.route.op != record.OpOther {
			c.refuse(w, http.StatusBadRequest, "400", `the "model" field is required: it names the deployment to call`)
			return false
		}
	}
	return true
}

// prepareUpstream builds the body and credential the backend will see.
func (g *Gateway) prepareUpstream(c *call, w http.ResponseWriter) bool {
	c.baseBody = c.body
	op := c.route.op
	if c.info.Stream && !c.info.IncludeUsage && (op == record.OpChatCompletions || op == record.OpCompletions) &&
		c.route.supportsIncludeUsage() {
		// Ask for usage the caller did not ask for; usage.Stream removes it
		// again so the caller sees exactly what it asked for.
		if out, err := usage.InjectIncludeUsage(c.body); err == nil {
			c.baseBody, c.dropUsage = out, true
		}
	}
	c.outBody = g.upstreamBody(c, c.backend)
	if c.jsonBody || isText(c.contentType) {
		c.rec.Prompt = g.capture.capture(c.body, int64(len(c.body)))
	} else if len(c.body) > 0 {
		c.rec.Prompt = g.capture.omitted(int64(len(c.body)), "not text: "+c.contentType)
	}
	name, value, err := c.backend.credential(c.clientCtx)
	if err != nil {
		g.log.Error("no credential for backend", "backend", c.backend.name, "request_id", c.id, "err", err)
		c.refuse(w, http.StatusServiceUnavailable, "503",
			"the gateway could not obtain its credential for backend "+c.backend.name)
		return false
	}
	c.credName, c.credValue = name, value
	return true
}

// upstreamBody is the body backend b gets: an OpenAI-compatible backend
// called on a deployment path needs the deployment as the body's model.
func (g *Gateway) upstreamBody(c *call, b *backend) []byte {
	if b.api == config.BackendAPIOpenAI && c.route.style == styleDeployment && c.info.Model == "" && c.jsonBody {
		return setModel(c.baseBody, c.rec.Deployment)
	}
	return c.baseBody
}

// rewrite turns the inbound request into the backend request. The caller's
// credentials and cookies are never forwarded; X-Forwarded-For keeps the
// chain only when the peer is a trusted proxy.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	c := pr.In.Context().Value(callKey{}).(*call)
	b := c.backend
	c.inURL = pr.In.URL
	p, q := b.target(c.route, pr.In.URL)
	out := pr.Out
	out.URL.Scheme, out.URL.Host = b.base.Scheme, b.base.Host
	out.URL.Path, out.URL.RawPath, out.URL.RawQuery = b.base.Path+p, "", q
	out.Host = ""
	h := out.Header
	for _, k := range strippedHeaders {
		delete(h, k)
	}
	if c.peerTrusted {
		if xff := pr.In.Header["X-Forwarded-For"]; len(xff) > 0 {
			h["X-Forwarded-For"] = xff
		}
	}
	pr.SetXForwarded()
	h[c.credName] = []string{c.credValue}
	if h.Get("X-Ms-Client-Request-Id") == "" {
		h["X-Ms-Client-Request-Id"] = []string{c.id}
	}
	setBody(out, c.outBody)
}

// strippedHeaders never reach a backend: the caller's credentials, its
// cookies, and Accept-Encoding (the transport negotiates and decodes gzip
// itself, so the gateway can read usage from the body).
var strippedHeaders = []string{"Authorization", "Api-Key", "Ocp-Apim-Subscription-Key", "Cookie", "Accept-Encoding"}

// modifyResponse notes the upstream's answer and puts a tap on its body.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	c := resp.Request.Context().Value(callKey{}).(*call)
	c.headersAt = g.now()
	c.rec.UpstreamStatus = resp.StatusCode
	h := resp.Header
	c.rec.Upstream = record.UpstreamIDs{
		APIMRequestID: h.Get("Apim-Request-Id"),
		RequestID:     h.Get("X-Request-Id"),
		Region:        h.Get("X-Ms-Region"),
	}
	c.retryAfterMS = retryAfterMS(h)
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		// The backend refused the gateway's own credential: not the
		// caller's fault, and nothing the caller can fix.
		refusal(resp, c.backend.name)
	}
	c.respStatus = resp.StatusCode
	c.respType = resp.Header.Get("Content-Type")
	t := &tap{rc: resp.Body, c: c}
	if strings.HasPrefix(c.respType, "text/event-stream") {
		c.stream = usage.NewStream(c.route.op, resp.Body, usage.StreamOptions{
			DropUsage: c.dropUsage, MaxText: g.capture.max, Now: g.now})
		t.rc = c.stream
	} else if isJSON(c.respType, nil) || isText(c.respType) {
		t.keep = parseLimit
		t.buf = getBuffer()
		c.bufs = append(c.bufs, t.buf)
	}
	c.tap = t
	resp.Body = t
	if c.admitted {
		// With limits on, these headers are the caller's own budget, never
		// a mix with the deployment's (which the caller cannot act on).
		for _, k := range rateLimitHeaders {
			delete(resp.Header, k)
		}
		c.decision.SetHeaders(resp.Header)
	}
	return nil
}

// refusal replaces a backend's 401 or 403 with a 502 that says the
// gateway's credential was refused; the upstream body is kept for the record.
func refusal(resp *http.Response, backend string) {
	msg := fmt.Sprintf("backend %s refused the gateway's credential (%d); the gateway's configuration needs fixing",
		backend, resp.StatusCode)
	body, _ := json.Marshal(map[string]map[string]string{"error": {"code": "502", "message": msg}})
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.StatusCode, resp.Status = http.StatusBadGateway, "502 Bad Gateway"
	resp.ContentLength = int64(len(body))
	resp.Header = http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(body))}}
}

// errorHandler is the one place where a failure to get a response from
// the backend becomes a response to the caller.
func (g *Gateway) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	c := r.Context().Value(callKey{}).(*call)
	c.upstreamErr = err
	switch {
	case c.clientCtx.Err() != nil:
		c.rec.Status = statusClientClosed // nobody to answer
	case errors.Is(err, context.DeadlineExceeded):
		c.fail(w, http.StatusGatewayTimeout, "504",
			fmt.Sprintf("backend %s did not answer within %s", c.backend.name, g.timeout))
	default:
		c.fail(w, http.StatusBadGateway, "502",
			fmt.Sprintf("the gateway could not reach backend %s: %v", c.backend.name, err))
	}
}

// parseLimit bounds how much of a JSON response is kept to read its usage.
const parseLimit = 8 << 20

var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer {
	b := buffers.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 { // do not pin big bodies in the pool
		buffers.Put(b)
	}
}
