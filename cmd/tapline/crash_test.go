package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/auth"
	"github.com/tapline/tapline/internal/emulator"
	"github.com/tapline/tapline/internal/record"
	"github.com/tapline/tapline/internal/store"
)

// TestServeHelper is not a test: the crash test runs the gateway in a child
// process through it.
func TestServeHelper(t *testing.T) {
	if os.Getenv("TAPLINE_TEST_SERVE") == "" {
		t.Skip("helper process for TestStrictAuditSurvivesKill")
	}
	os.Exit(run(context.Background(), []string{"serve", "--config", os.Getenv("TAPLINE_TEST_SERVE")}, os.Stdout, os.Stderr))
}

var listeningRE = regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)

// startGateway runs `tapline serve` in a child process and returns it with
// the gateway's base URL.
func startGateway(t *testing.T, cfgPath string, logs io.Writer) (*exec.Cmd, string) {
	t.Helper()
	cmd, addr := startServe(t, cfgPath, logs, listeningRE)
	return cmd, "http://" + addr
}

// startServe runs `tapline serve` in a child process and waits for a log
// line matching ready; it returns the process and the line's first
// submatch. The process is killed when the test ends.
func startServe(t *testing.T, cfgPath string, logs io.Writer, ready *regexp.Regexp) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelper$")
	cmd.Env = append(os.Environ(), "TAPLINE_TEST_SERVE="+cfgPath)
	pipe, _ := cmd.StderrPipe()
	stderr := io.TeeReader(pipe, logs)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case s := <-found:
		return cmd, s
	case <-time.After(30 * time.Second):
		t.Fatalf("tapline serve did not log %s", ready)
	}
	return nil, ""
}

// Strict audit across kill -9: the gateway runs as its own process under
// concurrent load, streamed and not, and is killed mid-flight. After a
// restart on the same store, every request the backend received has a
// record, and none is left started.
func TestStrictAuditSurvivesKill(t *testing.T) {
	aoai := emulator.NewAOAI(emulator.AOAIConfig{
		Deployments: map[string]string{"gpt-4o": "gpt-4o-2024-08-06"},
		APIKeys:     []string{"upstream-key"}, TokensPerSecond: 400, CompletionTokens: 40,
	}, slog.New(slog.DiscardHandler))
	up := httptest.NewServer(aoai)
	defer up.Close()
	key, hash, _ := auth.NewKey()
	idpURL, idp, stopIdP, err := emulator.ListenEntra(context.Background(), "127.0.0.1:0",
		emulator.EntraConfig{TenantID: demoTenant}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stopIdP()
	token, err := idp.Mint(emulator.TokenSpec{Version: 2, App: true, Audience: demoAudience, AppID: "load-app"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "crash.db")
	cfg := filepath.Join(dir, "tapline.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`store: {path: %s}
azure: {authority: %s}
gateway:
  listen: 127.0.0.1:0
  audit: strict
  auth:
    keys: [{name: load, hash: %q}]
    entra: {tenants: [%s], audiences: [%s]}
  backends: [{name: emu, url: %s, api_key: upstream-key}]
`, db, idpURL, hash, demoTenant, demoAudience, up.URL)), 0o600)

	logs := &syncBuffer{}
	child, base := startGateway(t, cfg, logs)
	var acked atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := w%2 == 0
			for ctx.Err() == nil {
				body := fmt.Sprintf(`{"stream":%v,"messages":[{"role":"user","content":"worker %d"}]}`, stream, w)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
					base+"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", strings.NewReader(body))
				if w%4 < 2 {
					req.Header.Set("api-key", key)
				} else {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // the gateway is gone
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 {
					acked.Add(1)
				}
			}
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); acked.Load() < 150 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	cancel()
	wg.Wait()

	// Restart on the same store: records the kill left started become
	// interrupted.
	child2, _ := startGateway(t, cfg, logs)
	child2.Process.Signal(syscall.SIGTERM)
	child2.Wait()

	st, err := store.OpenReadOnly(context.Background(), db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	states := map[string]string{}
	kinds := map[string]int{}
	st.Records(context.Background(), store.Filter{Kind: record.KindGatewayRequest}, func(r record.Record) error {
		var g record.GatewayRequest
		if err := json.Unmarshal(r.Data, &g); err != nil {
			return err
		}
		states[r.ID] = g.State
		if g.Status == 200 {
			kinds[g.Principal.Kind]++
		}
		return nil
	})
	if kinds[record.PrincipalKey] == 0 || kinds[record.PrincipalEntraApp] == 0 {
		t.Errorf("successful calls by principal kind: %v; want both key and Entra callers", kinds)
	}
	received := aoai.Requests()
	counts := map[string]int{}
	missing := 0
	for _, r := range received {
		s, ok := states[r.ClientRequestID]
		if !ok {
			missing++
			continue
		}
		counts[s]++
	}
	t.Logf("the backend received %d calls (%d completed by the caller before the kill); the store holds %d records: %v; missing %d",
		len(received), acked.Load(), len(states), counts, missing)
	if missing > 0 || len(received) == 0 {
		t.Fatalf("%d of %d calls the backend received have no record", missing, len(received))
	}
	if counts[record.StateStarted] > 0 {
		t.Errorf("%d records still started after the restart", counts[record.StateStarted])
	}
	if counts[record.StateInterrupted] == 0 {
		t.Errorf("the kill interrupted no call in flight; the test did not test anything")
	}
	assertNoSecrets(t, dir, logs.String(), key, "upstream-key", token, strings.Split(token, ".")[2])
}

// assertNoSecrets scans every file under dir (the store, its WAL, sink
// files) and the logs for the secrets the test used.
func assertNoSecrets(t *testing.T, dir, logs string, secrets ...string) {
	t.Helper()
	scanned := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".yaml") { // the config holds them by design
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		scanned += len(b)
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s contains a secret (%.12s...)", p, s)
			}
		}
		return nil
	})
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain a secret (%.12s...)", s)
		}
	}
	if scanned == 0 || logs == "" {
		t.Fatalf("nothing to scan: %d bytes of files, %d of logs", scanned, len(logs))
	}
	t.Logf("scanned %d bytes of files and %d of logs for %d secrets", scanned, len(logs), len(secrets))
}
