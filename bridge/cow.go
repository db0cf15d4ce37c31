// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// cowChunk is the unit of copy-before-write: the background copier copies
// one chunk at a time, and the first write to a chunk not yet copied
// copies the whole chunk first. 1 MiB is the LUN's largest transfer, so a
// write touches at most two chunks, and it amortizes a copy's overhead.
const cowChunk = 1 << 20

// errCowCancelled ends a copy that was deleted or whose LUN closed.
var errCowCancelled = errors.New("snapshot copy cancelled")

// cowSource and cowDest are the files a cowCopy copies between: the
// backing file and the snapshot file. Tests give it byte slices.
type (
	cowSource = io.ReaderAt
	cowDest   = io.WriterAt
)

// chunkState is where one chunk of a copy stands.
type chunkState uint8

const (
	chunkPending chunkState = iota // old bytes not yet in the snapshot
	chunkCopying                   // being copied: writers to it wait
	chunkDone                      // in the snapshot: writes may proceed
)

// cowCopy copies the first size bytes of src to dst, chunk by chunk, with
// copy-before-write: before a range of src is changed, before copies the
// chunks of the range that are not yet in dst, so dst ends up holding src
// as it was when the copy was created, however writes and copy steps
// interleave. A chunk is copied exactly once: a writer that finds its
// chunk being copied (by the copier or another writer) waits for it.
//
// A failed chunk copy fails the whole copy: from then on before does
// nothing and writes to src go ahead, since the LUN must never fail
// because of its snapshot. Err reports the failure.
type cowCopy struct {
	src   cowSource
	dst   cowDest
	size  int64
	chunk int64

	copied atomic.Int64 // bytes of src copied (holes and zeros included)

	// mu guards the chunk states and the failure; cond wakes writers
	// waiting for a chunk being copied.
	mu    sync.Mutex
	cond  sync.Cond
	state []chunkState // protected by mu
	done  int          // protected by mu: chunks in chunkDone
	busy  int          // protected by mu: chunks in chunkCopying
	next  int          // protected by mu: where step looks first
	err   error        // protected by mu: the first failure

	bufPool sync.Pool // *[]byte of chunk bytes
}

// newCowCopy returns a copy of src's first size bytes to dst in chunks
// of chunk bytes. dst must read as zeros where nothing is written: a
// chunk of zeros is not written (the snapshot stays sparse).
func newCowCopy(src cowSource, dst cowDest, size, chunk int64) *cowCopy {
	n := int((size + chunk - 1) / chunk)
	c := &cowCopy{src: src, dst: dst, size: size, chunk: chunk, state: make([]chunkState, n)}
	c.cond.L = &c.mu
	c.bufPool.New = func() any { b := make([]byte, chunk); return &b }
	return c
}

// before copies the chunks of [off, off+n) that are not in the snapshot
// yet, waiting for those another goroutine is copying. Call it before
// changing that range of src, and change it only after before returned.
func (c *cowCopy) before(off, n int64) {
	if n <= 0 || off >= c.size {
		return
	}
	end := min(off+n, c.size)
	for i := int(off / c.chunk); int64(i)*c.chunk < end; i++ {
		c.ensure(i)
	}
}

// step copies the next chunk nobody has copied and reports whether any
// chunk may be left pending. When none is, it first waits for the chunks
// writers are still copying: after step returned false the copy is
// complete or failed.
func (c *cowCopy) step() bool {
	c.mu.Lock()
	for c.next < len(c.state) && c.state[c.next] != chunkPending {
		c.next++
	}
	i := c.next
	if c.err == nil && i >= len(c.state) {
		for c.err == nil && c.done < len(c.state) {
			c.cond.Wait()
		}
	}
	if c.err != nil || i >= len(c.state) {
		c.mu.Unlock()
		return false
	}
	c.mu.Unlock()
	c.ensure(i)
	return true
}

// ensure returns once chunk i is in the snapshot or the copy has failed.
func (c *cowCopy) ensure(i int) {
	c.mu.Lock()
	for c.err == nil && c.state[i] == chunkCopying {
		c.cond.Wait()
	}
	if c.err != nil || c.state[i] == chunkDone {
		c.mu.Unlock()
		return
	}
	c.state[i] = chunkCopying
	c.busy++
	c.mu.Unlock()

	err := c.copyChunk(i)

	c.mu.Lock()
	c.busy--
	if err != nil {
		c.failLocked(err)
	} else {
		c.state[i] = chunkDone
		c.done++
	}
	c.mu.Unlock()
	c.cond.Broadcast()
}

// copyChunk copies chunk i from src to dst, skipping a chunk of zeros.
func (c *cowCopy) copyChunk(i int) error {
	off := int64(i) * c.chunk
	n := min(c.chunk, c.size-off)
	bp := c.bufPool.Get().(*[]byte)
	defer c.bufPool.Put(bp)
	b := (*bp)[:n]
	r, err := c.src.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the backing file at %d: %w", off+int64(r), err)
	}
	// Past the end of src (it cannot shrink under a LUN, but a reader
	// may say EOF early) the LUN reads zeros: so does dst.
	clear(b[r:])
	if !isZero(b) {
		if _, err := c.dst.WriteAt(b, off); err != nil {
			return fmt.Errorf("write the snapshot at %d: %w", off, err)
		}
	}
	c.copied.Add(n)
	return nil
}

// isZero reports whether b holds only zeros.
func isZero(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), len(zeroes))
		if !bytes.Equal(b[:k], zeroes[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}

// fail ends the copy with err (the first failure wins): writers waiting
// for a chunk and all later ones go ahead without copying.
func (c *cowCopy) fail(err error) {
	c.mu.Lock()
	c.failLocked(err)
	c.mu.Unlock()
	c.cond.Broadcast()
}

// Preconditions: c.mu is held.
func (c *cowCopy) failLocked(err error) {
	if c.err == nil {
		c.err = err
	}
}

// idle waits until no chunk copy is in progress. After a failure no new
// one starts, so then nothing writes to dst any more.
func (c *cowCopy) idle() {
	c.mu.Lock()
	for c.busy > 0 {
		c.cond.Wait()
	}
	c.mu.Unlock()
}

// Err returns why the copy failed, or nil.
func (c *cowCopy) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// complete reports whether every chunk is in the snapshot.
func (c *cowCopy) complete() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && c.done == len(c.state)
}
