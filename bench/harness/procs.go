package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// missingToolsError says which external tools are absent and how to get them.
type missingToolsError struct{ tools []string }

func (e *missingToolsError) Error() string {
	return fmt.Sprintf("missing %s; the harness installs nothing itself. On Debian or Ubuntu:\n\n"+
		"    sudo apt-get install -y wrk nginx-light\n", strings.Join(e.tools, " and "))
}

// tools are the paths of the external programs the harness runs.
type tools struct{ wrk, nginx string }

// findTools looks for wrk and nginx on PATH and in /usr/sbin (nginx lives
// there, which is not on every user's PATH). nginx is needed only when it is
// a target.
func findTools(needNginx bool) (tools, error) {
	var t tools
	var missing []string
	look := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				return p
			}
		}
		missing = append(missing, name)
		return ""
	}
	t.wrk = look("wrk")
	if needNginx {
		t.nginx = look("nginx")
	}
	if len(missing) > 0 {
		return t, &missingToolsError{tools: missing}
	}
	return t, nil
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the tapline module: run the harness from the repository")
	}
	return filepath.Dir(gomod), nil
}

// build compiles the three Go binaries into dir.
func build(ctx context.Context, root, dir string) error {
	for _, pkg := range []string{"./cmd/tapline", "./bench/emulator", "./bench/bareproxy"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", pkg, err, out)
		}
	}
	return nil
}

// proc is a server the harness started. It is stopped by its PID only.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string // file holding its stdout and stderr
	quit syscall.Signal
	done chan struct{}
	err  error // set when done is closed
}

// start runs name with args, its output going to dir/name.log. With
// firstLine, the first line of stdout is returned (the servers the harness
// builds print their URL there) and the rest of the output goes to the log.
func start(dir, name string, quit syscall.Signal, firstLine bool, bin string, args ...string) (*proc, string, error) {
	logPath := filepath.Join(dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, "", fmt.Errorf("create log: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = lf
	cmd.Stdout = lf
	var pr, pw *os.File
	if firstLine {
		// An os.Pipe rather than StdoutPipe: Wait runs concurrently with the
		// reader and must not close the pipe under it.
		if pr, pw, err = os.Pipe(); err != nil {
			lf.Close()
			return nil, "", fmt.Errorf("%s: stdout pipe: %w", name, err)
		}
		cmd.Stdout = pw
	}
	err = cmd.Start()
	if pw != nil {
		pw.Close() // the child holds its own copy
	}
	if err != nil {
		lf.Close()
		if pr != nil {
			pr.Close()
		}
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, quit: quit, done: make(chan struct{})}
	lines := make(chan string, 1)
	copied := make(chan struct{})
	if firstLine {
		go func() {
			defer close(copied)
			defer pr.Close()
			br := bufio.NewReader(pr)
			line, _ := br.ReadString('\n')
			lines <- strings.TrimSpace(line)
			_, _ = io.Copy(lf, br)
		}()
	} else {
		close(copied)
	}
	go func() {
		p.err = cmd.Wait()
		<-copied
		lf.Close()
		close(p.done)
	}()
	if !firstLine {
		return p, "", nil
	}
	select {
	case line := <-lines:
		if line == "" {
			p.stop()
			return nil, "", fmt.Errorf("%s printed no address; see %s:\n%s", name, logPath, tail(logPath))
		}
		return p, line, nil
	case <-time.After(15 * time.Second):
		p.stop()
		return nil, "", fmt.Errorf("%s printed no address within 15s; see %s", name, logPath)
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive reports whether the process has not exited.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends the process its quit signal, waits up to 35s (the gateway
// drains calls in flight for up to 30s), then kills it. It may be called
// more than once.
func (p *proc) stop() {
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(p.quit)
	select {
	case <-p.done:
	case <-time.After(35 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitListening waits until addr accepts TCP connections or p exits.
func waitListening(ctx context.Context, p *proc, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if !p.alive() {
			return fmt.Errorf("%s exited (%v) before listening on %s:\n%s", p.name, p.err, addr, tail(p.log))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after 30s; see %s", p.name, addr, p.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freeAddr returns a loopback address with a port free at the time of the
// call, for servers that must be told their port (nginx, tapline serve).
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (the kernel fixes it for
// userspace, whatever CONFIG_HZ is), so there is no need for sysconf.
const clockTicks = 100

// cpuTime returns the user plus system CPU time of pid and all its
// descendants (nginx's work is done by its worker, a child of the master),
// from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	stats, err := allStats()
	if err != nil {
		return 0, err
	}
	if _, ok := stats[pid]; !ok {
		return 0, fmt.Errorf("process %d is gone", pid)
	}
	tree := map[int]bool{pid: true}
	for grew := true; grew; {
		grew = false
		for p, st := range stats {
			if !tree[p] && tree[int(st.ppid)] {
				tree[p], grew = true, true
			}
		}
	}
	var ticks int64
	for p := range tree {
		ticks += stats[p].utime + stats[p].stime
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

type procStat struct{ ppid, utime, stime int64 }

// allStats reads /proc/*/stat.
func allStats() (map[int]procStat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	out := make(map[int]procStat, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		if st, err := parseStat(string(b)); err == nil {
			out[pid] = st
		}
	}
	return out, nil
}

// parseStat reads ppid, utime and stime from the text of /proc/PID/stat
// (proc(5): fields 4, 14 and 15). The command name, field 2, is in
// parentheses and may hold spaces and parentheses, so fields are counted
// after the last ')'.
func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("no ')' in stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("stat has %d fields after the name", len(f))
	}
	var st procStat
	var err error
	for _, x := range []struct {
		dst *int64
		idx int
	}{{&st.ppid, 1}, {&st.utime, 11}, {&st.stime, 12}} {
		if *x.dst, err = strconv.ParseInt(f[x.idx], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("stat field %d: %w", x.idx+3, err)
		}
	}
	return st, nil
}
