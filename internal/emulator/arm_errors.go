package emulator

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// armStartTooOld is the recorded body of the activity log's 90-day
// rejection, 2021 casing (REC azure-cli test_activity_log_list_scenario.yaml
// @b4fb8758, azure-contracts.md §2.4): flat, not the ARM envelope.
const armStartTooOld = `{"code":"BadRequest","message":"The start time cannot be more than 90 days in the past."}`

// armRetention is how far back the activity log reaches (DOC activity-log.md).
const armRetention = 90 * 24 * time.Hour

// armZeroID stands in for a caller whose token carries no object id.
const armZeroID = "00000000-0000-0000-0000-000000000000"

// armError is the ARM common error envelope (azure-contracts.md §1.6).
type armError struct {
	Error armErrorBody `json:"error"`
}

// armErrorBody is also the flat shape the activity log answers with
// (azure-contracts.md §2.4, "Surprising" 3).
type armErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func armMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("arm emulator: marshal: " + err.Error()) // only our own types reach here
	}
	return b
}

// writeBody writes a complete JSON response.
func (a *ARM) writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (a *ARM) writeJSON(w http.ResponseWriter, status int, v any) {
	a.writeBody(w, status, armMarshal(v))
}

// writeEnvelope answers with the ARM envelope {"error":{"code","message"}}.
func (a *ARM) writeEnvelope(w http.ResponseWriter, status int, code, message string) {
	a.writeJSON(w, status, armError{Error: armErrorBody{Code: code, Message: message}})
}

// writeFlat answers with the activity log's flat {"code","message"}.
func (a *ARM) writeFlat(w http.ResponseWriter, status int, code, message string) {
	a.writeJSON(w, status, armErrorBody{Code: code, Message: message})
}

// writeBadFilter is the activity log's 400 for a $filter outside the grammar
// of azure-contracts.md §2.2. The shape is recorded (flat, code BadRequest);
// the wording is INFERRED.
func (a *ARM) writeBadFilter(w http.ResponseWriter, reason string) {
	a.writeFlat(w, http.StatusBadRequest, "BadRequest", "The $filter is invalid: "+reason)
}

func (a *ARM) writeNotFound(w http.ResponseWriter, r *http.Request) {
	// INFERRED: ARM's answer for a path no resource provider serves.
	a.writeEnvelope(w, http.StatusNotFound, "NotFound", "No HTTP resource was found that matches the request URI '"+r.URL.Path+"'.")
}

// writeForbidden answers 403 AuthorizationFailed in the wording quoted by
// azure-contracts.md §1.6 (3P pulumi-azure-native#553, terraform-provider-
// azurerm#6091). ARM answers so for a group that does not exist too
// (azure-rest-api-specs#9549).
func (a *ARM) writeForbidden(w http.ResponseWriter, r *http.Request, action, scope string) {
	client, oid := armCaller(r)
	a.writeEnvelope(w, http.StatusForbidden, "AuthorizationFailed",
		"The client '"+client+"' with object id '"+oid+"' does not have authorization to perform action '"+action+
			"' over scope '"+scope+"' or the scope is invalid. If access was recently granted, please refresh your credentials.")
}

// armCaller reads who the bearer token names, for the 403 wording: the upn
// (users) or appid (applications) and the object id. The token is not
// verified (the emulator's Token func decides acceptance); a token that is
// not a JWT names the zero id.
func armCaller(r *http.Request) (client, oid string) {
	_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	var c struct {
		Oid        string `json:"oid"`
		Upn        string `json:"upn"`
		UniqueName string `json:"unique_name"`
		Appid      string `json:"appid"`
		Azp        string `json:"azp"`
	}
	if parts := strings.Split(strings.TrimSpace(tok), "."); len(parts) == 3 {
		if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "=")); err == nil {
			_ = json.Unmarshal(b, &c) // best effort: the wording only
		}
	}
	oid = armFirst(c.Oid, armZeroID)
	return armFirst(c.Upn, c.UniqueName, c.Appid, c.Azp, oid), oid
}

// armFirst returns the first non-empty value.
func armFirst(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// checkAPIVersion answers 400 and returns false unless the request carries
// one of the allowed api-versions. Codes and wording are ARM's as quoted in
// public issues (3P: MicrosoftDocs/feedback#2279 and cloudquery#6626 for the
// missing parameter, azure-sdk-for-net#2276 and ansible-collections/azure#188
// for an unsupported version); that the activity log answers in ARM's
// envelope rather than its own flat shape is INFERRED (ARM checks the
// version before the resource provider sees the request).
func (a *ARM) checkAPIVersion(w http.ResponseWriter, r *http.Request, allowed []string) bool {
	v := r.URL.Query().Get("api-version")
	switch {
	case v == "":
		a.writeEnvelope(w, http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.")
		return false
	case !slices.Contains(allowed, v):
		a.writeEnvelope(w, http.StatusBadRequest, "InvalidApiVersionParameter",
			"The api-version '"+v+"' is invalid. The supported versions are '"+strings.Join(allowed, ",")+"'.")
		return false
	}
	return true
}

// authenticate answers 401 and returns false unless the request carries an
// accepted bearer token. The missing-header wording is ARM's (3P:
// rancher-letsencrypt#89, terraform-provider-azurerm#3612); the code for a
// rejected token is quoted in azure-powershell#27882 and azure-sdk-for-java
// #1714 with varying messages; x-ms-failure-cause: gateway is in the 401
// headers logged in azure-powershell#12544. WWW-Authenticate is INFERRED.
func (a *ARM) authenticate(w http.ResponseWriter, r *http.Request) bool {
	hdr := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(hdr, " ")
	tok = strings.TrimSpace(tok)
	code, msg, desc := "", "", ""
	switch {
	case hdr == "":
		code, msg = "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
		desc = "The authentication failed because of missing 'Authorization' header."
	case !strings.EqualFold(scheme, "Bearer") || tok == "":
		code, msg = "AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format." // INFERRED
		desc = "The authentication scheme is not supported."
	case a.token != nil && !a.token(tok):
		code, msg = "InvalidAuthenticationToken", "The access token is invalid."
		desc = "The access token is invalid."
	default:
		return true
	}
	h := w.Header()
	h.Set("WWW-Authenticate", `Bearer authorization_uri="https://login.windows.net/`+a.tenant+`", error="invalid_token", error_description="`+desc+`"`)
	h.Set("x-ms-failure-cause", "gateway")
	a.writeEnvelope(w, http.StatusUnauthorized, code, msg)
	return false
}

// setCommonHeaders sets the headers of azure-contracts.md §1.5 that are cheap
// to imitate. The region prefix of x-ms-request-id is recorded for
// Microsoft.Management; elsewhere a bare GUID is INFERRED. A client's
// x-ms-correlation-request-id is echoed (INFERRED).
func (a *ARM) setCommonHeaders(w http.ResponseWriter, r *http.Request, now time.Time) {
	id := uuid.NewString()
	h := w.Header()
	reqID := id
	lower := strings.ToLower(r.URL.Path)
	if strings.HasPrefix(lower, "/providers/microsoft.management/") {
		reqID = "southeastasia:" + id
	}
	corr := r.Header.Get("x-ms-correlation-request-id")
	if _, err := uuid.Parse(corr); err != nil {
		corr = id
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "-1")
	h.Set("x-ms-request-id", reqID)
	h.Set("x-ms-correlation-request-id", corr)
	h.Set("x-ms-routing-request-id", "SOUTHEASTASIA:"+now.UTC().Format("20060102T150405Z")+":"+id)
	name, left := a.spend(now, r.Method, strings.HasPrefix(lower, "/subscriptions/"))
	if name != "" {
		h.Set(name, strconv.Itoa(left))
	}
}

// armQuota imitates the remaining-request counters ARM reports: 12000 reads,
// 1200 writes and 15000 deletes an hour (DOC request-limits-and-throttling,
// legacy table; recorded counters start at 11999, 1199 and 14999). The
// hourly reset is INFERRED; the counters never cause throttling (use Inject).
type armQuota struct {
	since                                    time.Time
	tenantReads, tenantWrites, tenantDeletes int
	subscriptionReads                        int
}

func (q *armQuota) reset(now time.Time) {
	*q = armQuota{since: now, tenantReads: 12000, tenantWrites: 1200, tenantDeletes: 15000, subscriptionReads: 12000}
}

// spend counts one request against its counter and returns the header to
// report it under and what is left.
func (a *ARM) spend(now time.Time, method string, subscription bool) (header string, left int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.quota.since) >= time.Hour || now.Before(a.quota.since) {
		a.quota.reset(now)
	}
	var n *int
	switch {
	case method == http.MethodGet && subscription:
		header, n = "x-ms-ratelimit-remaining-subscription-reads", &a.quota.subscriptionReads
	case method == http.MethodGet:
		header, n = "x-ms-ratelimit-remaining-tenant-reads", &a.quota.tenantReads
	case method == http.MethodPut:
		header, n = "x-ms-ratelimit-remaining-tenant-writes", &a.quota.tenantWrites
	case method == http.MethodDelete:
		header, n = "x-ms-ratelimit-remaining-tenant-deletes", &a.quota.tenantDeletes
	default:
		return "", 0
	}
	*n = max(*n-1, 0)
	return header, *n
}

// serveFault answers as f says. Status bodies: 429 TooManyRequests "The
// request is being throttled." is quoted in Azure/migAz#57 (3P); the 5xx
// codes and wording are INFERRED.
func (a *ARM) serveFault(w http.ResponseWriter, r *http.Request, f ARMFault) {
	if f.Malformed {
		a.serveMalformed(w, r)
		return
	}
	if f.RetryAfter > 0 || f.Status == http.StatusTooManyRequests {
		secs := max(int(math.Ceil(f.RetryAfter.Seconds())), 1)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	code, msg := "", ""
	switch f.Status {
	case http.StatusTooManyRequests:
		code, msg = "TooManyRequests", "The request is being throttled."
	case http.StatusInternalServerError:
		code, msg = "InternalServerError", "Encountered internal server error. Please try again."
	case http.StatusServiceUnavailable:
		code, msg = "ServiceUnavailable", "The server is currently unable to handle the request. Please try again later."
	default:
		code = strings.ReplaceAll(http.StatusText(f.Status), " ", "")
		msg = http.StatusText(f.Status) + "."
	}
	a.writeEnvelope(w, f.Status, code, msg)
}

// serveMalformed answers the request normally, but a 200 body is cut in the
// middle, as a connection that a proxy ends early would leave it; the
// Content-Length matches what is sent, so the client sees bad JSON, not a
// short read.
func (a *ARM) serveMalformed(w http.ResponseWriter, r *http.Request) {
	buf := &armBuffer{header: w.Header()}
	a.route(buf, r)
	body := buf.body.Bytes()
	if buf.status == http.StatusOK && len(body) > 1 {
		body = body[:len(body)/2]
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(armOr(buf.status, http.StatusOK))
	_, _ = w.Write(body)
}

// armOr returns v, or def when v is zero.
func armOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// armBuffer is a ResponseWriter that keeps the response for serveMalformed.
type armBuffer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *armBuffer) Header() http.Header { return b.header }

func (b *armBuffer) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *armBuffer) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
