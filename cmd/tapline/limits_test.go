package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/auth"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/testenv"
)

// limitsRig is gateways run as `tapline serve` child processes in front of
// one emulated Azure OpenAI, with limits counted in one redis-server.
type limitsRig struct {
	t     *testing.T
	up    *httptest.Server
	aoai  *emulator.AOAI
	redis *testenv.RedisServer
	keys  map[string]string // key name -> key
	hash  map[string]string // key name -> hash
}

func newLimitsRig(t *testing.T, names ...string) *limitsRig {
	r := &limitsRig{t: t, keys: map[string]string{}, hash: map[string]string{}}
	r.redis = testenv.StartRedisServer(t, "")
	r.aoai = emulator.NewAOAI(emulator.AOAIConfig{
		Deployments: map[string]string{"gpt-4o": "gpt-4o-2024-08-06"},
		APIKeys:     []string{"upstream-key"},
	}, slog.New(slog.DiscardHandler))
	r.up = httptest.NewServer(r.aoai)
	t.Cleanup(r.up.Close)
	for _, n := range names {
		k, h, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		r.keys[n], r.hash[n] = k, h
	}
	return r
}

// gateway starts a gateway with its own store, every key limited to rpm
// requests a minute, counted in the rig's Redis.
func (r *limitsRig) gateway(name string, rpm int, policy string, logs io.Writer) string {
	r.t.Helper()
	dir := r.t.TempDir()
	var keys []string
	for n, h := range r.hash {
		keys = append(keys, fmt.Sprintf("{name: %s, hash: %q}", n, h))
	}
	cfg := filepath.Join(dir, "tapline.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`store: {path: %s}
gateway:
  listen: 127.0.0.1:0
  auth: {keys: [%s]}
  limits:
    default: {rpm: %d}
    redis: redis://%s/0
    on_redis_error: %s
  backends: [{name: emu, url: %s, api_key: upstream-key}]
`, filepath.Join(dir, name+".db"), strings.Join(keys, ", "), rpm, r.redis.Addr, policy, r.up.URL)), 0o600)
	_, base := startGateway(r.t, cfg, logs)
	return base
}

// call makes one chat call with a key and returns the status and body.
func (r *limitsRig) call(base, key string) (int, string, http.Header) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
		strings.NewReader(`{"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("api-key", r.keys[key])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// untilThrottled calls until a 429 and returns how many calls were
// admitted first; it fails the test after n calls without one.
func (r *limitsRig) untilThrottled(base, key string, n int) int {
	r.t.Helper()
	for i := range n {
		code, body, _ := r.call(base, key)
		switch code {
		case 200:
		case 429:
			return i
		default:
			r.t.Fatalf("call %d: %d %s", i, code, body)
		}
	}
	r.t.Fatalf("no 429 in %d calls with key %s", n, key)
	return 0
}

// Two gateway processes sharing one Redis hold one combined limit: 40
// concurrent calls with one key, split across both, admit exactly 20.
func TestTwoGatewaysShareOneLimit(t *testing.T) {
	r := newLimitsRig(t, "round0", "round1")
	logs := &syncBuffer{}
	bases := []string{r.gateway("a", 20, "fail_closed", logs), r.gateway("b", 20, "fail_closed", logs)}
	// Windows are fixed minutes: a round that straddles a minute boundary
	// proves nothing, so it is run again with a fresh key (a round takes
	// well under a second, so two rounds never both straddle).
	for _, key := range []string{"round0", "round1"} {
		start := time.Now()
		var mu sync.Mutex
		codes := map[string]map[int]int{bases[0]: {}, bases[1]: {}}
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 5 {
					base := bases[(w+i)%2]
					code, _, _ := r.call(base, key)
					mu.Lock()
					codes[base][code]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if start.Truncate(time.Minute) != time.Now().Truncate(time.Minute) {
			t.Logf("round %s straddled a minute boundary; running another", key)
			continue
		}
		ok := codes[bases[0]][200] + codes[bases[1]][200]
		limited := codes[bases[0]][429] + codes[bases[1]][429]
		t.Logf("gateway a: %v, gateway b: %v", codes[bases[0]], codes[bases[1]])
		if ok != 20 || limited != 20 {
			t.Fatalf("40 calls across two gateways: %d admitted and %d refused, want 20 and 20", ok, limited)
		}
		if n := len(r.aoai.Requests()); n != 20 {
			t.Errorf("the backend received %d calls, want 20", n)
		}
		return
	}
	t.Fatal("both rounds straddled a minute boundary")
}

// Redis killed mid-load: a fail_closed gateway answers 503 and forwards
// nothing, a local gateway serves within its own counters; both say so in
// their logs, and both use the shared limits again once Redis is back.
func TestRedisKilledMidLoad(t *testing.T) {
	r := newLimitsRig(t, "load", "closed", "local")
	closedLogs, localLogs := &syncBuffer{}, &syncBuffer{}
	const rpm = 5
	closed := r.gateway("closed", rpm, "fail_closed", closedLogs)
	local := r.gateway("local", rpm, "local", localLogs)

	// Load with its own key on both gateways while Redis dies and returns.
	stop := make(chan struct{})
	var mu sync.Mutex
	loadCodes := map[string]map[int]int{closed: {}, local: {}}
	var wg sync.WaitGroup
	for _, base := range []string{closed, local} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, _, _ := r.call(base, "load")
				mu.Lock()
				loadCodes[base][code]++
				mu.Unlock()
			}
		}()
	}
	if code, body, _ := r.call(closed, "closed"); code != 200 {
		t.Fatalf("before the kill: %d %s", code, body)
	}
	r.redis.Kill()
	before := len(r.aoai.Requests())

	code, body, hdr := r.call(closed, "closed")
	if code != 503 || !strings.Contains(body, "rate limiter unavailable") || hdr.Get("Retry-After") == "" {
		t.Errorf("fail_closed with Redis down: %d %s (Retry-After %q)", code, body, hdr.Get("Retry-After"))
	}
	// Local counters start empty: rpm calls pass, then 429 (a minute
	// boundary may let up to 2*rpm through).
	if n := r.untilThrottled(local, "local", 2*rpm+1); n < rpm || n > 2*rpm {
		t.Errorf("local policy admitted %d calls before a 429, want %d (or up to %d across a minute boundary)", n, rpm, 2*rpm)
	}
	for _, c := range []struct {
		logs   *syncBuffer
		policy string
	}{{closedLogs, "fail_closed"}, {localLogs, "local"}} {
		want := "shared rate limiter unreachable; applying policy until it returns"
		if !waitFor(func() bool { return strings.Contains(c.logs.String(), want) }) ||
			!strings.Contains(c.logs.String(), "policy="+c.policy) ||
			!strings.Contains(c.logs.String(), `component=gateway degraded=true outages=1`) {
			t.Errorf("%s gateway did not log the outage:\n%s", c.policy, c.logs.String())
		}
	}

	// Redis returns (empty) on the same address; the fallback probes it.
	r.redis = testenv.StartRedisServer(t, r.redis.Addr)
	if !waitFor(func() bool { code, _, _ := r.call(closed, "closed"); return code == 200 }) {
		t.Fatal("the fail_closed gateway still refuses after Redis returned")
	}
	close(stop)
	wg.Wait()
	for _, l := range []*syncBuffer{closedLogs, localLogs} {
		if !waitFor(func() bool {
			r.call(local, "load") // a call lets the local gateway's fallback probe
			return strings.Contains(l.String(), "shared rate limiter recovered") &&
				strings.Contains(l.String(), `component=gateway degraded=false outages=1 recoveries=1`)
		}) {
			t.Errorf("no recovery logged:\n%s", l.String())
		}
	}
	// Shared limits again: the key "local" is counted in the new Redis
	// through either gateway.
	if n := r.untilThrottled(closed, "local", 2*rpm+1); n < rpm || n > 2*rpm {
		t.Errorf("after recovery the closed gateway admitted %d calls of key local before a 429, want %d", n, rpm)
	}
	at := time.Now()
	if code, _, _ := r.call(local, "local"); code != 429 && at.Truncate(time.Minute) == time.Now().Truncate(time.Minute) {
		t.Errorf("after recovery the local gateway does not see the shared count: %d", code)
	}
	t.Logf("load during the test: closed gateway %v, local gateway %v; backend calls during the outage %d",
		loadCodes[closed], loadCodes[local], len(r.aoai.Requests())-before)
	for base, codes := range loadCodes {
		for code := range codes {
			if code != 200 && code != 429 && code != 503 {
				t.Errorf("%s answered %d under load", base, code)
			}
		}
	}
	if loadCodes[closed][503] == 0 || loadCodes[local][503] != 0 {
		t.Errorf("load: closed gateway %v, local gateway %v: want 503s only from the fail_closed one", loadCodes[closed], loadCodes[local])
	}
}

// waitFor polls cond for up to 20 seconds.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}
