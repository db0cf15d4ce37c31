// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// tuning holds the experimental settings: the process's timer slack.
// They are hidden flags of export and serve (experimentalFlags), not
// config keys: they may change or go once measured. GOMAXPROCS needs no
// flag: the Go runtime reads the environment variable.
type tuning struct {
	TimerSlack time.Duration // every thread's PR_SET_TIMERSLACK; 0: the kernel's (50µs)
}

// maxTimerSlack bounds --x-timerslack; the kernel's default is 50µs.
const maxTimerSlack = time.Second

// experimentalFlags are export's and serve's hidden flags for tuning.
func experimentalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "x-timerslack", Hidden: true,
			Usage: "EXPERIMENTAL, may change or go: prctl(PR_SET_TIMERSLACK) on every thread, e.g. 1us (0: the kernel's default, 50us)"},
	}
}

// tuningFlags reads and checks the experimental flags.
func tuningFlags(c *cli.Context) (tuning, error) {
	t := tuning{TimerSlack: c.Duration("x-timerslack")}
	if t.TimerSlack < 0 || t.TimerSlack > maxTimerSlack {
		return t, usageErr("--x-timerslack %v: want 0 (the kernel's default) to %v", t.TimerSlack, maxTimerSlack)
	}
	return t, nil
}

// setTimerSlack sets the timer slack of every thread of the process
// (prctl PR_SET_TIMERSLACK, in nanoseconds): how late the kernel may fire
// the thread's timers (nanosleep, poll and futex timeouts) to batch
// wake-ups. The value belongs to each thread and a new thread starts with
// its creator's (prctl(2)), so, like bridge.MarkIOFlusher, it goes to
// every thread with AllThreadsSyscall, before any kernel object exists
// (see MarkIOFlusher for why); threads the runtime starts later inherit
// it. AllThreadsSyscall answers ENOTSUP in a cgo binary.
func setTimerSlack(d time.Duration) error {
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, syscall.PR_SET_TIMERSLACK, uintptr(d.Nanoseconds()), 0)
	if errno != 0 {
		return fmt.Errorf("prctl(PR_SET_TIMERSLACK, %v) on every thread: %w", d, errno)
	}
	return nil
}
