package record

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the JSON envelope of r to dst, the same bytes that
// json.Marshal gives with HTML escaping off ({"id","kind","version","time",
// "data"}), and returns the extended slice. Data is copied as it is, never
// re-encoded (DESIGN.md §5): it must already be valid JSON, as everything the
// store hands out is. Sinks use it on their hot path, where encoding/json's
// reflection and RawMessage validation cost more than the write.
func AppendJSON(dst []byte, r Record) []byte {
	dst = append(dst, `{"id":`...)
	dst = AppendString(dst, r.ID)
	dst = append(dst, `,"kind":`...)
	dst = AppendString(dst, string(r.Kind))
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, int64(r.Version), 10)
	dst = append(dst, `,"time":"`...)
	dst = r.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","data":`...)
	if len(r.Data) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, r.Data...)
	}
	return append(dst, '}')
}

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping as encoding/json does
// with HTML escaping off (invalid UTF-8 becomes U+FFFD), and returns the
// extended slice.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendGatewayRequest appends g as JSON to dst, the same bytes that
// encoding/json gives with HTML escaping off, and returns the extended
// slice. The gateway encodes two records a call (started and completed);
// by reflection that was about 4% of its CPU.
func AppendGatewayRequest(dst []byte, g *GatewayRequest) []byte {
	dst = append(dst, `{"state":`...)
	dst = AppendString(dst, g.State)
	dst = append(dst, `,"request_id":`...)
	dst = AppendString(dst, g.RequestID)
	dst = append(dst, `,"start":`...)
	dst = appendTimeJSON(dst, g.Start)
	dst = append(dst, `,"duration_ms":`...)
	dst = appendFloat(dst, g.DurationMS)
	if g.TTFTMS != nil {
		dst = append(dst, `,"ttft_ms":`...)
		dst = appendFloat(dst, *g.TTFTMS)
	}
	dst = append(dst, `,"principal":`...)
	dst = appendPrincipal(dst, &g.Principal)
	dst = append(dst, `,"client_ip":`...)
	dst = AppendString(dst, g.ClientIP)
	dst = appendNonEmpty(dst, `,"forwarded_for":`, g.ForwardedFor)
	dst = appendNonEmpty(dst, `,"user_agent":`, g.UserAgent)
	dst = append(dst, `,"method":`...)
	dst = AppendString(dst, g.Method)
	dst = append(dst, `,"path":`...)
	dst = AppendString(dst, g.Path)
	dst = append(dst, `,"operation":`...)
	dst = AppendString(dst, g.Operation)
	dst = appendNonEmpty(dst, `,"api_version":`, g.APIVersion)
	dst = appendNonEmpty(dst, `,"deployment":`, g.Deployment)
	dst = appendNonEmpty(dst, `,"model_requested":`, g.ModelRequested)
	dst = appendNonEmpty(dst, `,"model_returned":`, g.ModelReturned)
	dst = append(dst, `,"stream":`...)
	dst = strconv.AppendBool(dst, g.Stream)
	dst = appendNonEmpty(dst, `,"backend":`, g.Backend)
	dst = appendNonZero(dst, `,"attempts":`, int64(g.Attempts))
	if len(g.Tried) > 0 {
		dst = append(dst, `,"tried":[`...)
		for i, a := range g.Tried {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"backend":`...)
			dst = AppendString(dst, a.Backend)
			dst = appendNonZero(dst, `,"status":`, int64(a.Status))
			dst = appendNonEmpty(dst, `,"error":`, a.Error)
			dst = appendNonZero(dst, `,"retry_after_ms":`, a.RetryAfterMS)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	dst = appendNonZero(dst, `,"upstream_status":`, int64(g.UpstreamStatus))
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(g.Status), 10)
	dst = append(dst, `,"upstream":{`...)
	mark := len(dst)
	dst = appendMember(dst, mark, `"apim_request_id":`, g.Upstream.APIMRequestID)
	dst = appendMember(dst, mark, `"x_request_id":`, g.Upstream.RequestID)
	dst = appendMember(dst, mark, `"region":`, g.Upstream.Region)
	dst = append(dst, '}')
	if u := g.Usage; u != nil {
		dst = append(dst, `,"usage":{"prompt_tokens":`...)
		dst = strconv.AppendInt(dst, int64(u.PromptTokens), 10)
		dst = append(dst, `,"completion_tokens":`...)
		dst = strconv.AppendInt(dst, int64(u.CompletionTokens), 10)
		dst = append(dst, `,"total_tokens":`...)
		dst = strconv.AppendInt(dst, int64(u.TotalTokens), 10)
		dst = appendNonZero(dst, `,"cached_tokens":`, int64(u.CachedTokens))
		dst = appendNonZero(dst, `,"reasoning_tokens":`, int64(u.ReasoningTokens))
		dst = append(dst, `,"source":`...)
		dst = AppendString(dst, u.Source)
		dst = append(dst, '}')
	}
	if len(g.FinishReasons) > 0 {
		dst = appendStrings(append(dst, `,"finish_reasons":`...), g.FinishReasons)
	}
	if cf := g.ContentFilter; cf != nil {
		dst = append(dst, `,"content_filter":{"filtered":`...)
		dst = strconv.AppendBool(dst, cf.Filtered)
		if len(cf.Categories) > 0 {
			dst = appendStrings(append(dst, `,"categories":`...), cf.Categories)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"request_bytes":`...)
	dst = strconv.AppendInt(dst, g.RequestBytes, 10)
	dst = append(dst, `,"response_bytes":`...)
	dst = strconv.AppendInt(dst, g.ResponseBytes, 10)
	if g.Prompt != nil {
		dst = appendContent(append(dst, `,"prompt":`...), g.Prompt)
	}
	if g.Response != nil {
		dst = appendContent(append(dst, `,"response":`...), g.Response)
	}
	if l := g.Limit; l != nil {
		dst = append(dst, `,"limit":{"name":`...)
		dst = AppendString(dst, l.Name)
		dst = append(dst, `,"remaining":`...)
		dst = strconv.AppendInt(dst, l.Remaining, 10)
		dst = append(dst, `,"throttled":`...)
		dst = strconv.AppendBool(dst, l.Throttled)
		dst = append(dst, '}')
	}
	if e := g.Error; e != nil {
		dst = append(dst, `,"error":{`...)
		mark := len(dst)
		dst = appendMember(dst, mark, `"code":`, e.Code)
		if len(dst) > mark {
			dst = append(dst, ',')
		}
		dst = append(dst, `"message":`...)
		dst = AppendString(dst, e.Message)
		dst = appendNonZero(dst, `,"retry_after_ms":`, e.RetryAfterMS)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendPrincipal appends p, its empty members omitted.
func appendPrincipal(dst []byte, p *Principal) []byte {
	dst = append(dst, '{')
	mark := len(dst)
	dst = appendMember(dst, mark, `"kind":`, p.Kind)
	dst = appendMember(dst, mark, `"oid":`, p.OID)
	dst = appendMember(dst, mark, `"tid":`, p.TID)
	dst = appendMember(dst, mark, `"appid":`, p.AppID)
	dst = appendMember(dst, mark, `"upn":`, p.UPN)
	dst = appendMember(dst, mark, `"name":`, p.Name)
	if len(p.Roles) > 0 {
		if len(dst) > mark {
			dst = append(dst, ',')
		}
		dst = appendStrings(append(dst, `"roles":`...), p.Roles)
	}
	dst = appendMember(dst, mark, `"key_name":`, p.KeyName)
	return append(dst, '}')
}

// appendContent appends c, its empty members omitted.
func appendContent(dst []byte, c *Content) []byte {
	dst = append(dst, '{')
	if c.Text != "" {
		dst = AppendString(append(dst, `"text":`...), c.Text)
		dst = append(dst, ',')
	}
	dst = append(dst, `"bytes":`...)
	dst = strconv.AppendInt(dst, c.Bytes, 10)
	if c.Truncated {
		dst = append(dst, `,"truncated":true`...)
	}
	dst = appendNonZero(dst, `,"redactions":`, int64(c.Redactions))
	dst = appendNonEmpty(dst, `,"omitted":`, c.Omitted)
	return append(dst, '}')
}

// appendMember appends name and v as an object member unless v is empty,
// after a comma unless it is the first member since mark.
func appendMember(dst []byte, mark int, name, v string) []byte {
	if v == "" {
		return dst
	}
	if len(dst) > mark {
		dst = append(dst, ',')
	}
	return AppendString(append(dst, name...), v)
}

// appendNonZero appends name and n unless n is 0 (omitempty).
func appendNonZero(dst []byte, name string, n int64) []byte {
	if n == 0 {
		return dst
	}
	return strconv.AppendInt(append(dst, name...), n, 10)
}

// appendStrings appends ss as a JSON array of strings.
func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, s)
	}
	return append(dst, ']')
}

// appendTimeJSON appends t as time.Time's MarshalJSON does, for a year in
// 0..9999 (a call's start always is).
func appendTimeJSON(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendFloat appends f as encoding/json does: the shortest decimal that
// reads back as f, in exponent form below 1e-6 and from 1e21, with the
// exponent's leading zero dropped. f must be finite.
func appendFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		n := len(dst)
		dst = strconv.AppendFloat(dst, f, 'e', -1, 64)
		// e-07 becomes e-7, as encoding/json writes it.
		if m := len(dst); m-n >= 4 && dst[m-4] == 'e' && dst[m-3] == '-' && dst[m-2] == '0' {
			dst[m-2] = dst[m-1]
			dst = dst[:m-1]
		}
		return dst
	}
	return strconv.AppendFloat(dst, f, 'f', -1, 64)
}
