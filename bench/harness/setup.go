package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tapline/tapline/internal/auth"
	"github.com/tapline/tapline/internal/gateway"
	"github.com/tapline/tapline/internal/testenv"
)

// chatPath is the Azure classic chat path every target is called on.
const chatPath = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"

// scenario is one kind of call.
type scenario struct {
	name   string
	stream bool
	usage  bool // the caller asks for the usage chunk
	body   string
}

const chatBody = `{"messages":[{"role":"system","content":"You are a concise assistant."},` +
	`{"role":"user","content":"Write one sentence about the sea."}],"temperature":0.7`

// scenarios: a short chat, non-streamed and streamed. chat-stream sets no
// stream_options.include_usage, so the gateway injects it upstream and
// strips the usage chunk from what the caller sees (its costly path).
// chat-stream-usage, not run by default, asks for usage itself, so the
// gateway passes the stream through unchanged.
var scenarios = []scenario{
	{name: "chat", body: chatBody + `}`},
	{name: "chat-stream", stream: true, body: chatBody + `,"stream":true}`},
	{name: "chat-stream-usage", stream: true, usage: true,
		body: chatBody + `,"stream":true,"stream_options":{"include_usage":true}}`},
}

// target is one way of reaching the emulator.
type target struct {
	name  string
	label string
	base  string // http://127.0.0.1:PORT
	key   string // api-key the target accepts
	proc  *proc  // the proxy's process; nil for direct
	store string // a gateway's store, checked after the run; "" for the others
	calls int64  // calls a gateway completed, to check its store against
}

// stack is every process of a run.
type stack struct {
	dir      string
	emu      *proc
	emuKey   string
	targets  []*target
	allProcs []*proc
	redis    *testenv.RedisServer // for gateway-redis; stopped with the rest
}

// stop stops every process, the proxies before the emulator, each by PID.
func (s *stack) stop() {
	for i := len(s.allProcs) - 1; i >= 0; i-- {
		s.allProcs[i].stop()
	}
	if s.redis != nil {
		s.redis.Stop()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startStack starts the emulator and each wanted proxy in front of it.
func startStack(ctx context.Context, dir string, t tools, want map[string]bool, tokens int) (*stack, error) {
	s := &stack{dir: dir, emuKey: "bench-upstream-" + randomHex(16)}
	ok := false
	defer func() {
		if !ok {
			s.stop()
		}
	}()
	emu, emuURL, err := start(dir, "emulator", syscall.SIGTERM, true, filepath.Join(dir, "emulator"),
		"-addr", "127.0.0.1:0", "-api-key", s.emuKey, "-tokens", fmt.Sprint(tokens))
	if err != nil {
		return nil, err
	}
	s.emu = emu
	s.allProcs = append(s.allProcs, emu)
	if want["direct"] {
		s.targets = append(s.targets, &target{name: "direct", label: "direct (emulator)", base: emuURL, key: s.emuKey})
	}

	if want["bare"] {
		p, u, err := start(dir, "bareproxy", syscall.SIGTERM, true, filepath.Join(dir, "bareproxy"),
			"-addr", "127.0.0.1:0", "-upstream", emuURL, "-api-key", s.emuKey)
		if err != nil {
			return nil, err
		}
		s.allProcs = append(s.allProcs, p)
		s.targets = append(s.targets, &target{name: "bare", label: "bare ReverseProxy", base: u, key: s.emuKey, proc: p})
	}

	if want["nginx"] {
		p, u, err := startNginx(ctx, dir, t.nginx, emuURL)
		if err != nil {
			return nil, err
		}
		s.allProcs = append(s.allProcs, p)
		s.targets = append(s.targets, &target{name: "nginx", label: "nginx", base: u, key: s.emuKey, proc: p})
	}

	for _, gw := range []struct{ name, label, audit, limits string }{
		{"gateway", "tapline gateway", "strict", ""},
		{"gateway-standard", "tapline gateway, standard audit", "standard", ""},
		{"gateway-limits", "tapline gateway, limits in memory", "strict", "memory"},
		{"gateway-redis", "tapline gateway, limits in Redis", "strict", "redis"},
	} {
		if !want[gw.name] {
			continue
		}
		redisURL := ""
		if gw.limits == "redis" {
			rdir := filepath.Join(dir, "redis")
			if err := os.MkdirAll(rdir, 0o755); err != nil {
				return nil, fmt.Errorf("gateway-redis: %w", err)
			}
			srv, err := testenv.LaunchRedis("", rdir)
			if err != nil {
				return nil, fmt.Errorf("gateway-redis: %w", err)
			}
			s.redis = srv
			redisURL = "redis://" + srv.Addr + "/0"
		}
		p, u, key, db, err := startGateway(ctx, s, emuURL, gw.name, gw.audit, gw.limits, redisURL)
		if err != nil {
			return nil, err
		}
		s.allProcs = append(s.allProcs, p)
		s.targets = append(s.targets, &target{name: gw.name, label: gw.label, base: u, key: key, proc: p, store: db})
	}
	ok = true
	return s, nil
}

// startGateway writes a config (the given audit mode, full capture, a
// store in dir, one gateway key, the emulator as the one backend, and with
// limits "memory" or "redis" every limit on, too high to refuse) and runs
// `tapline serve` on it as name. It returns the process, its URL, the key
// and the store's path.
func startGateway(ctx context.Context, s *stack, emuURL, name, audit, limits, redisURL string) (*proc, string, string, string, error) {
	key, hash, err := auth.NewKey()
	if err != nil {
		return nil, "", "", "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", "", "", err
	}
	db := filepath.Join(s.dir, name+".db")
	cfg := fmt.Sprintf(`# generated by bench/harness
store:
  path: %s
gateway:
  listen: %s
  audit: %s
  capture: full
  auth:
    keys:
      - {name: bench, hash: "%s"}
  backends:
    - name: emulator
      url: %s
      auth: api_key
      api_key: %s
`, db, addr, audit, hash, emuURL, s.emuKey)
	if limits != "" {
		// Every limit on and never reached: each call pays for counting its
		// prompt, a reservation and its correction.
		cfg += `  limits:
    default: {rpm: 100000000, tpm: 100000000000, tokens_per_day: 100000000000000, tokens_per_month: 100000000000000}
`
		if redisURL != "" {
			cfg += "    redis: " + redisURL + "\n"
		}
	}
	cfgPath := filepath.Join(s.dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, "", "", "", fmt.Errorf("write gateway config: %w", err)
	}
	p, _, err := start(s.dir, name, syscall.SIGTERM, false, filepath.Join(s.dir, "tapline"), "serve", "--config", cfgPath)
	if err != nil {
		return nil, "", "", "", err
	}
	if err := waitListening(ctx, p, addr); err != nil {
		p.stop()
		return nil, "", "", "", err
	}
	return p, "http://" + addr, key, db, nil
}

// nginxConf is the reference configuration of test-infrastructure.md §7:
// one worker, keepalive connections to the upstream, no buffering.
const nginxConf = `worker_processes 1; pid {{RUN}}/nginx.pid; error_log {{RUN}}/error.log warn;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path {{RUN}}/tb; proxy_temp_path {{RUN}}/tp; fastcgi_temp_path {{RUN}}/tf; uwsgi_temp_path {{RUN}}/tu; scgi_temp_path {{RUN}}/ts;
  upstream emulator { server {{UPSTREAM}}; keepalive 64; }
  server { listen {{LISTEN}};
    location / { proxy_pass http://emulator; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering off; proxy_read_timeout 300s; } } }
`

// startNginx runs nginx as a foreground child with its own prefix, config
// and pid file; it is stopped with SIGQUIT (graceful).
func startNginx(ctx context.Context, dir, bin, emuURL string) (*proc, string, error) {
	u, err := url.Parse(emuURL)
	if err != nil {
		return nil, "", fmt.Errorf("parse emulator url: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	run := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(run, 0o755); err != nil {
		return nil, "", fmt.Errorf("nginx dir: %w", err)
	}
	// Run as root, nginx's worker becomes nobody and must reach its prefix.
	_ = os.Chmod(dir, 0o755)
	conf := strings.NewReplacer("{{RUN}}", run, "{{UPSTREAM}}", u.Host, "{{LISTEN}}", addr).Replace(nginxConf)
	confPath := filepath.Join(run, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, "", fmt.Errorf("write nginx config: %w", err)
	}
	errLog := filepath.Join(run, "error.log")
	if out, err := exec.CommandContext(ctx, bin, "-t", "-q", "-e", errLog, "-p", run, "-c", confPath).CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("nginx -t: %w\n%s", err, out)
	}
	p, _, err := start(dir, "nginx", syscall.SIGQUIT, false, bin, "-e", errLog, "-p", run, "-c", confPath, "-g", "daemon off;")
	if err != nil {
		return nil, "", err
	}
	if err := waitListening(ctx, p, addr); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

// check makes one call of sc through t and verifies the answer, so that a
// misconfigured target fails before it is measured.
func check(ctx context.Context, t *target, sc scenario) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+chatPath, strings.NewReader(sc.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("api-key", t.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", t.name, sc.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read body: %w", t.name, sc.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d: %.300s", t.name, sc.name, resp.StatusCode, body)
	}
	b := string(body)
	switch {
	case sc.stream && !strings.Contains(b, "data: [DONE]"):
		return fmt.Errorf("%s %s: the stream has no [DONE]: %.300s", t.name, sc.name, b)
	case !sc.stream && !strings.Contains(b, `"choices"`):
		return fmt.Errorf("%s %s: no choices in the answer: %.300s", t.name, sc.name, b)
	case sc.stream && !sc.usage && strings.Contains(b, `"usage":{`):
		// The caller did not ask for usage; nobody may add it.
		return fmt.Errorf("%s %s: the stream carries a usage chunk the caller did not ask for", t.name, sc.name)
	case sc.usage && !strings.Contains(b, `"usage":{`):
		return fmt.Errorf("%s %s: the stream lacks the usage chunk the caller asked for", t.name, sc.name)
	case t.name == "gateway" && resp.Header.Get(gateway.HeaderRequestID) == "":
		return fmt.Errorf("%s %s: no %s header", t.name, sc.name, gateway.HeaderRequestID)
	}
	return nil
}
