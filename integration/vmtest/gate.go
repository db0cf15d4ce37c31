// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"testing"
)

// Mode is the value of LUNBRIDGE_INTEGRATION: "" (real-kernel tests skip),
// "require" (a missing asset fails the test: CI) or anything else (run; a
// missing asset skips with the reason).
func Mode() string { return os.Getenv("LUNBRIDGE_INTEGRATION") }

// Require gates a real-kernel test. Without LUNBRIDGE_INTEGRATION it skips.
// Otherwise it prepares the assets (host tools, kernel package, initramfs;
// cached) and, when one is missing, skips with the reason, or fails the test
// when LUNBRIDGE_INTEGRATION=require. Run and Boot call it themselves.
func Require(t testing.TB) {
	t.Helper()
	if Mode() == "" {
		t.Skip("set LUNBRIDGE_INTEGRATION=1 to run real-kernel tests")
	}
	if _, err := prepare(t.Context()); err != nil {
		missingAsset(t, err)
	}
}

// RequireTools gates on host programs a test runs itself (iscsi-inq,
// qemu-img, ...), like Require does for the harness's own assets.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	Require(t)
	for _, tool := range tools {
		if _, err := lookTool(tool); err != nil {
			missingAsset(t, err)
		}
	}
}

func missingAsset(t testing.TB, err error) {
	t.Helper()
	if Mode() == "require" || !errors.Is(err, ErrMissingAsset) {
		t.Fatalf("vmtest: %v", err)
	}
	t.Skipf("vmtest: %v", err)
}

// Run boots a guest, runs opts.Script to the end and returns its result. It
// fails the test (t.Fatal) if the guest crashes or times out, or if the
// script exits with a non-zero status: a test that expects a failing script
// uses Start and Wait. The console goes to t.Log unless opts.Console is set.
// The share stays readable until the end of the test.
func Run(t testing.TB, opts Options) Result {
	t.Helper()
	vm := Boot(t, opts)
	res, err := vm.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("vmtest: guest script exited with status %d after %s%s",
			res.ExitCode, res.Elapsed.Round(100_000_000), tail(res.Console, 30))
	}
	return res
}

// Boot is Start for tests: it applies Require, sends the console to t.Log
// (unless opts.Console is set), fails the test if the guest cannot start,
// and closes the VM at the end of the test. The test then acts on the host
// (HostPort, WaitReady, Signal) and calls Wait.
func Boot(t testing.TB, opts Options) *VM {
	t.Helper()
	Require(t)
	var lw *logWriter
	if opts.Console == nil {
		lw = &logWriter{t: t}
		opts.Console = lw
	}
	vm, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vm.Close() // joins the console goroutine: no t.Log after the test
		if lw != nil {
			lw.flush()
		}
	})
	return vm
}

// LogWriter returns an io.Writer that logs each complete line with t.Log.
// Stop writing to it before the test ends (Boot and Run take care of that).
func LogWriter(t testing.TB) io.Writer { return &logWriter{t: t} }

type logWriter struct {
	t   testing.TB
	mu  sync.Mutex
	buf []byte // protected by mu: an incomplete last line
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.t.Log(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *logWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.t.Log(string(w.buf))
		w.buf = nil
	}
}
