package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// AzuriteAccount and AzuriteKey are Azurite's well-known development
// account and key (public, documented by Microsoft; not a secret).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// ErrAzuriteNotInstalled is returned by Azurite when node or the azurite npm
// package cannot be found.
var ErrAzuriteNotInstalled = errors.New("azurite is not installed")

// Deadlines for Azurite's start (node is slow to load it on a busy machine)
// and for its exit after SIGTERM before it is killed.
const (
	azuriteStartTimeout = 60 * time.Second
	azuriteStopTimeout  = 10 * time.Second
)

// azuriteListens matches the line Azurite prints once it listens; with
// --blobPort 0 it is the only place the chosen port appears
// (reference/test-infrastructure.md §1).
var azuriteListens = regexp.MustCompile(`listens on http://127\.0\.0\.1:(\d+)`)

// StartAzurite starts an Azurite Blob service on a free 127.0.0.1 port with
// its data in a temporary directory, stops it by PID when the test ends, and
// returns the connection string of its well-known account. It skips the test
// (or fails it when TAPLINE_TEST_REQUIRE names "azurite") if Azurite is not
// installed.
func StartAzurite(t testing.TB) (connString string) {
	t.Helper()
	conn, stop, err := Azurite(t.TempDir())
	if errors.Is(err, ErrAzuriteNotInstalled) {
		Missing(t, "azurite", err.Error())
	}
	if err != nil {
		t.Fatalf("start azurite: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop azurite: %v", err)
		}
	})
	return conn
}

// Azurite starts an Azurite Blob service on a free 127.0.0.1 port, keeping
// its data in dir, and returns the connection string of its well-known
// account and a stop function (SIGTERM, then SIGKILL after a deadline) that
// must be called. It is StartAzurite for callers without a *testing.T, such
// as the bench harness. The error wraps ErrAzuriteNotInstalled when node or
// the npm package is missing.
func Azurite(dir string) (conn string, stop func() error, err error) {
	node, script, err := azuriteCommand()
	if err != nil {
		return "", nil, err
	}
	// --skipApiVersionCheck: azblob v1.8.3 sends an x-ms-version Azurite
	// 3.37 rejects; --disableTelemetry: without it the first SIGTERM leaves
	// node running (reference/test-infrastructure.md §1).
	cmd := exec.Command(node, script,
		"--blobHost", "127.0.0.1", "--blobPort", "0", "--location", dir,
		"--skipApiVersionCheck", "--disableTelemetry", "--silent")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, fmt.Errorf("start azurite: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start azurite: %w", err)
	}
	exited := make(chan struct{})
	portc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := azuriteListens.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case portc <- m[1]:
				default:
				}
			}
		}
		// Keep draining so that Azurite never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, out)
	}()
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop = func() error {
		select {
		case <-exited:
			return nil
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return nil
		case <-time.After(azuriteStopTimeout):
		}
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("azurite (pid %d) ignored SIGTERM for %s and was killed", cmd.Process.Pid, azuriteStopTimeout)
	}
	var port string
	select {
	case port = <-portc:
	case <-exited:
		return "", nil, fmt.Errorf("start azurite: exited before listening: %v", waitErr)
	case <-time.After(azuriteStartTimeout):
		_ = stop()
		return "", nil, fmt.Errorf("start azurite: no port printed within %s", azuriteStartTimeout)
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		_ = stop()
		return "", nil, fmt.Errorf("start azurite: %w", err)
	}
	c.Close()
	conn = fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=http://%s/%s;",
		AzuriteAccount, AzuriteKey, addr, AzuriteAccount)
	return conn, stop, nil
}

// azuriteCommand finds node and Azurite's blob entry point the way
// NodeModules does, without a *testing.T.
func azuriteCommand() (node, script string, err error) {
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", fmt.Errorf("%w: node is not on PATH", ErrAzuriteNotInstalled)
	}
	modules := os.Getenv("TAPLINE_NODE_MODULES")
	if modules == "" {
		modules = filepath.Join(RepoRoot(), ".tools", "node_modules")
	}
	script = filepath.Join(modules, "azurite", "dist", "src", "blob", "main.js")
	if _, err := os.Stat(script); err != nil {
		return "", "", fmt.Errorf("%w: the npm package azurite is not installed in %s", ErrAzuriteNotInstalled, modules)
	}
	return node, script, nil
}
