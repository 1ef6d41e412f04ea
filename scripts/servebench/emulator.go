package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-fp/tandem/schemas/bigtablestore"
)

// emulatorChildFlag makes this binary serve the emulator for its parent.
const emulatorChildFlag = "emulator_child"

// emulatorPID is the emulator's child process, 0 when there is none.
var emulatorPID int

// serveEmulator is the child: it starts bttest, prints its address on
// standard output and serves until standard input closes (the parent exited
// or stopped it).
func serveEmulator() error {
	srv, _, err := bigtablestore.StartEmulator()
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Println(srv.Addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// startEmulatorProcess starts this binary as the emulator's child process
// and returns its address and a function that stops it.
func startEmulatorProcess() (addr string, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self, "--"+emulatorChildFlag)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start emulator process: %w", err)
	}
	stop = func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("emulator process gave no address: %w", err)
	}
	emulatorPID = cmd.Process.Pid
	return strings.TrimSpace(line), stop, nil
}

// childCPU is the CPU time (user + system) process pid has used, read from
// /proc; 0 for pid 0 or when it cannot be read.
func childCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after its closing
	// parenthesis are space-separated, utime and stime being the 12th and
	// 13th of them, in clock ticks of 1/100 s.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if errors.Join(err1, err2) != nil {
		return 0
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}
