package gateway

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/tapline/tapline/internal/record"
)

// pathStyle is the API surface a call came in on.
type pathStyle int

const (
	styleDeployment pathStyle = iota // /openai/deployments/{d}/{op}?api-version=
	styleAzureV1                     // /openai/v1/{op}, deployment in body model
	styleResponses                   // /openai/responses?api-version=, deployment in body model
	styleOpenAI                      // /v1/{op}, model in body
)

// route is what the path of a call says about it.
type route struct {
	style      pathStyle
	op         string
	deployment string // from the path; body-routed styles fill it from "model"
	apiVersion string
	suffix     string // the operation path after the API prefix, e.g. "chat/completions"
}

// deploymentOps are the operations Azure OpenAI serves under
// /openai/deployments/{d}/ (azure-contracts.md §7.1).
var deploymentOps = map[string]string{
	"chat/completions":     record.OpChatCompletions,
	"completions":          record.OpCompletions,
	"embeddings":           record.OpEmbeddings,
	"images/generations":   record.OpImages,
	"audio/transcriptions": record.OpAudio,
	"audio/translations":   record.OpAudio,
	"audio/speech":         record.OpAudio,
}

// routeError is a path the gateway does not serve.
type routeError struct {
	status  int
	code    string
	message string
}

// parseRoute classifies a call by method and path.
func parseRoute(r *http.Request) (route, *routeError) {
	p := r.URL.Path
	q := r.URL.RawQuery
	switch {
	case strings.HasPrefix(p, "/openai/deployments/"):
		dep, suffix, ok := strings.Cut(strings.TrimPrefix(p, "/openai/deployments/"), "/")
		op, known := deploymentOps[suffix]
		if !ok || dep == "" || !known {
			return route{}, notFound(p)
		}
		if d, err := url.PathUnescape(dep); err == nil {
			dep = d
		}
		v := queryGet(q, "api-version")
		if v == "" {
			return route{}, &routeError{http.StatusBadRequest, "400",
				"the api-version query parameter is required on /openai/deployments/ paths (e.g. ?api-version=2024-10-21)"}
		}
		if r.Method != http.MethodPost {
			return route{}, methodNotAllowed(r.Method, p)
		}
		return route{style: styleDeployment, op: op, deployment: dep, apiVersion: v, suffix: suffix}, nil
	case p == "/openai/responses" || strings.HasPrefix(p, "/openai/responses/"):
		return route{style: styleResponses, op: record.OpResponses, apiVersion: queryGet(q, "api-version"),
			suffix: strings.TrimPrefix(p, "/openai/")}, nil
	case strings.HasPrefix(p, "/openai/v1/"):
		suffix := strings.TrimPrefix(p, "/openai/v1/")
		return route{style: styleAzureV1, op: classify(suffix), apiVersion: queryGet(q, "api-version"), suffix: suffix}, nil
	case strings.HasPrefix(p, "/v1/"):
		suffix := strings.TrimPrefix(p, "/v1/")
		return route{style: styleOpenAI, op: classify(suffix), suffix: suffix}, nil
	}
	return route{}, notFound(p)
}

// classify names the operation of a v1 path suffix.
func classify(suffix string) string {
	switch {
	case suffix == "chat/completions":
		return record.OpChatCompletions
	case suffix == "completions":
		return record.OpCompletions
	case suffix == "embeddings":
		return record.OpEmbeddings
	case suffix == "responses" || strings.HasPrefix(suffix, "responses/"):
		return record.OpResponses
	case strings.HasPrefix(suffix, "images/"):
		return record.OpImages
	case strings.HasPrefix(suffix, "audio/"):
		return record.OpAudio
	case suffix == "models" || strings.HasPrefix(suffix, "models/"):
		return record.OpModels
	}
	return record.OpOther
}

// bodyRouted reports whether the deployment comes from the body's "model"
// rather than the path. Only POSTs that create something carry one.
func (rt route) bodyRouted(method string) bool {
	return rt.style != styleDeployment && method == http.MethodPost
}

// supportsIncludeUsage reports whether the upstream understands
// stream_options.include_usage: api-versions from 2024-09-01-preview on,
// and the v1 surfaces (azure-contracts.md §7.4). Older versions never
// send usage when streaming and may reject the unknown member.
func (rt route) supportsIncludeUsage() bool {
	if rt.style == styleAzureV1 || rt.style == styleOpenAI {
		return true
	}
	v := rt.apiVersion
	return len(v) >= 10 && v[:10] >= "2024-09-01"
}

func notFound(p string) *routeError {
	return &routeError{http.StatusNotFound, "404", "no such API: " + p +
		"; the gateway serves /openai/deployments/{deployment}/..., /openai/v1/..., /openai/responses and /v1/..."}
}

func methodNotAllowed(m, p string) *routeError {
	return &routeError{http.StatusMethodNotAllowed, "405", m + " is not allowed on " + p}
}

// queryGet is url.Values.Get over the query raw as URL.Query parses it,
// without building the map of every parameter.
func queryGet(raw, key string) string {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(pair, ";") {
			continue // url.ParseQuery refuses it, and URL.Query drops it
		}
		k, v, _ := strings.Cut(pair, "=")
		if k != key {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			if u, err := url.QueryUnescape(k); err != nil || u != key {
				continue
			}
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			v = u
		}
		return v
	}
	return ""
}
