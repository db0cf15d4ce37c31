// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

func TestTuningFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want tuning
		err  string // in the error; "" for none
	}{
		{nil, tuning{}, ""},
		{[]string{"--x-timerslack", "1us"}, tuning{TimerSlack: time.Microsecond}, ""},
		{[]string{"--x-timerslack", "2s"}, tuning{}, "--x-timerslack"},
		{[]string{"--x-timerslack", "-1ns"}, tuning{}, "--x-timerslack"},
	} {
		for _, cmd := range []*cli.Command{exportCommand(), serveCommand()} {
			var got tuning
			var err error
			cmd.Action = func(c *cli.Context) error {
				got, err = tuningFlags(c)
				return nil
			}
			args := append([]string{"lunbridge", cmd.Name}, tt.args...)
			if cmd.Name == "serve" {
				args = append(args, "--config", "c.toml")
			}
			app := &cli.App{Commands: []*cli.Command{cmd}, Writer: io.Discard, ErrWriter: io.Discard}
			if rerr := app.Run(args); rerr != nil {
				t.Fatalf("%v: %v", args, rerr)
			}
			switch {
			case tt.err == "" && (err != nil || got != tt.want):
				t.Errorf("%v: tuning %+v, %v; want %+v", args, got, err, tt.want)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("%v: error %v, want one naming %s", args, err, tt.err)
			case tt.err != "":
				var ec cli.ExitCoder
				if !errors.As(err, &ec) || ec.ExitCode() != exitUsage {
					t.Errorf("%v: error %v is not a usage error", args, err)
				}
			}
		}
	}
}

// timerSlack returns the calling thread's timer slack.
func timerSlack(t *testing.T) uintptr {
	v, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_TIMERSLACK, 0, 0)
	if errno != 0 {
		t.Fatalf("prctl(PR_GET_TIMERSLACK): %v", errno)
	}
	return v
}

// TestSetTimerSlack: every thread, those running and those started after,
// gets the slack. A cgo test binary cannot (AllThreadsSyscall answers
// ENOTSUP; lunbridge is built with CGO_ENABLED=0):
// CGO_ENABLED=0 go test -run TestSetTimerSlack .
func TestSetTimerSlack(t *testing.T) {
	const slack = 1234 * time.Nanosecond
	if err := setTimerSlack(slack); errors.Is(err, syscall.ENOTSUP) {
		t.Skipf("%v (a cgo binary)", err)
	} else if err != nil {
		t.Fatal(err)
	}
	// Goroutines on threads of their own, most of them new.
	var wg sync.WaitGroup
	release := make(chan struct{})
	got := make(chan uintptr, 16)
	for range 16 {
		wg.Go(func() {
			runtime.LockOSThread()
			got <- timerSlack(t)
			<-release // hold the thread, so that the next one is another
		})
	}
	for range 16 {
		if v := <-got; v != uintptr(slack) {
			t.Errorf("a thread's timer slack is %d ns, want %d", v, slack)
		}
	}
	close(release)
	wg.Wait()
}
