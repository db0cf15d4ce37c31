// SPDX-License-Identifier: Apache-2.0

// Package memdisk is an in-memory scsi.Backend for tests: a byte slice
// with a per-granule allocation map, call counters and error injection.
package memdisk

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Disk is an in-memory backing store. Unmapped granules read as zeros.
// Its methods are safe for concurrent use.
type Disk struct {
	gran int64

	mu sync.Mutex
	// data and mapped are protected by mu.
	data   []byte
	mapped []bool
	// ReadErr and WriteErr, when set, are returned by the next and
	// every later read or write; protected by mu.
	readErr, writeErr error

	// Syncs counts Sync calls; Unmaps counts Unmap calls.
	Syncs, Unmaps, Zeroes atomic.Int64
}

// New returns a zero-filled, fully unmapped disk of size bytes whose
// allocation unit is gran bytes (size must be a multiple of gran).
func New(size, gran int64) *Disk {
	if gran <= 0 || size%gran != 0 {
		panic(fmt.Sprintf("memdisk: size %d is not a multiple of granule %d", size, gran))
	}
	return &Disk{gran: gran, data: make([]byte, size), mapped: make([]bool, size/gran)}
}

// FailReads makes later reads fail with err (nil: succeed).
func (d *Disk) FailReads(err error) { d.mu.Lock(); d.readErr = err; d.mu.Unlock() }

// FailWrites makes later writes, unmaps and syncs fail with err.
func (d *Disk) FailWrites(err error) { d.mu.Lock(); d.writeErr = err; d.mu.Unlock() }

// Bytes returns a copy of the contents.
func (d *Disk) Bytes() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.data...)
}

// IsMapped reports whether the granule holding byte off is mapped.
func (d *Disk) IsMapped(off int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mapped[off/d.gran]
}

func (d *Disk) check(off, n int64) error {
	if off < 0 || n < 0 || off+n > int64(len(d.data)) {
		return fmt.Errorf("memdisk: [%d, +%d) outside %d bytes", off, n, len(d.data))
	}
	return nil
}

func total(bufs [][]byte) int64 {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	return n
}

// ReadAt implements scsi.Backend.
func (d *Disk) ReadAt(bufs [][]byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.readErr != nil {
		return 0, d.readErr
	}
	if err := d.check(off, total(bufs)); err != nil {
		return 0, err
	}
	n := 0
	for _, b := range bufs {
		n += copy(b, d.data[off+int64(n):])
	}
	return n, nil
}

// WriteAt implements scsi.Backend.
func (d *Disk) WriteAt(bufs [][]byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writeErr != nil {
		return 0, d.writeErr
	}
	t := total(bufs)
	if err := d.check(off, t); err != nil {
		return 0, err
	}
	n := 0
	for _, b := range bufs {
		n += copy(d.data[off+int64(n):], b)
	}
	d.setMapped(off, t, true)
	return n, nil
}

// setMapped marks the granules that [off, off+n) touches (mapped) or
// covers entirely (unmapped).
func (d *Disk) setMapped(off, n int64, m bool) {
	if n == 0 {
		return
	}
	first, last := off/d.gran, (off+n-1)/d.gran
	if !m {
		first, last = (off+d.gran-1)/d.gran, (off+n)/d.gran-1
	}
	for g := first; g <= last; g++ {
		d.mapped[g] = m
	}
}

// Sync implements scsi.Backend.
func (d *Disk) Sync(off, n int64) error {
	d.Syncs.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writeErr != nil {
		return d.writeErr
	}
	return d.check(off, n)
}

// Unmap implements scsi.Backend: the range reads as zeros and the granules
// it covers entirely become unmapped.
func (d *Disk) Unmap(off, n int64) error {
	d.Unmaps.Add(1)
	return d.zero(off, n, false)
}

// WriteZeroes implements scsi.Zeroer.
func (d *Disk) WriteZeroes(off, n int64) error {
	d.Zeroes.Add(1)
	return d.zero(off, n, true)
}

// zero clears [off, off+n) and marks the granules it covers mapped or
// not, failing like a write would.
func (d *Disk) zero(off, n int64, mapped bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writeErr != nil {
		return d.writeErr
	}
	if err := d.check(off, n); err != nil {
		return err
	}
	clear(d.data[off : off+n])
	d.setMapped(off, n, mapped)
	return nil
}

// Mapped implements scsi.Backend: the state of the granule at off and the
// length of the run of granules in the same state, from off.
func (d *Disk) Mapped(off int64) (bool, int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(off, 1); err != nil {
		return false, 0, err
	}
	g := off / d.gran
	m := d.mapped[g]
	end := g + 1
	for end < int64(len(d.mapped)) && d.mapped[end] == m {
		end++
	}
	return m, end*d.gran - off, nil
}
