// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestVectoredRaw: the raw system calls (memory-backed files, nowait
// reads) move the same bytes as the ordinary ones, across several buffers
// of odd sizes and more buffers than the stack array holds, and report a
// read past the end the same way.
func TestVectoredRaw(t *testing.T) {
	for _, raw := range []bool{false, true} {
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
		n, err := vectored(fd, bufs, 4096, true, 0, raw)
		if err != nil || n != len(want) {
			t.Fatalf("raw %v: write = %d, %v; want %d", raw, n, err, len(want))
		}
		back := make([][]byte, len(bufs))
		for i, b := range bufs {
			back[i] = make([]byte, len(b))
		}
		if n, err := vectored(fd, back, 4096, false, 0, raw); err != nil || n != len(want) {
			t.Fatalf("raw %v: read = %d, %v", raw, n, err)
		}
		if got := bytes.Join(back, nil); !bytes.Equal(got, want) {
			t.Fatalf("raw %v: read back other bytes", raw)
		}
		if _, err := vectored(fd, [][]byte{make([]byte, 10)}, 4096+int64(len(want))-5, false, 0, raw); err == nil {
			t.Errorf("raw %v: a read past the end succeeded", raw)
		}
		if n, err := vectored(fd, [][]byte{make([]byte, 8)}, 4096, false, unix.RWF_NOWAIT, raw); err != nil && err != unix.EAGAIN && err != unix.EOPNOTSUPP {
			t.Errorf("raw %v: nowait read = %d, %v", raw, n, err)
		}
	}
}
