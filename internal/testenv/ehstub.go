package testenv

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EventHubsStubKey is the SAS key of the Event Hubs stand-in's connection
// string, the one the Event Hubs emulator documents.
const EventHubsStubKey = "SAS_KEY_VALUE"

// ErrStubMissing is returned by NewEventHubsStub when node or the rhea npm
// package is not installed.
var ErrStubMissing = errors.New("event hubs stub unavailable")

// eventHubsComponent names the stand-in in TAPLINE_TEST_REQUIRE.
const eventHubsComponent = "eventhubs-stub"

// EventHubsOption configures the Event Hubs stand-in.
type EventHubsOption func(*eventHubsConfig)

type eventHubsConfig struct {
	hub        string
	partitions int
	maxMessage int
	checkKey   bool
	token      string
	tls        bool
}

// EventHubsHub sets the event hub's name (default "hub1"). Links to any
// other entity are refused with amqp:not-found, as Event Hubs does.
func EventHubsHub(name string) EventHubsOption {
	return func(c *eventHubsConfig) { c.hub = name }
}

// EventHubsPartitions sets the number of partitions (default 2).
func EventHubsPartitions(n int) EventHubsOption {
	return func(c *eventHubsConfig) { c.partitions = n }
}

// EventHubsMaxMessageSize sets the max-message-size the stub's links
// announce, from which the SDK sizes batches (default 1 MiB, as Standard
// tier).
func EventHubsMaxMessageSize(n int) EventHubsOption {
	return func(c *eventHubsConfig) { c.maxMessage = n }
}

// EventHubsCheckKey makes the stub verify every SAS token's signature with
// EventHubsStubKey and answer a wrong one with status 401 on $cbs, as Event
// Hubs does. Without it the stub accepts any token.
func EventHubsCheckKey() EventHubsOption {
	return func(c *eventHubsConfig) { c.checkKey = true }
}

// EventHubsToken makes the stub accept only this Entra ID token ("jwt"
// put-token) and answer any other with status 401. Without it the stub
// accepts any token.
func EventHubsToken(tok string) EventHubsOption {
	return func(c *eventHubsConfig) { c.token = tok }
}

// EventHubsTLS makes the stub listen with TLS (amqps), as the SDK requires
// with a token credential, using a self-signed certificate for 127.0.0.1
// that TLSConfig trusts.
func EventHubsTLS() EventHubsOption {
	return func(c *eventHubsConfig) { c.tls = true }
}

// EventHubsStub is a running testdata/ehstub.js: an AMQP stand-in for Event
// Hubs that the real azeventhubs SDK can produce to and consume from. It
// listens on 127.0.0.1.
type EventHubsStub struct {
	// Hub is the event hub's name.
	Hub string
	// Port is the AMQP port.
	Port int

	node, modules string
	cfg           eventHubsConfig
	certPEM       []byte // with EventHubsTLS
	keyPEM        []byte

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartEventHubsStub starts the Event Hubs stand-in for the test, stops it
// by PID when the test ends, and returns its connection string with the
// hub as EntityPath. It skips the test (or fails it, when
// TAPLINE_TEST_REQUIRE names "eventhubs-stub") if node or rhea is missing.
func StartEventHubsStub(t testing.TB, opts ...EventHubsOption) string {
	t.Helper()
	return LaunchEventHubsStub(t, opts...).ConnectionString(true)
}

// LaunchEventHubsStub is StartEventHubsStub returning the stub itself, for
// tests that stop and restart it.
func LaunchEventHubsStub(t testing.TB, opts ...EventHubsOption) *EventHubsStub {
	t.Helper()
	if _, _, err := findNodeModules("rhea"); err != nil {
		Missing(t, eventHubsComponent, err.Error())
	}
	node, modules := NodeModules(t, "rhea")
	s := newEventHubsStub(node, modules, opts)
	if err := s.Start(); err != nil {
		t.Fatalf("start event hubs stub: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop event hubs stub: %v", err)
		}
	})
	return s
}

// NewEventHubsStub starts the stand-in without a testing.TB, for benchmarks
// and the bench harness. It returns an error wrapping ErrStubMissing if
// node or rhea is not installed. The caller must call Stop.
func NewEventHubsStub(opts ...EventHubsOption) (*EventHubsStub, error) {
	node, modules, err := findNodeModules("rhea")
	if err != nil {
		return nil, err
	}
	s := newEventHubsStub(node, modules, opts)
	if err := s.Start(); err != nil {
		return nil, fmt.Errorf("start event hubs stub: %w", err)
	}
	return s, nil
}

func newEventHubsStub(node, modules string, opts []EventHubsOption) *EventHubsStub {
	cfg := eventHubsConfig{hub: "hub1", partitions: 2, maxMessage: 1 << 20}
	for _, o := range opts {
		o(&cfg)
	}
	return &EventHubsStub{Hub: cfg.hub, node: node, modules: modules, cfg: cfg}
}

// Namespace returns the stub's address in the form of a fully qualified
// namespace, for azeventhubs.NewProducerClient with a credential (which
// needs EventHubsTLS).
func (s *EventHubsStub) Namespace() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
}

// TLSConfig returns a client TLS configuration that trusts the stub's
// certificate, or nil without EventHubsTLS.
func (s *EventHubsStub) TLSConfig() *tls.Config {
	if s.certPEM == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.certPEM)
	// ServerName is set because the SDK would verify "127.0.0.1:PORT", port
	// included, which no certificate names.
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// selfSigned returns a PEM certificate and key for 127.0.0.1.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "eventhubs-stub"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// tlsFiles writes the certificate and key for the stub process to read at
// start; the caller removes dir once the stub listens.
func (s *EventHubsStub) tlsFiles() (dir string, env []string, err error) {
	if s.certPEM == nil {
		if s.certPEM, s.keyPEM, err = selfSigned(); err != nil {
			return "", nil, err
		}
	}
	dir, err = os.MkdirTemp("", "ehstub-tls-")
	if err != nil {
		return "", nil, err
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, s.certPEM, 0o600); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	if err := os.WriteFile(key, s.keyPEM, 0o600); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, []string{"EH_TLS_CERT=" + cert, "EH_TLS_KEY=" + key}, nil
}

// findNodeModules is NodeModules without a testing.TB.
func findNodeModules(pkg string) (node, modules string, err error) {
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", fmt.Errorf("%w: node is not on PATH", ErrStubMissing)
	}
	modules = os.Getenv("TAPLINE_NODE_MODULES")
	if modules == "" {
		modules = filepath.Join(RepoRoot(), ".tools", "node_modules")
	}
	if _, err := os.Stat(filepath.Join(modules, pkg, "package.json")); err != nil {
		return "", "", fmt.Errorf("%w: the npm package %s is not installed in %s", ErrStubMissing, pkg, modules)
	}
	return node, modules, nil
}

// ConnectionString returns the stub's connection string in the Event Hubs
// emulator's form (plain AMQP, no TLS), with EntityPath=Hub if entityPath.
func (s *EventHubsStub) ConnectionString(entityPath bool) string {
	cs := fmt.Sprintf("Endpoint=sb://127.0.0.1:%d;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=%s;UseDevelopmentEmulator=true",
		s.Port, EventHubsStubKey)
	if entityPath {
		cs += ";EntityPath=" + s.Hub
	}
	return cs
}

// Start starts the stub process: on a free port the first time, on the same
// port after Stop, so that clients reconnect to it. Stored events do not
// survive a restart. It waits for the stub's LISTEN line.
func (s *EventHubsStub) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	cmd := exec.Command(s.node, filepath.Join(RepoRoot(), "internal", "testenv", "testdata", "ehstub.js"))
	env := append(os.Environ(),
		"NODE_PATH="+s.modules,
		"PORT="+strconv.Itoa(s.Port),
		"EH_NAME="+s.cfg.hub,
		"EH_PARTITIONS="+strconv.Itoa(s.cfg.partitions),
		"EH_MAX_MESSAGE_SIZE="+strconv.Itoa(s.cfg.maxMessage))
	if s.cfg.checkKey {
		env = append(env, "EH_SAS_KEY="+EventHubsStubKey)
	}
	if s.cfg.token != "" {
		env = append(env, "EH_TOKEN="+s.cfg.token)
	}
	if s.cfg.tls {
		dir, tlsEnv, err := s.tlsFiles()
		if err != nil {
			return fmt.Errorf("write stub certificate: %w", err)
		}
		defer os.RemoveAll(dir) // the stub has read them once it listens
		env = append(env, tlsEnv...)
	}
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
				lines <- p
				break
			}
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out) // keep the pipe drained
	}()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()

	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case p, ok := <-lines:
		port, err := strconv.Atoi(p)
		if !ok || err != nil {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("stub exited before listening: %s", strings.TrimSpace(stderr.String()))
		}
		s.Port, s.cmd, s.done = port, cmd, done
		return nil
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("stub did not listen within 15s: %s", strings.TrimSpace(stderr.String()))
	}
}

// Stop stops the stub process by its PID (SIGTERM, then SIGKILL after 5s).
// Stopping a stopped stub does nothing.
func (s *EventHubsStub) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("stub pid %d ignored SIGTERM for 5s and was killed", cmd.Process.Pid)
	}
}
