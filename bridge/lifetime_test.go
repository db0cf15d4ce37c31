// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/internal/fakering"
	"github.com/lunbridge/lunbridge/tcmu"
)

// mmapKernel attaches LUNs to fake rings in real anonymous mappings; a
// device's Remove unmaps its ring, as tcmu.Device.Remove does.
type mmapKernel struct {
	t    *testing.T
	mu   sync.Mutex
	devs []*mmapDevice // protected by mu
}

func (m *mmapKernel) Attach(ctx context.Context, l *LUN, spec ExportSpec) (Device, error) {
	const cmdr, data = 64 << 10, 1 << 20
	mem, err := unix.Mmap(-1, 0, 128+cmdr+data+4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	k, err := fakering.NewKernel(fakering.Options{CmdrSize: cmdr, DataSize: data, Mem: mem[:128+cmdr+data]})
	if err != nil {
		return nil, err
	}
	ring, err := tcmu.NewRing(k.Mem(), k.Notifier(), tcmu.RingOptions{DrainTimeout: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	d := &mmapDevice{fakeDevice: fakeDevice{k: k, ring: ring}, mem: mem, removed: make(chan struct{})}
	m.mu.Lock()
	m.devs = append(m.devs, d)
	m.mu.Unlock()
	return d, nil
}

type mmapDevice struct {
	fakeDevice
	mem     []byte
	removed chan struct{}
}

func (d *mmapDevice) Remove() error {
	close(d.removed)
	return errors.Join(d.k.Err(), unix.Munmap(d.mem))
}

// TestStuckWorkerLifetime: when Serve gives up on a worker blocked in a
// hung backing store, the daemon's removal of the LUN returns, but the
// ring mapping (a real mmap here) and the backing file stay until the
// worker returns; the worker's read then lands in mapped memory (no EFAULT,
// no fault), and both are released after it.
func TestStuckWorkerLifetime(t *testing.T) {
	const size = 1 << 20
	ffs := newFaultFS(t, size)
	mnt := mountFUSE(t, ffs)
	release := ffs.stallAt(64 * 512)
	t.Cleanup(release)

	mk := &mmapKernel{t: t}
	d := NewDaemon(DaemonOptions{Kernel: mk})
	t.Cleanup(func() { d.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.Add(ctx, Options{Name: "hung", Path: filepath.Join(mnt, "disk.img"), Workers: 1}, ExportSpec{}); err != nil {
		t.Fatal(err)
	}
	l, err := d.LUN("hung")
	if err != nil {
		t.Fatal(err)
	}
	l.workerGrace = 100 * time.Millisecond
	l.stalledAfter = 50 * time.Millisecond
	dev := mk.devs[0]
	if _, err := dev.k.Submit(ctx, read10(64, 8), nil, 4096); err != nil {
		t.Fatal(err)
	}
	for l.Info().State != StateStalled {
		if ctx.Err() != nil {
			t.Fatal("the LUN never reported itself stalled")
		}
		time.Sleep(10 * time.Millisecond)
	}

	start := time.Now()
	if err := d.Remove(ctx, "hung"); err != nil && !errors.Is(err, tcmu.ErrDrainTimeout) {
		t.Errorf("Remove with a stuck worker = %v", err)
	}
	t.Logf("Remove returned after %v with the worker stuck", time.Since(start))
	select {
	case <-dev.removed:
		t.Fatal("the ring was unmapped while a worker was still blocked with its buffers")
	default:
	}
	if _, err := l.be.f.Stat(); err != nil {
		t.Fatalf("backing file closed while a worker was still blocked on it: %v", err)
	}
	if !l.WorkersStuck() {
		t.Error("WorkersStuck() = false with the worker blocked")
	}

	readErrs := l.Stats().Kinds[KindRead].Errors
	release()
	select {
	case <-dev.removed:
	case <-ctx.Done():
		t.Fatal("the device was not removed after the stuck worker returned")
	}
	// The release runs after the worker's command ended: its read landed
	// in the still-mapped ring without an error.
	if got := l.Stats().Kinds[KindRead].Errors; got != readErrs {
		t.Errorf("read errors went from %d to %d: the worker's read hit released memory", readErrs, got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := l.be.f.Stat()
		if errors.Is(err, os.ErrClosed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backing file still open after the stuck worker returned: Stat = %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l.WorkersStuck() {
		t.Error("WorkersStuck() = true after the worker returned")
	}
}
