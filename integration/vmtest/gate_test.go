// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
)

// recordTB stands in for the test in gate tests: it records Skip and Fatal
// and ends its goroutine like the real ones do.
type recordTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Skip(args ...any) {
	r.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recordTB) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recordTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func gate(f func(testing.TB)) *recordTB {
	r := &recordTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestRequireSkipsWithoutGate(t *testing.T) {
	t.Setenv("LUNBRIDGE_INTEGRATION", "")
	r := gate(Require)
	if r.skipped == "" || r.failed != "" {
		t.Errorf("Require without LUNBRIDGE_INTEGRATION: skipped %q, failed %q; want a skip", r.skipped, r.failed)
	}
}

func TestMissingAsset(t *testing.T) {
	missingErr := missing("qemu-system-x86_64 not found")
	other := errors.New("vmtest: depmod: exit status 1")
	for _, tt := range []struct {
		mode     string
		err      error
		wantSkip bool
	}{
		{"1", missingErr, true},
		{"require", missingErr, false},
		{"1", other, false}, // a broken harness is never a skip
		{"require", other, false},
	} {
		t.Setenv("LUNBRIDGE_INTEGRATION", tt.mode)
		r := gate(func(tb testing.TB) { missingAsset(tb, tt.err) })
		if skipped := r.skipped != ""; skipped != tt.wantSkip || (r.failed != "") == tt.wantSkip {
			t.Errorf("mode %q, %v: skipped %q, failed %q; want skip %v", tt.mode, tt.err, r.skipped, r.failed, tt.wantSkip)
		}
	}
}
