package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// aoaiCall is the state of one request being served.
type aoaiCall struct {
	a     *AOAI
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	start time.Time
	entry int // index in a.requests

	flavor     aoaiFlavor
	op         aoaiOp
	apiVersion string
	deployment string
	model      string // the underlying model of deployment

	requestID       string // apim-request-id
	xRequestID      string // x-request-id
	clientRequestID string

	raw     []byte
	body    aoaiBody
	bodyErr error
	fault   AOAIFault // the fault taken for this request, zero if none
}

// aoaiBody holds the request fields any operation reads.
type aoaiBody struct {
	Model         string            `json:"model"`
	Messages      []json.RawMessage `json:"messages"`
	Prompt        json.RawMessage   `json:"prompt"`
	Input         json.RawMessage   `json:"input"`
	Instructions  string            `json:"instructions"`
	Stream        bool              `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	MaxOutputTokens     *int            `json:"max_output_tokens"`
	Logprobs            json.RawMessage `json:"logprobs"`
	TopLogprobs         int             `json:"top_logprobs"`
	EncodingFormat      string          `json:"encoding_format"`
	Dimensions          *int            `json:"dimensions"`
	N                   int             `json:"n"`
	ResponseFormat      json.RawMessage `json:"response_format"`

	// From a multipart upload (audio/transcriptions).
	file       []byte
	fileName   string
	textFormat string
}

func newAOAICall(a *AOAI, w http.ResponseWriter, r *http.Request, fl aoaiFlavor, op aoaiOp, dep string) *aoaiCall {
	c := &aoaiCall{
		a:               a,
		w:               w,
		r:               r,
		ctx:             r.Context(),
		start:           time.Now(),
		flavor:          fl,
		op:              op,
		apiVersion:      r.URL.Query().Get("api-version"),
		deployment:      dep,
		requestID:       uuid.NewString(),
		xRequestID:      uuid.NewString(),
		clientRequestID: r.Header.Get("x-ms-client-request-id"),
	}
	c.entry = a.logRequest(AOAIRequest{
		Time:            c.start,
		Method:          r.Method,
		Path:            r.URL.Path,
		APIVersion:      c.apiVersion,
		Deployment:      dep,
		ClientRequestID: c.clientRequestID,
	})
	return c
}

func (c *aoaiCall) done() {
	var e AOAIRequest
	c.a.updateRequest(c.entry, func(r *AOAIRequest) { e = *r })
	c.a.log.Debug("request served", "method", e.Method, "path", e.Path, "deployment", e.Deployment,
		"status", e.Status, "stream", e.Stream, "auth", e.Auth, "request_id", c.requestID)
}

// writeHeader records status in the request log and sends the headers.
func (c *aoaiCall) writeHeader(status int) {
	c.a.updateRequest(c.entry, func(e *AOAIRequest) { e.Status = status })
	c.w.WriteHeader(status)
}

// wait pauses for d unless the client leaves first.
func (c *aoaiCall) wait(d time.Duration) error {
	return aoaiSleep(c.ctx, d)
}

func aoaiSleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// resolveDeployment finds the deployment, from the path or the body, and
// rejects an unknown one with the recorded 404.
func (c *aoaiCall) resolveDeployment() bool {
	if c.op == aoaiOpTranscriptions {
		c.bodyErr = c.parseMultipart()
	} else {
		c.bodyErr = json.Unmarshal(c.raw, &c.body)
	}
	c.a.updateRequest(c.entry, func(e *AOAIRequest) { e.Stream = c.body.Stream })
	if c.deployment == "" {
		if c.bodyErr != nil {
			c.writeBadRequest(c.bodyErr)
			return false
		}
		if c.body.Model == "" {
			c.writeJSONError(http.StatusBadRequest, aoaiOpenAIError("Missing required parameter: 'model'.", "invalid_request_error", "model", "missing_required_parameter"))
			return false
		}
		c.deployment = c.body.Model
		c.a.updateRequest(c.entry, func(e *AOAIRequest) { e.Deployment = c.deployment })
	}
	model, ok := c.a.cfg.Deployments[c.deployment]
	if !ok {
		c.writeDeploymentNotFound()
		return false
	}
	c.model = model
	return true
}

// applyFault takes a matching injected fault: it waits its Delay, then
// either answers with its Status or lets the request go on.
func (c *aoaiCall) applyFault() bool {
	f, ok := c.a.takeFault(c.deployment)
	if !ok {
		return true
	}
	c.fault = f
	if c.wait(f.Delay) != nil {
		return false // the client left; nothing is written
	}
	if f.Status != 0 {
		c.writeFault(f)
		return false
	}
	if f.ResetAfterEvents > 0 && !c.body.Stream {
		aoaiAbort(c.w)
	}
	return true
}

// parseBody rejects a malformed body or one missing its required field.
func (c *aoaiCall) parseBody() bool {
	if c.bodyErr != nil {
		c.writeBadRequest(c.bodyErr)
		return false
	}
	missing := ""
	switch c.op {
	case aoaiOpChat:
		if len(c.body.Messages) == 0 {
			missing = "messages"
		}
	case aoaiOpCompletions:
		if aoaiAbsent(c.body.Prompt) {
			missing = "prompt"
		}
	case aoaiOpEmbeddings, aoaiOpResponses, aoaiOpSpeech:
		if aoaiAbsent(c.body.Input) {
			missing = "input"
		}
	case aoaiOpImages:
		if aoaiAbsent(c.body.Prompt) {
			missing = "prompt"
		}
	case aoaiOpTranscriptions:
		if c.body.file == nil {
			missing = "file"
		}
	}
	if missing != "" {
		// INFERRED: OpenAI's wording; no Azure recording of this rejection.
		c.writeJSONError(http.StatusBadRequest, aoaiOpenAIError(
			fmt.Sprintf("Missing required parameter: '%s'.", missing), "invalid_request_error", missing, "missing_required_parameter"))
		return false
	}
	return true
}

func aoaiAbsent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// parseMultipart reads an audio upload: fields file, model, response_format.
func (c *aoaiCall) parseMultipart() error {
	_, params, err := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("parse content type: %w", err)
	}
	mr := multipart.NewReader(bytes.NewReader(c.raw), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read multipart body: %w", err)
		}
		v, err := io.ReadAll(p)
		if err != nil {
			return fmt.Errorf("read part %s: %w", p.FormName(), err)
		}
		switch p.FormName() {
		case "file":
			c.body.file, c.body.fileName = v, p.FileName()
		case "model":
			c.body.Model = string(v)
		case "response_format":
			c.body.textFormat = string(v)
		}
	}
}

// Header sets, each as recorded (azure-contracts.md §7.6 and the fixtures).

// setGatewayHeaders is what Azure's front door sends on its own rejections
// (aoai-error-404-deployment-not-found.recorded.json).
func (c *aoaiCall) setGatewayHeaders() {
	h := c.w.Header()
	if c.flavor == aoaiOpenAI {
		h.Set("x-request-id", c.xRequestID)
		return
	}
	h.Set("apim-request-id", c.requestID)
	h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains; preload")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("x-ms-region", c.a.cfg.Region)
}

// setModelHeaders is what a response that reached a model carries
// (aoai-chat-completion.recorded.json, aoai-error-400-content-filter.recorded.json);
// tokens is charged to the deployment's rate-limit window.
func (c *aoaiCall) setModelHeaders(tokens int) {
	c.setGatewayHeaders()
	h := c.w.Header()
	req, tok := c.a.charge(c.deployment, tokens)
	h.Set("x-ratelimit-remaining-requests", strconv.Itoa(req))
	h.Set("x-ratelimit-remaining-tokens", strconv.Itoa(tok))
	if c.flavor == aoaiOpenAI {
		return
	}
	h.Set("X-Request-ID", c.xRequestID)
	// When the client sends none, Azure answers with the apim-request-id
	// (aoai-error-400-content-filter.recorded.json).
	if c.clientRequestID != "" {
		h.Set("x-ms-client-request-id", c.clientRequestID)
	} else {
		h.Set("x-ms-client-request-id", c.requestID)
	}
	if c.flavor == aoaiV1 {
		h.Set("x-ms-deployment-name", c.deployment) // REC v1Endpoint.json
	}
}

// setSuccessHeaders adds what a successful model response carries.
func (c *aoaiCall) setSuccessHeaders(tokens int) {
	c.setModelHeaders(tokens)
	if c.flavor == aoaiOpenAI {
		return
	}
	h := c.w.Header()
	// INFERRED format, after "d058-20241218020907".
	h.Set("azureml-model-session", fmt.Sprintf("d%03d-%s", aoaiHash(c.model)%1000, c.start.UTC().Format("20060102150405")))
	h.Set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(c.start).Milliseconds(), 10))
	switch c.op {
	case aoaiOpEmbeddings:
		h.Set("ms-azureml-model-time", strconv.FormatInt(time.Since(c.start).Milliseconds(), 10))
	case aoaiOpChat, aoaiOpCompletions, aoaiOpResponses:
		h.Set("x-ms-rai-invoked", "true")
	}
}

// Rate-limit windows. INFERRED: per-deployment limits and one-minute
// windows; the recordings show only the remaining counts.
const (
	aoaiLimitRequests = 1000
	aoaiLimitTokens   = 1_000_000
)

type aoaiWindow struct {
	start            time.Time
	requests, tokens int
}

// charge counts one request of tokens and returns what remains.
func (a *AOAI) charge(deployment string, tokens int) (requests, remTokens int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.windows[deployment]
	now := time.Now()
	if w == nil || now.Sub(w.start) >= time.Minute {
		w = &aoaiWindow{start: now}
		a.windows[deployment] = w
	}
	w.requests++
	w.tokens += tokens
	return max(aoaiLimitRequests-w.requests, 0), max(aoaiLimitTokens-w.tokens, 0)
}
