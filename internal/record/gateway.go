package record

import "time"

// States of a gateway_request record (DESIGN.md §6).
const (
	StateStarted     = "started"     // committed before forwarding, strict audit only
	StateCompleted   = "completed"   // the call ended and the response was delivered
	StateInterrupted = "interrupted" // the client left, the upstream broke, or the gateway crashed
	StateDenied      = "denied"      // refused by the gateway: bad credentials, throttled, store full
)

// Operations a gateway call may be classified as.
const (
	OpChatCompletions = "chat.completions"
	OpCompletions     = "completions"
	OpEmbeddings      = "embeddings"
	OpResponses       = "responses"
	OpImages          = "images"
	OpAudio           = "audio"
	OpModels          = "models"
	OpOther           = "other"
)

// Usage sources.
const (
	UsageReported  = "reported"  // the upstream said so
	UsageEstimated = "estimated" // counted by the gateway with a tokenizer
)

// Principal kinds.
const (
	PrincipalEntraUser = "entra_user"
	PrincipalEntraApp  = "entra_app"
	PrincipalKey       = "key"
)

// GatewayRequest is the payload of a gateway_request record: one call made
// through the gateway, from who asked to what came back. It is a superset of
// Azure OpenAI's own RequestResponse log row (azure-contracts.md §9).
//
// State comes first: the store reads it from every record it writes, and a
// leading field is found without scanning the prompt and response.
type GatewayRequest struct {
	State          string         `json:"state"`
	RequestID      string         `json:"request_id"`
	Start          time.Time      `json:"start"`
	DurationMS     float64        `json:"duration_ms"`
	TTFTMS         *float64       `json:"ttft_ms,omitempty"`
	Principal      Principal      `json:"principal"`
	ClientIP       string         `json:"client_ip"`
	ForwardedFor   string         `json:"forwarded_for,omitempty"`
	UserAgent      string         `json:"user_agent,omitempty"`
	Method         string         `json:"method"`
	Path           string         `json:"path"`
	Operation      string         `json:"operation"`
	APIVersion     string         `json:"api_version,omitempty"`
	Deployment     string         `json:"deployment,omitempty"`
	ModelRequested string         `json:"model_requested,omitempty"`
	ModelReturned  string         `json:"model_returned,omitempty"`
	Stream         bool           `json:"stream"`
	Backend        string         `json:"backend,omitempty"`
	Attempts       int            `json:"attempts,omitempty"`
	Tried          []Attempt      `json:"tried,omitempty"` // the attempts before the one Backend answered
	UpstreamStatus int            `json:"upstream_status,omitempty"`
	Status         int            `json:"status"`
	Upstream       UpstreamIDs    `json:"upstream"`
	Usage          *Usage         `json:"usage,omitempty"`
	FinishReasons  []string       `json:"finish_reasons,omitempty"`
	ContentFilter  *ContentFilter `json:"content_filter,omitempty"`
	RequestBytes   int64          `json:"request_bytes"`
	ResponseBytes  int64          `json:"response_bytes"`
	Prompt         *Content       `json:"prompt,omitempty"`
	Response       *Content       `json:"response,omitempty"`
	Limit          *Limit         `json:"limit,omitempty"`
	Error          *Error         `json:"error,omitempty"`
}

// Principal is who made a call: an Entra ID user or application, or the
// holder of a gateway key. Empty fields are omitted.
type Principal struct {
	Kind    string   `json:"kind,omitempty"`
	OID     string   `json:"oid,omitempty"`
	TID     string   `json:"tid,omitempty"`
	AppID   string   `json:"appid,omitempty"`
	UPN     string   `json:"upn,omitempty"`
	Name    string   `json:"name,omitempty"`
	Roles   []string `json:"roles,omitempty"`
	KeyName string   `json:"key_name,omitempty"`
}

// ID is a short, stable label for the principal, used to group usage:
// the key name, else the UPN, else the object id.
func (p Principal) ID() string {
	switch {
	case p.KeyName != "":
		return "key:" + p.KeyName
	case p.UPN != "":
		return p.UPN
	case p.OID != "":
		return p.OID
	}
	return ""
}

// UpstreamIDs are the correlation ids Azure OpenAI returned.
type UpstreamIDs struct {
	APIMRequestID string `json:"apim_request_id,omitempty"`
	RequestID     string `json:"x_request_id,omitempty"`
	Region        string `json:"region,omitempty"`
}

// Usage is the token usage of one call. CompletionTokens includes
// ReasoningTokens, as Azure reports it (azure-contracts.md §7.3).
type Usage struct {
	PromptTokens     int    `json:"prompt_tokens"`
	CompletionTokens int    `json:"completion_tokens"`
	TotalTokens      int    `json:"total_tokens"`
	CachedTokens     int    `json:"cached_tokens,omitempty"`
	ReasoningTokens  int    `json:"reasoning_tokens,omitempty"`
	Source           string `json:"source"`
}

// ContentFilter summarises Azure's content filter verdicts on a call:
// whether anything was filtered, and which categories were filtered or
// detected (jailbreak, protected material), on the prompt or the output.
type ContentFilter struct {
	Filtered   bool     `json:"filtered"`
	Categories []string `json:"categories,omitempty"`
}

// Content is captured prompt or response content, after redaction.
// Bytes is the size before truncation; Truncated says Text was cut at
// gateway.max_capture_bytes; Redactions counts the matches replaced;
// Omitted says why there is no text (capture policy, binary content).
type Content struct {
	Text       string `json:"text,omitempty"`
	Bytes      int64  `json:"bytes"`
	Truncated  bool   `json:"truncated,omitempty"`
	Redactions int    `json:"redactions,omitempty"`
	Omitted    string `json:"omitted,omitempty"`
}

// Attempt is a backend the gateway tried before the one that answered:
// it answered Status (429 or a 5xx), or could not be reached (Error).
type Attempt struct {
	Backend      string `json:"backend"`
	Status       int    `json:"status,omitempty"`
	Error        string `json:"error,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// Limit is the limit that applied to a call.
type Limit struct {
	Name      string `json:"name"`
	Remaining int64  `json:"remaining"`
	Throttled bool   `json:"throttled"`
}

// Error describes why a call failed, in the gateway's or the upstream's words.
// RetryAfterMS is the wait the upstream asked for on a 429 or 503, from
// Retry-After or retry-after-ms.
type Error struct {
	Code         string `json:"code,omitempty"`
	Message      string `json:"message"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}
