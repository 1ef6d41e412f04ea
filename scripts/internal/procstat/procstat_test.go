package procstat

import "testing"

// TestPeakRSS: a phase that holds 64 MiB shows a peak at least that much
// above the reset, and the CPU clock moves.
func TestPeakRSS(t *testing.T) {
	ResetPeak()
	before := PeakRSS()
	if before <= 0 {
		t.Skip("no VmHWM in /proc/self/status (not Linux)")
	}
	cpu0 := CPUTime()
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	if got := PeakRSS(); got < before+60<<20 {
		t.Errorf("peak RSS %d after touching 64 MiB, want ≥ %d", got, before+60<<20)
	}
	if CPUTime() <= cpu0 {
		t.Error("CPU time did not move while touching 64 MiB")
	}
	_ = buf[len(buf)-1]
}
