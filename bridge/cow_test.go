// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// memFile is a file in memory for cowCopy: ReadAt and WriteAt under a
// lock, counting the reads of each chunk and failing writes on demand.
type memFile struct {
	mu       sync.Mutex
	b        []byte
	chunk    int64
	reads    map[int64]int // protected by mu: ReadAt calls per chunk
	failFrom int           // protected by mu: WriteAt fails from this call on (0: never)
	writes   int           // protected by mu
}

func newMemFile(b []byte, chunk int64) *memFile {
	return &memFile{b: b, chunk: chunk, reads: map[int64]int{}}
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads[off/m.chunk]++
	return copy(p, m.b[off:]), nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if m.failFrom > 0 && m.writes >= m.failFrom {
		return 0, errors.New("no space left (fake)")
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.b)
}

// write changes src the way a LUN write does: before, then the write.
func cowWrite(c *cowCopy, src *memFile, off int64, p []byte) {
	c.before(off, int64(len(p)))
	src.WriteAt(p, off)
}

// checkCow finishes c and checks the snapshot against the image taken
// when it was created, and that every chunk was read exactly once.
func checkCow(t *testing.T, c *cowCopy, src, dst *memFile, image []byte) {
	t.Helper()
	for c.step() {
	}
	if !c.complete() || c.Err() != nil {
		t.Fatalf("copy not complete: err %v", c.Err())
	}
	if got := dst.bytes(); !bytes.Equal(got, image) {
		t.Fatalf("snapshot differs from the image at the snapshot point:\n got %x\nwant %x", got, image)
	}
	if got := c.copied.Load(); got != int64(len(image)) {
		t.Errorf("copied = %d, want %d", got, len(image))
	}
	for i := range c.state {
		if n := src.reads[int64(i)]; n != 1 {
			t.Errorf("chunk %d read %d times, want 1", i, n)
		}
	}
}

// FuzzCow runs random interleavings of writes (any offset and length,
// across chunk boundaries and past the snapshot's end) and copy steps
// against the model: the snapshot must equal the image at the snapshot
// point, whatever the order.
func FuzzCow(f *testing.F) {
	f.Add([]byte{0, 3, 5, 1, 1, 0, 200, 9, 2}, uint8(61))
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1}, uint8(64))
	f.Add([]byte{0, 0, 64, 7, 0, 63, 2, 8}, uint8(1))
	f.Fuzz(func(t *testing.T, ops []byte, sizeB uint8) {
		const chunk = 8
		size := int64(sizeB%80) + 1
		image := make([]byte, size+16) // the file may be longer than the snapshot
		for i := range image {
			if i%3 != 0 { // zero bytes too: zero chunks are skipped
				image[i] = byte(i)
			}
		}
		src := newMemFile(bytes.Clone(image), chunk)
		dst := newMemFile(make([]byte, size), chunk)
		c := newCowCopy(src, dst, size, chunk)
		for len(ops) >= 3 {
			op, a, b := ops[0], ops[1], ops[2]
			ops = ops[3:]
			if op%2 == 0 {
				c.step()
				continue
			}
			off := int64(a) % int64(len(image))
			n := min(int64(b%24)+1, int64(len(image))-off)
			cowWrite(c, src, off, bytes.Repeat([]byte{op | 0x80}, int(n)))
		}
		checkCow(t, c, src, dst, image[:size])
	})
}

// TestCowConcurrent races writers against the copier (run with -race):
// the snapshot still equals the image at the snapshot point.
func TestCowConcurrent(t *testing.T) {
	const chunk, size = 4096, 64 * 4096
	for seed := range uint64(8) {
		image := make([]byte, size)
		r := rand.New(rand.NewPCG(seed, 1))
		for i := range image {
			image[i] = byte(r.UintN(256))
		}
		src := newMemFile(bytes.Clone(image), chunk)
		dst := newMemFile(make([]byte, size), chunk)
		c := newCowCopy(src, dst, size, chunk)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(seed, uint64(w)+2))
				for range 200 {
					off := int64(r.UintN(size - 512))
					n := int64(r.UintN(512) + 1)
					cowWrite(c, src, off, bytes.Repeat([]byte{byte(w)}, int(n)))
				}
			})
		}
		wg.Go(func() {
			for c.step() {
			}
			// The copier's end is the snapshot's: no chunk may still
			// be in a writer's hands.
			if !c.complete() {
				t.Error("step returned false before the copy was complete")
			}
		})
		wg.Wait()
		checkCow(t, c, src, dst, image)
	}
}

// TestCowFailure: a snapshot write that fails ends the copy with the
// reason, and writes to the LUN neither block nor fail afterwards.
func TestCowFailure(t *testing.T) {
	const chunk, size = 16, 10 * 16
	image := bytes.Repeat([]byte{1}, size)
	src := newMemFile(bytes.Clone(image), chunk)
	dst := newMemFile(make([]byte, size), chunk)
	dst.failFrom = 3
	c := newCowCopy(src, dst, size, chunk)
	for c.step() {
	}
	if c.Err() == nil || c.complete() {
		t.Fatalf("Err() = nil after a failed snapshot write, complete %v", c.complete())
	}
	cowWrite(c, src, 0, bytes.Repeat([]byte{2}, size))
	if got := src.bytes(); !bytes.Equal(got, bytes.Repeat([]byte{2}, size)) {
		t.Fatalf("the LUN's write did not land after the snapshot failed: %x", got)
	}
	c.fail(errCowCancelled)
	c.idle()
	if errors.Is(c.Err(), errCowCancelled) {
		t.Fatalf("Err() = %v: a later failure replaced the first one", c.Err())
	}
}

// slowFile is a memFile whose writes wait for release: a chunk copy can
// be held in progress.
type slowFile struct {
	*memFile
	started chan struct{}
	release chan struct{}
}

func (s *slowFile) WriteAt(p []byte, off int64) (int, error) {
	s.started <- struct{}{}
	<-s.release
	return s.memFile.WriteAt(p, off)
}

// TestCowIdle: after a failure, idle waits for a chunk copy a writer had
// in progress, so the snapshot file is not written after it is given up.
func TestCowIdle(t *testing.T) {
	const chunk, size = 16, 4 * 16
	src := newMemFile(bytes.Repeat([]byte{1}, size), chunk)
	dst := &slowFile{memFile: newMemFile(make([]byte, size), chunk), started: make(chan struct{}), release: make(chan struct{})}
	c := newCowCopy(src, dst, size, chunk)
	wrote := make(chan struct{})
	go func() {
		c.before(0, 1)
		close(wrote)
	}()
	<-dst.started
	c.fail(errCowCancelled)
	idle := make(chan struct{})
	go func() {
		c.idle()
		close(idle)
	}()
	select {
	case <-idle:
		t.Fatal("idle returned while a chunk copy was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(dst.release)
	<-idle
	<-wrote
}
