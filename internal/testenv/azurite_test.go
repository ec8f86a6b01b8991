package testenv

import (
	"net"
	"regexp"
	"testing"
	"time"
)

// Azurite listens on a loopback port that the connection string names, and
// stop ends the process so that the port is closed afterwards.
func TestAzurite(t *testing.T) {
	if _, _, err := azuriteCommand(); err != nil {
		Missing(t, "azurite", err.Error())
	}
	conn, stop, err := Azurite(t.TempDir())
	if err != nil {
		t.Fatalf("Azurite: %v", err)
	}
	m := regexp.MustCompile(`BlobEndpoint=http://(127\.0\.0\.1:\d+)/devstoreaccount1;`).FindStringSubmatch(conn)
	if m == nil {
		stop()
		t.Fatalf("connection string %q has no loopback blob endpoint", conn)
	}
	c, err := net.DialTimeout("tcp", m[1], 5*time.Second)
	if err != nil {
		stop()
		t.Fatalf("dial %s: %v", m[1], err)
	}
	c.Close()
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", m[1], time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after stop", m[1])
	}
	if err := stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
}
