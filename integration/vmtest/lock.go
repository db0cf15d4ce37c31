// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// flockCtx takes flock(how) on f, polling with LOCK_NB so that ctx can end
// the wait (a blocking flock(2) cannot be interrupted).
func flockCtx(ctx context.Context, f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// vmSlots is how many guests may run at once on this machine, across test
// processes: $LUNBRIDGE_VM_SLOTS, default 1. A TCG guest with -smp 2 keeps two
// host cores busy; two of them on a 2-core machine only make each one slower
// and push scripts toward their timeouts.
func vmSlots() int {
	if n, err := strconv.Atoi(os.Getenv("LUNBRIDGE_VM_SLOTS")); err == nil && n > 0 {
		return n
	}
	return 1
}

// acquireSlot blocks until one of the machine-wide VM slots is free, and
// returns its release func. The slots are lock files in the temporary
// directory rather than the cache, so runs with different LUNBRIDGE_CACHE
// settings still share them.
func acquireSlot(ctx context.Context) (func(), error) {
	dir := filepath.Join(os.TempDir(), "lunbridge-vmtest-slots-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("vmtest: slots: %w", err)
	}
	n := vmSlots()
	var files []*os.File
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i := range n {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(i)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("vmtest: slots: %w", err)
		}
		files = append(files, f)
	}
	for {
		for i, f := range files {
			err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				files[i] = nil // keep this one open: it holds the lock
				return func() { f.Close() }, nil
			}
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("vmtest: slots: flock: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("vmtest: waiting for a VM slot: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
