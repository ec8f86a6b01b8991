package sink

import (
	"errors"
	"fmt"
	"io"
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
