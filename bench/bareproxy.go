package bench

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// BareProxy returns the floor of what any net/http reverse proxy costs: an
// httputil.ReverseProxy whose Rewrite only sets the backend URL and its
// api-key, over a transport tuned for many calls to one host (the default
// of 2 idle connections per host makes a busy proxy dial on most calls).
func BareProxy(target *url.URL, apiKey string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set("api-key", apiKey)
			if pr.Out.ContentLength > 0 {
				pr.Out.Body = &exactBody{rc: pr.Out.Body, n: pr.Out.ContentLength}
			}
		},
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
}

// exactBody ends the outbound body after the declared length without one
// more read of the inbound body. The transport makes that extra read to
// check the length; when the backend has answered first, the server has
// closed the inbound body by then, the read fails, and the transport drops
// the backend connection, cutting the response (a streamed one mid-stream)
// about once in 25 calls at one connection on this machine
// (golang/go#40747). The gateway is immune: it sends a buffered copy.
type exactBody struct {
	rc io.ReadCloser
	n  int64
}

func (b *exactBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.rc.Read(p)
	b.n -= int64(n)
	if b.n <= 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

func (b *exactBody) Close() error { return b.rc.Close() }
