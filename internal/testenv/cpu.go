package testenv

import (
	"syscall"
	"testing"
	"time"
)

// ProcessCPU is the user and system CPU time of this process so far (zero
// where getrusage fails).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPUPerOp reports, as cpu-µs/op, the process's CPU time since
// ProcessCPU returned start, per benchmark iteration: caller, servers and
// runtime together, the figure the gateway's CPU targets are about.
func ReportCPUPerOp(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((ProcessCPU()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}
