package sink

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestRetryable(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantAfter time.Duration
		wantOK    bool
	}{
		{"nil", nil, 0, false},
		{"plain", io.EOF, 0, false},
		{"direct", &RetryableError{Err: io.EOF, After: time.Second}, time.Second, true},
		{"wrapped", fmt.Errorf("write batch: %w", &RetryableError{Err: io.EOF}), 0, true},
		{"invalid", Invalid(io.EOF, "bad"), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after, ok := Retryable(tt.err)
			if after != tt.wantAfter || ok != tt.wantOK {
				t.Errorf("Retryable = %v, %v; want %v, %v", after, ok, tt.wantAfter, tt.wantOK)
			}
		})
	}
}

func TestErrorsUnwrap(t *testing.T) {
	re := fmt.Errorf("write: %w", &RetryableError{Err: io.EOF})
	if !errors.Is(re, io.EOF) {
		t.Errorf("RetryableError does not unwrap to its cause")
	}
	if got := re.Error(); got != "write: EOF" {
		t.Errorf("RetryableError message = %q", got)
	}
	ie := fmt.Errorf("write: %w", Invalid(io.EOF, "record too large"))
	var inv *InvalidError
	if !errors.As(ie, &inv) || inv.Reason != "record too large" || !errors.Is(ie, io.EOF) {
		t.Errorf("InvalidError not found or does not unwrap: %v", ie)
	}
	if got := ie.Error(); got != "write: invalid batch: record too large: EOF" {
		t.Errorf("InvalidError message = %q", got)
	}
}

func TestInvalidRecords(t *testing.T) {
	err := fmt.Errorf("write: %w", InvalidRecords(nil, "record over the limit", 1, 3))
	var inv *InvalidError
	if !errors.As(err, &inv) || len(inv.Indexes) != 2 || inv.Indexes[0] != 1 || inv.Indexes[1] != 3 {
		t.Fatalf("InvalidRecords indexes not found: %#v", inv)
	}
	if got := err.Error(); got != "write: invalid batch: record over the limit" {
		t.Errorf("message = %q", got)
	}
	if _, ok := Retryable(err); ok {
		t.Errorf("an invalid record is not retryable")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 21, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"none", nil, 0},
		{"seconds", map[string]string{"Retry-After": "7"}, 7 * time.Second},
		{"fraction", map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond},
		{"zero", map[string]string{"Retry-After": "0"}, 0},
		{"negative", map[string]string{"Retry-After": "-3"}, 0},
		{"http date", map[string]string{"Retry-After": "Sun, 22 Nov 2026 21:00:30 GMT"}, 30 * time.Second},
		{"date in the past", map[string]string{"Retry-After": "Sun, 22 Nov 2026 20:00:00 GMT"}, 0},
		{"garbage", map[string]string{"Retry-After": "soon"}, 0},
		{"ms wins", map[string]string{"retry-after-ms": "250", "Retry-After": "7"}, 250 * time.Millisecond},
		{"x-ms ms", map[string]string{"x-ms-retry-after-ms": "1500"}, 1500 * time.Millisecond},
		{"bad ms falls back", map[string]string{"retry-after-ms": "x", "Retry-After": "2"}, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			if got := RetryAfter(h, now); got != tt.want {
				t.Errorf("RetryAfter = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoopback(t *testing.T) {
	for host, want := range map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true, "127.8.0.1": true,
		"10.0.0.1": false, "example.com": false, "": false} {
		if got := Loopback(host); got != want {
			t.Errorf("Loopback(%q) = %v", host, got)
		}
	}
}
