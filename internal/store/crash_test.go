package store

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapline/tapline/internal/record"
)

// crashDBEnv names the database TestCrashHelper writes to; it is set only in
// the child process TestCrash starts.
const crashDBEnv = "TAPLINE_STORE_CRASH_DB"

// crashAcks is how many acknowledgements the parent waits for before the kill.
const crashAcks = 3000

// TestCrash kills a process mid-write and checks that every write it
// acknowledged is in the store after reopening (STYLE.md: crash tests).
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary; skipped with -short")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDBEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe() // the child exits when this closes
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	acked := map[string]string{} // id -> last acknowledged op: A, B or F
	var other strings.Builder    // anything else the child printed
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		line, isAck := strings.CutPrefix(sc.Text(), "ack ")
		op, id, ok := strings.Cut(line, " ")
		if !isAck || !ok {
			other.WriteString(sc.Text() + "\n")
			continue
		}
		if acked[id] != "F" {
			acked[id] = op
		}
		if !killed && len(acked) >= crashAcks {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred code runs
				t.Fatal(err)
			}
			killed = true
		}
	}
	waitErr := cmd.Wait()
	if !killed {
		t.Fatalf("child ended after %d acks before the kill: %v\n%s%s", len(acked), waitErr, other.String(), stderr.String())
	}

	s := openStore(t, Config{Path: path})
	stored := map[string]string{} // id -> state
	err = s.Records(t.Context(), Filter{}, func(r record.Record) error {
		stored[r.ID] = payloadState(t, r.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for id, op := range acked {
		counts[op]++
		state, ok := stored[id]
		switch {
		case !ok:
			t.Errorf("acknowledged %s of %s is missing", op, id)
		case op == "F" && state != record.StateCompleted:
			t.Errorf("finished %s has state %q, want completed", id, state)
		case op == "B" && state != record.StateInterrupted && state != record.StateCompleted:
			t.Errorf("begun %s has state %q, want interrupted or completed", id, state)
		case state == record.StateStarted:
			t.Errorf("%s is still started after reopen", id)
		}
	}
	st := checkStats(t, s)
	if st.Pending != 0 {
		t.Errorf("%d records pending after reopen, want 0", st.Pending)
	}
	t.Logf("killed after %d acknowledged ids (append %d, begin only %d, finished %d); "+
		"reopened: %d stored, %d recovered as interrupted",
		len(acked), counts["A"], counts["B"], counts["F"], len(stored), s.Recovered())
}

// TestCrashHelper is the child of TestCrash: it writes until it is killed,
// printing "ack OP ID" only after the call for ID returned nil.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashDBEnv)
	if path == "" {
		t.Skip("run by TestCrash only")
	}
	go func() { // the parent is gone: stop
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	s, err := Open(context.Background(), Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var mu sync.Mutex
	ack := func(op, id string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, "ack %s %s\n", op, id)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; i < 1_000_000; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				if i%2 == 0 {
					if _, err := s.Append(ctx, []record.Record{stateRec(id, record.StateCompleted)}); err != nil {
						t.Error(err)
						return
					}
					ack("A", id)
					continue
				}
				if err := s.Begin(ctx, stateRec(id, record.StateStarted)); err != nil {
					t.Error(err)
					return
				}
				ack("B", id)
				if err := s.Finish(ctx, stateRec(id, record.StateCompleted)); err != nil {
					t.Error(err)
					return
				}
				ack("F", id)
			}
		})
	}
	wg.Wait()
}
