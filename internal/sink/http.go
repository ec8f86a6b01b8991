package sink

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryAfter reads the wait an HTTP response asks for: retry-after-ms or
// x-ms-retry-after-ms (milliseconds, as Azure services send them), else
// Retry-After in seconds or as an HTTP date measured from now. It returns
// zero when there is none or it cannot be read; the shipper caps it.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	for _, k := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if v := strings.TrimSpace(h.Get(k)); v != "" {
			if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
				return time.Duration(ms * float64(time.Millisecond))
			}
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Loopback reports whether host (a URL's Hostname) names this machine:
// the only place a sink may send credentials over plain http (emulators,
// DESIGN.md §4).
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
