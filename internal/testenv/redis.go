package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// RedisServer is a redis-server process on loopback, without persistence.
type RedisServer struct {
	Addr   string
	cmd    *exec.Cmd
	once   sync.Once
	waited chan error
}

// redisBinary finds redis-server: TAPLINE_REDIS_SERVER, else PATH.
func redisBinary() (string, error) {
	if p := os.Getenv("TAPLINE_REDIS_SERVER"); p != "" {
		return p, nil
	}
	return exec.LookPath("redis-server")
}

// LaunchRedis starts redis-server on addr ("" picks a free loopback port)
// with its working files in dir, and waits until it accepts connections.
// It needs no *testing.T, for benchmarks and harnesses; the caller stops it.
func LaunchRedis(addr, dir string) (*RedisServer, error) {
	bin, err := redisBinary()
	if err != nil {
		return nil, fmt.Errorf("find redis-server: %w", err)
	}
	if addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a port: %w", err)
		}
		addr = l.Addr().String()
		l.Close()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("parse redis address: %w", err)
	}
	cmd := exec.Command(bin, "--bind", host, "--port", port, "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", "", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &RedisServer{Addr: addr, cmd: cmd}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("redis-server on %s exited at start: %v", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return nil, errors.New("redis-server did not accept connections within 10s on " + addr)
		}
	}
	s.waited = exited
	return s, nil
}

// Stop ends the server by its PID (SIGTERM, then SIGKILL after 5s) and waits
// for it. It may be called more than once.
func (s *RedisServer) Stop() {
	s.once.Do(func() {
		s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.waited:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.waited
		}
	})
}

// Kill ends the server at once (SIGKILL), as a crash would.
func (s *RedisServer) Kill() {
	s.once.Do(func() {
		s.cmd.Process.Kill()
		<-s.waited
	})
}

// StartRedis starts a redis-server for the test and stops it in t.Cleanup;
// stop may also be called earlier. Without redis-server the test is skipped,
// or fails when TAPLINE_TEST_REQUIRE names "redis".
func StartRedis(t testing.TB) (addr string, stop func()) {
	t.Helper()
	s := StartRedisServer(t, "")
	return s.Addr, func() { s.Stop() }
}

// StartRedisServer is StartRedis on a given address ("" for a free port),
// returning the server so that a test can kill it and start another on the
// same address.
func StartRedisServer(t testing.TB, addr string) *RedisServer {
	t.Helper()
	if _, err := redisBinary(); err != nil {
		Missing(t, "redis", "redis-server is not on PATH (or TAPLINE_REDIS_SERVER)")
	}
	s, err := LaunchRedis(addr, t.TempDir())
	if err != nil {
		t.Fatalf("start redis: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}
