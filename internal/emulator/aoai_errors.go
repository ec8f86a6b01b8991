package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// Recorded error bodies, byte for byte as on the wire: each has the length
// of the Content-Length recorded with it.
const (
	// aoai-error-401-bad-key.recorded.json (Content-Length 224).
	aoaiBody401 = `{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}`

	// aoai-error-404-deployment-not-found.recorded.json (Content-Length 198:
	// the compact JSON is 197 bytes; INFERRED that the 198th is a newline).
	aoaiBody404Deployment = `{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}` + "\n"

	// aoai-error-400-content-filter.recorded.json (Content-Length 620: the
	// apostrophe travels unescaped; the recorder wrote it as \u0027).
	aoaiBody400ContentFilter = `{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":true,"severity":"medium"}}}}}`

	// INFERRED: Azure's answer to a path it does not serve, or a classic
	// path without api-version; no recording in the fixtures.
	aoaiBody404Resource = `{"error":{"code":"404","message":"Resource not found"}}`
)

// aoaiFilterTrigger is the phrase the content filter blocks, after the
// recorded prompt "How do I rob a bank with violence?".
const aoaiFilterTrigger = "rob a bank"

// aoaiOpenAIError builds an OpenAI-shaped error body (INFERRED for Azure:
// the fixtures record only the envelopes above).
func aoaiOpenAIError(message, typ string, param, code any) []byte {
	body := struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Param   any    `json:"param"`
			Code    any    `json:"code"`
		} `json:"error"`
	}{}
	body.Error.Message, body.Error.Type, body.Error.Param, body.Error.Code = message, typ, param, code
	return aoaiMarshal(body)
}

// aoaiAzureError builds the {"error":{"code","message"}} envelope.
func aoaiAzureError(code, message string) []byte {
	body := struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{}
	body.Error.Code, body.Error.Message = code, message
	return aoaiMarshal(body)
}

// aoaiMarshal encodes v compactly without HTML escaping, as Azure does.
func aoaiMarshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("emulator: marshal %T: %v", v, err)) // only our own types are marshalled
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func (c *aoaiCall) writeBody(status int, contentType string, body []byte) {
	c.w.Header().Set("Content-Type", contentType)
	c.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	c.writeHeader(status)
	_, _ = c.w.Write(body) // a write error means the client left
}

// writeJSONError sends an error that is not one of the recorded ones.
func (c *aoaiCall) writeJSONError(status int, body []byte) {
	if c.model != "" {
		c.setModelHeaders(0)
	} else {
		c.setGatewayHeaders()
	}
	c.writeBody(status, "application/json", body)
}

// writeUnauthorized sends the recorded 401, with only the headers recorded.
func (c *aoaiCall) writeUnauthorized() {
	if c.flavor == aoaiOpenAI {
		// INFERRED: OpenAI's wording.
		c.setGatewayHeaders()
		c.writeBody(http.StatusUnauthorized, "application/json", aoaiOpenAIError(
			"Incorrect API key provided.", "invalid_request_error", nil, "invalid_api_key"))
		return
	}
	c.w.Header().Set("apim-request-id", c.requestID)
	c.writeBody(http.StatusUnauthorized, "application/json", []byte(aoaiBody401))
}

// writeDeploymentNotFound sends the recorded 404 with its recorded headers.
func (c *aoaiCall) writeDeploymentNotFound() {
	c.setGatewayHeaders()
	if c.flavor == aoaiOpenAI {
		// INFERRED: OpenAI's wording.
		c.writeBody(http.StatusNotFound, "application/json", aoaiOpenAIError(
			fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", c.deployment),
			"invalid_request_error", nil, "model_not_found"))
		return
	}
	c.writeBody(http.StatusNotFound, "application/json", []byte(aoaiBody404Deployment))
}

// writeNotFound answers an unknown path or a missing api-version (INFERRED).
func (c *aoaiCall) writeNotFound() {
	c.setGatewayHeaders()
	if c.flavor == aoaiOpenAI {
		c.writeBody(http.StatusNotFound, "application/json", aoaiOpenAIError(
			fmt.Sprintf("Invalid URL (%s %s)", c.r.Method, c.r.URL.Path), "invalid_request_error", nil, nil))
		return
	}
	c.writeBody(http.StatusNotFound, "application/json", []byte(aoaiBody404Resource))
}

// writeBadRequest answers a body that is not valid JSON (INFERRED wording).
func (c *aoaiCall) writeBadRequest(err error) {
	c.writeJSONError(http.StatusBadRequest, aoaiOpenAIError(
		fmt.Sprintf("We could not parse the JSON body of your request. (%v)", err), "invalid_request_error", nil, nil))
}

// filtered reports whether the prompt trips the content filter, and if so
// sends the recorded 400 with its recorded headers.
func (c *aoaiCall) filtered(prompt string, promptTokens int) bool {
	if c.flavor == aoaiOpenAI || !strings.Contains(strings.ToLower(prompt), aoaiFilterTrigger) {
		return false
	}
	c.setModelHeaders(promptTokens)
	h := c.w.Header()
	h.Set("ms-azureml-model-error-reason", "model_error")
	h.Set("ms-azureml-model-error-statuscode", "400")
	c.writeBody(http.StatusBadRequest, "application/json", []byte(aoaiBody400ContentFilter))
	return true
}

// aoaiOperations names operations in 429 messages. ChatCompletions_Create
// is recorded (aoai-error-429.excerpts.txt); the others are INFERRED.
var aoaiOperations = map[aoaiOp]string{
	aoaiOpChat:           "ChatCompletions_Create",
	aoaiOpCompletions:    "Completions_Create",
	aoaiOpEmbeddings:     "Embeddings_Create",
	aoaiOpResponses:      "Responses_Create",
	aoaiOpImages:         "ImageGenerations_Create",
	aoaiOpSpeech:         "AudioSpeech_Create",
	aoaiOpTranscriptions: "AudioTranscriptions_Create",
}

// writeFault answers with an injected error status.
func (c *aoaiCall) writeFault(f AOAIFault) {
	c.setModelHeaders(0)
	secs := int(math.Ceil(f.RetryAfter.Seconds()))
	if f.RetryAfter > 0 {
		c.w.Header().Set("Retry-After", strconv.Itoa(secs))
		if f.RetryAfterMS {
			c.w.Header().Set("retry-after-ms", strconv.FormatInt(f.RetryAfter.Milliseconds(), 10))
		}
	}
	c.writeBody(f.Status, "application/json", c.faultBody(f.Status, max(secs, 1)))
}

func (c *aoaiCall) faultBody(status, retrySecs int) []byte {
	if c.flavor == aoaiOpenAI {
		// INFERRED: OpenAI's wording.
		if status == http.StatusTooManyRequests {
			return aoaiOpenAIError(fmt.Sprintf("Rate limit reached for requests. Please try again in %ds.", retrySecs),
				"requests", nil, "rate_limit_exceeded")
		}
		return aoaiOpenAIError("The server had an error while processing your request. Sorry about that!", "server_error", nil, nil)
	}
	switch status {
	case http.StatusTooManyRequests:
		// The recorded wording (aoai-error-429.excerpts.txt §2, §3). INFERRED:
		// "v1" as the version on the v1 paths, which send none.
		version := c.apiVersion
		if c.flavor == aoaiV1 {
			version = "v1"
		}
		return aoaiAzureError("429", fmt.Sprintf("Requests to the %s Operation under Azure OpenAI API version %s "+
			"have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after %d seconds. "+
			"Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
			aoaiOperations[c.op], version, retrySecs))
	case http.StatusInternalServerError: // INFERRED
		return aoaiAzureError("InternalServerError", "The server had an error while processing your request. Sorry about that!")
	case http.StatusServiceUnavailable: // INFERRED
		return aoaiAzureError("ServiceUnavailable", "The service is temporarily unable to process your request. Please try again later.")
	}
	return aoaiAzureError(strconv.Itoa(status), http.StatusText(status)) // INFERRED
}
