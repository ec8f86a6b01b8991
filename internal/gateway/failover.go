package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/sink"
)

// failover is the proxy's transport: it sends a call to the backends the
// pool chose, in order, and moves on to the next when one answers 429, 502,
// 503 or 504, or cannot be reached. It decides before returning a response
// to the ReverseProxy, so no byte has reached the caller when it moves on
// and a response that is streaming is never retried. Every outcome teaches
// the pool: 429 cools the backend down, 5xx and connection errors count
// toward its breaker, anything else closes it.
type failover struct {
	g    *Gateway
	base http.RoundTripper
}

// RoundTrip sends req (built by rewrite for the call's first backend) and,
// when needed, copies of it to the others.
func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	c, ok := req.Context().Value(callKey{}).(*call)
	if !ok {
		return f.base.RoundTrip(req)
	}
	for i, b := range c.candidates {
		last := i == len(c.candidates)-1
		out := req
		if i > 0 {
			var err error
			if out, err = f.g.redirect(c, req, b); err != nil {
				c.tried = append(c.tried, record.Attempt{Backend: b.name, Error: err.Error()})
				if last {
					return nil, err
				}
				continue
			}
		}
		c.backend = b
		c.rec.Backend = b.name
		resp, err := f.base.RoundTrip(out)
		if err != nil {
			if req.Context().Err() != nil {
				f.g.pool.abandoned(b)
				return nil, err
			}
			f.g.pool.failed(b)
			if last {
				return nil, err
			}
			c.tried = append(c.tried, record.Attempt{Backend: b.name, Error: err.Error()})
			f.g.log.Warn("backend unreachable; trying the next", "request_id", c.id, "backend", b.name, "err", err)
			continue
		}
		switch resp.StatusCode {
		case http.StatusTooManyRequests:
			after := sink.RetryAfter(resp.Header, f.g.now())
			f.g.pool.throttled(b, after)
			if !last {
				c.tried = append(c.tried, record.Attempt{Backend: b.name, Status: resp.StatusCode,
					RetryAfterMS: after.Milliseconds()})
				discard(resp)
				continue
			}
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			f.g.pool.failed(b)
			if !last && resp.StatusCode != http.StatusInternalServerError {
				c.tried = append(c.tried, record.Attempt{Backend: b.name, Status: resp.StatusCode})
				discard(resp)
				continue
			}
		default:
			f.g.pool.succeeded(b)
		}
		return resp, nil
	}
	return nil, errors.New("no backend to try")
}

// discard drains a little of a response the caller will not see, so that
// its connection can be reused, and closes it.
func discard(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// redirect returns a copy of the backend request req aimed at backend b:
// its URL, its credential and its body (which differs by backend API).
func (g *Gateway) redirect(c *call, req *http.Request, b *backend) (*http.Request, error) {
	name, value, err := b.credential(c.clientCtx)
	if err != nil {
		return nil, fmt.Errorf("get the gateway's credential for backend %s: %w", b.name, err)
	}
	out := req.Clone(req.Context())
	p, q := b.target(c.route, c.inURL)
	out.URL.Scheme, out.URL.Host = b.base.Scheme, b.base.Host
	out.URL.Path, out.URL.RawPath, out.URL.RawQuery = b.base.Path+p, "", q
	out.Host = ""
	delete(out.Header, c.credName)
	out.Header[name] = []string{value}
	setBody(out, g.upstreamBody(c, b))
	return out, nil
}

// setBody makes body the request's body, replayable.
func setBody(out *http.Request, body []byte) {
	out.ContentLength = int64(len(body))
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if len(body) == 0 {
		out.Body, out.GetBody = http.NoBody, nil
	}
}
