// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/internal/uring"
)

// TestVectoredRaw: the raw system calls (memory-backed files, nowait
// reads) and the io_uring ring (buffered writes on page-cache file
// systems) move the same bytes as the ordinary system calls, across
// several buffers of odd sizes and more buffers than the stack array
// holds, and report a read past the end the same way.
func TestVectoredRaw(t *testing.T) {
	type mode struct {
		raw  bool
		ring *uring.Ring
	}
	modes := []mode{{raw: false}, {raw: true}}
	if ring, err := uring.New(4); err != nil {
		t.Logf("no io_uring here (%v): the ring's case is not run", err)
	} else {
		defer ring.Close()
		modes = append(modes, mode{ring: ring})
	}
	for _, m := range modes {
		raw, ring := m.raw, m.ring
		f, err := os.Create(filepath.Join(t.TempDir(), "f"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fd := int(f.Fd())
		var bufs [][]byte
		var want []byte
		for i := range stackIovecs + 5 {
			b := bytes.Repeat([]byte{byte(i)}, 1+i*7%509)
			bufs = append(bufs, b)
			want = append(want, b...)
		}
		n, err := vectored(fd, bufs, 4096, true, 0, raw, ring)
		if err != nil || n != len(want) {
			t.Fatalf("%+v: write = %d, %v; want %d", m, n, err, len(want))
		}
		back := make([][]byte, len(bufs))
		for i, b := range bufs {
			back[i] = make([]byte, len(b))
		}
		if n, err := vectored(fd, back, 4096, false, 0, raw, ring); err != nil || n != len(want) {
			t.Fatalf("%+v: read = %d, %v", m, n, err)
		}
		if got := bytes.Join(back, nil); !bytes.Equal(got, want) {
			t.Fatalf("%+v: read back other bytes", m)
		}
		if _, err := vectored(fd, [][]byte{make([]byte, 10)}, 4096+int64(len(want))-5, false, 0, raw, ring); err == nil {
			t.Errorf("%+v: a read past the end succeeded", m)
		}
		if n, err := vectored(fd, [][]byte{make([]byte, 8)}, 4096, false, unix.RWF_NOWAIT, raw, ring); err != nil && err != unix.EAGAIN && err != unix.EOPNOTSUPP {
			t.Errorf("%+v: nowait read = %d, %v", m, n, err)
		}
	}
}
