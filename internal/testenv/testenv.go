// Package testenv finds the real servers and tools that tests use
// (node and npm packages now; Azurite, Redis, Chromium later) and decides
// whether a missing one skips a test or fails it.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Required reports whether TAPLINE_TEST_REQUIRE names the component (a
// comma-separated list, or "all"). The test script sets it so that in CI a
// missing component fails instead of skipping.
func Required(name string) bool {
	list := strings.Split(os.Getenv("TAPLINE_TEST_REQUIRE"), ",")
	return slices.Contains(list, name) || slices.Contains(list, "all")
}

// Missing skips the test, or fails it when the component is required.
func Missing(t testing.TB, name, why string) {
	t.Helper()
	if Required(name) {
		t.Fatalf("%s is required by TAPLINE_TEST_REQUIRE but %s", name, why)
	}
	t.Skipf("skipping: %s (run scripts/test.sh to install it)", why)
}

// RepoRoot is the module root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// NodeModules returns node and the node_modules directory holding the npm
// packages the tests use (TAPLINE_NODE_MODULES, or .tools/node_modules
// where scripts/test.sh installs them), and that pkg is installed there.
func NodeModules(t testing.TB, pkg string) (node, modules string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		Missing(t, "node", "node is not on PATH")
	}
	modules = os.Getenv("TAPLINE_NODE_MODULES")
	if modules == "" {
		modules = filepath.Join(RepoRoot(), ".tools", "node_modules")
	}
	if _, err := os.Stat(filepath.Join(modules, pkg, "package.json")); err != nil {
		Missing(t, "node", "the npm package "+pkg+" is not installed in "+modules)
	}
	return node, modules
}
