package ratelimit_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/ratelimit"
	"github.com/tapline/tapline/internal/testenv"
)

func TestNewWithoutRedisIsMemory(t *testing.T) {
	l, err := ratelimit.New(ratelimit.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.(*ratelimit.Memory); !ok {
		t.Fatalf("New without Redis = %T, want *ratelimit.Memory", l)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  ratelimit.Config
		want string
	}{
		{"bad URL", ratelimit.Config{Redis: "http://user:s3cret@host"}, "not a valid redis:// URL"},
		{"bad policy", ratelimit.Config{Redis: "redis://127.0.0.1:1", OnRedisError: "open"}, `unknown policy "open"`},
		{"bad policy without redis", ratelimit.Config{OnRedisError: "open"}, `unknown policy "open"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ratelimit.New(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error repeats the password: %v", err)
			}
		})
	}
}

func TestNewWithRedis(t *testing.T) {
	addr, _ := testenv.StartRedis(t)
	now := time.Date(2026, 3, 10, 12, 30, 20, 0, time.UTC)
	cfg := ratelimit.Config{Redis: "redis://" + addr + "/0", OnRedisError: ratelimit.FailLocal, Prefix: "new:",
		Clock: func() time.Time { return now }}
	a, err := ratelimit.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ratelimit.New(cfg, nil) // a second replica
	if err != nil {
		t.Fatal(err)
	}
	lim := ratelimit.Limits{RequestsPerMinute: 3}
	for i, l := range []ratelimit.Limiter{a, b, a, b} {
		d, err := l.Reserve(context.Background(), "k", lim, ratelimit.Cost{Requests: 1})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != (i < 3) {
			t.Fatalf("request %d across replicas: allowed %v", i+1, d.Allowed)
		}
	}
	if st := a.(*ratelimit.Fallback).Stats(); st.Degraded || st.Errors != 0 {
		t.Fatalf("stats = %+v, want healthy", st)
	}
	for _, l := range []ratelimit.Limiter{a, b} {
		if err := l.(io.Closer).Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}
