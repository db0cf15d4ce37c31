// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/internal/uring"
	"github.com/lunbridge/lunbridge/scsi"
)

// openNowaitLUN opens a LUN on a 1 MiB file of a pattern in dir.
func openNowaitLUN(t *testing.T, dir string, o Options) (*LUN, []byte) {
	t.Helper()
	path := filepath.Join(dir, "nowait.img")
	want := pattern(1<<20, 5)
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	o.Name, o.Path = "nowait", path
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, want
}

// pageCacheFS skips the test unless dir is on a page-cache file system
// (fsPageCache), naming the one it is on.
func pageCacheFS(tb testing.TB, dir string) {
	tb.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		tb.Fatal(err)
	}
	if fsKindOf(st.Type) != fsPageCache {
		tb.Skipf("%s is on file system type %#x, not a page-cache one (ext4, XFS, Btrfs)", dir, st.Type)
	}
}

// TestReadAtNowait reads a file just written (in the page cache) with
// RWF_NOWAIT, then evicts it (fsync, POSIX_FADV_DONTNEED) and checks that
// a nowait read of a page mincore reports gone would block, and that the
// worker's ReadAt still reads it.
func TestReadAtNowait(t *testing.T) {
	dir := t.TempDir()
	pageCacheFS(t, dir)
	l, want := openNowaitLUN(t, dir, Options{})
	be := l.be
	// The preadv2 path: without the file's mapping (which also keeps
	// POSIX_FADV_DONTNEED from dropping the pages it maps).
	if err := be.mm.close(); err != nil {
		t.Fatal(err)
	}
	be.cached = false
	// Two buffers, one of them unaligned, across pages.
	bufs := [][]byte{make([]byte, 1536), make([]byte, 6656)}
	const off = 4096 + 512
	n, err := be.ReadAtNowait(bufs, off)
	if err != nil || n != 8192 {
		t.Fatalf("ReadAtNowait of a cached range = %d, %v; want 8192, nil", n, err)
	}
	if got := append(bufs[0], bufs[1]...); !bytes.Equal(got, want[off:off+8192]) {
		t.Fatal("ReadAtNowait read the wrong data")
	}

	if err := be.f.Sync(); err != nil {
		t.Fatal(err)
	}
	buf := [][]byte{make([]byte, 4096)}
	const far = 512 << 10
	// The host's page cache is shared with everything else running: a
	// page evicted can be read back in (readahead of another reader)
	// before the read below. Three rounds; a miss in one is enough, and
	// a kernel that ignored RWF_NOWAIT would read the page in all three.
	for round := 1; ; round++ {
		if err := unix.Fadvise(be.fd, 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
		if k := resident(t, be.f, 1<<20); k != 0 {
			t.Skipf("POSIX_FADV_DONTNEED left %d of 256 pages cached: cannot test a miss here", k)
		}
		n, err = be.ReadAtNowait(buf, far)
		if errors.Is(err, scsi.ErrWouldBlock) {
			break
		}
		if round == 3 {
			t.Fatalf("ReadAtNowait of an evicted page = %d, %v in three rounds; want scsi.ErrWouldBlock", n, err)
		}
		t.Logf("round %d: ReadAtNowait of an evicted page = %d, %v (read back in meanwhile?)", round, n, err)
	}
	if be.noNowait.Load() {
		t.Error("a miss turned RWF_NOWAIT off")
	}
	if n, err := be.ReadAt(buf, far); err != nil || n != 4096 || !bytes.Equal(buf[0], want[far:far+4096]) {
		t.Fatalf("ReadAt after the miss = %d, %v (data equal: %v)", n, err, bytes.Equal(buf[0], want[far:far+4096]))
	}
	// Now cached again.
	if _, err := be.ReadAtNowait(buf, far); err != nil {
		t.Errorf("ReadAtNowait after ReadAt cached the page: %v", err)
	}
}

// TestReadAtNowaitPastEnd: a read past the end of the file is short, which
// a nowait read leaves to the worker.
func TestReadAtNowaitPastEnd(t *testing.T) {
	dir := t.TempDir()
	pageCacheFS(t, dir)
	l, _ := openNowaitLUN(t, dir, Options{})
	buf := [][]byte{make([]byte, 8192)}
	// preadv2 reads the page before the end; the mapping checks first
	// and reads nothing.
	want := 4096
	if l.be.cached {
		want = 0
	}
	if n, err := l.be.ReadAtNowait(buf, 1<<20-4096); !errors.Is(err, scsi.ErrWouldBlock) || n != want {
		t.Errorf("ReadAtNowait across the end of the file = %d, %v; want %d, scsi.ErrWouldBlock", n, err, want)
	}
}

// TestReadAtNowaitMapped: on a page-cache file system the file is mapped
// for reading, and ReadAtNowait copies from the mapping what mincore finds
// cached; a range that is not (a hole never read) would block, and is in
// the cache once ReadAt has read it. A gateway LUN is never mapped: its
// cache drop at a takeover must be able to drop every page.
func TestReadAtNowaitMapped(t *testing.T) {
	dir := t.TempDir()
	pageCacheFS(t, dir)
	l, want := openNowaitLUN(t, dir, Options{Size: 2 << 20})
	be := l.be
	if !be.cached || be.mm.data == nil || be.mm.writable {
		t.Fatalf("cached %v, mapped %v, writable %v: want a read-only mapping", be.cached, be.mm.data != nil, be.mm.writable)
	}
	bufs := [][]byte{make([]byte, 1536), make([]byte, 6656)}
	const off = 4096 + 512
	if n, err := be.ReadAtNowait(bufs, off); err != nil || n != 8192 {
		t.Fatalf("ReadAtNowait of a cached range = %d, %v; want 8192, nil", n, err)
	}
	if got := append(bufs[0], bufs[1]...); !bytes.Equal(got, want[off:off+8192]) {
		t.Fatal("ReadAtNowait read the wrong data")
	}
	// [1 MiB, 2 MiB) is the hole Open's grow left: nothing cached.
	buf := [][]byte{make([]byte, 4096)}
	const hole = 3 << 19
	if n, err := be.ReadAtNowait(buf, hole); !errors.Is(err, scsi.ErrWouldBlock) {
		t.Fatalf("ReadAtNowait of a hole never read = %d, %v; want scsi.ErrWouldBlock", n, err)
	}
	buf[0][0] = 1
	if n, err := be.ReadAt(buf, hole); err != nil || n != 4096 || !bytes.Equal(buf[0], make([]byte, 4096)) {
		t.Fatalf("ReadAt of the hole = %d, %v", n, err)
	}
	buf[0][0] = 1
	if n, err := be.ReadAtNowait(buf, hole); err != nil || n != 4096 || buf[0][0] != 0 {
		t.Errorf("ReadAtNowait of the hole once read = %d, %v", n, err)
	}
	if f := be.mm.faults.Load(); f != 0 {
		t.Errorf("%d faults", f)
	}

	g, _ := openGatewayLUN(t, &fakeGateway{})
	if g.be.cached || g.be.mm.data != nil {
		t.Error("a gateway LUN on a page-cache file system is mapped")
	}
}

// TestReadAtNowaitRefused: a file system that refuses RWF_NOWAIT turns
// it off for the backend. tmpfs does on Linux 6.1 (measured in the test VM); newer
// kernels accept it, and then there is nothing to test here.
func TestReadAtNowaitRefused(t *testing.T) {
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		t.Skip("no /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "lunbridge-nowait-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, _ := openNowaitLUN(t, dir, Options{})
	buf := [][]byte{make([]byte, 4096)}
	_, raw := vectored(l.be.fd, buf, 0, false, unix.RWF_NOWAIT, true, nil)
	if !errors.Is(raw, unix.EOPNOTSUPP) {
		t.Skipf("preadv2(RWF_NOWAIT) on tmpfs: %v, not EOPNOTSUPP, on this kernel", raw)
	}
	if _, err := l.be.ReadAtNowait(buf, 0); !errors.Is(err, scsi.ErrWouldBlock) {
		t.Fatalf("ReadAtNowait on tmpfs = %v, want scsi.ErrWouldBlock", err)
	}
	if !l.be.noNowait.Load() {
		t.Error("EOPNOTSUPP did not turn RWF_NOWAIT off")
	}
}

// TestReadAtNowaitDirect: with direct I/O reads wait on the device, so
// ReadAtNowait never reads.
func TestReadAtNowaitDirect(t *testing.T) {
	dir := t.TempDir()
	pageCacheFS(t, dir)
	l, _ := openNowaitLUN(t, dir, Options{DirectIO: true})
	if l.be.direct == nil {
		t.Skip("the file system refused O_DIRECT")
	}
	if _, err := l.be.ReadAtNowait([][]byte{make([]byte, 4096)}, 0); !errors.Is(err, scsi.ErrWouldBlock) {
		t.Errorf("ReadAtNowait with direct I/O = %v, want scsi.ErrWouldBlock", err)
	}
}

// TestSerialWrites checks that buffered writes to a file on a page-cache
// file system run one at a time (fileBackend.writeTurn): a WriteAt waits
// while another holds the lock, then writes its bytes. Direct I/O writes
// and writes to a memory-backed file are not serialised.
func TestSerialWrites(t *testing.T) {
	dir := t.TempDir()
	pageCacheFS(t, dir)
	l, _ := openNowaitLUN(t, dir, Options{})
	be := l.be
	if be.writeTurn == nil {
		t.Fatal("buffered writes to a file on a page-cache file system are not serialised")
	}
	data := pattern(8192, 9)
	be.writeTurn <- struct{}{} // another write's turn
	done := make(chan error, 1)
	go func() {
		_, err := be.WriteAt([][]byte{data[:4096], data[4096:]}, 4096)
		done <- err
	}()
	select {
	case err := <-done:
		<-be.writeTurn
		t.Fatalf("WriteAt returned (%v) while another write held the file's write lock", err)
	case <-time.After(50 * time.Millisecond):
	}
	<-be.writeTurn
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := be.f.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("the serialised write did not write its bytes")
	}

	ld, _ := openNowaitLUN(t, t.TempDir(), Options{DirectIO: true})
	if ld.be.writeTurn != nil {
		t.Error("writes with --direct-io are serialised")
	}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "lunbridge-serial-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		lm, _ := openNowaitLUN(t, d, Options{})
		if lm.be.writeTurn != nil {
			t.Error("writes to a memory-backed file are serialised")
		}
	}
}

// patternAt is the byte the pattern backends hold at offset off.
func patternAt(off int64) byte { return byte(off*7 + off>>9) }

// nowaitBackend is a read-only backend holding patternAt, with
// ReadAtNowait; with miss set, every nowait read scribbles on the
// buffers and would block, as a page-cache miss partway does.
type nowaitBackend struct {
	nullBackend
	miss          bool
	reads, nowait *atomic.Int64 // ReadAt calls; ReadAtNowait calls that read
}

func (b nowaitBackend) fill(bufs [][]byte, off int64) int {
	n := 0
	for _, p := range bufs {
		for i := range p {
			p[i] = patternAt(off + int64(n+i))
		}
		n += len(p)
	}
	return n
}

func (b nowaitBackend) ReadAt(bufs [][]byte, off int64) (int, error) {
	b.reads.Add(1)
	return b.fill(bufs, off), nil
}

func (b nowaitBackend) ReadAtNowait(bufs [][]byte, off int64) (int, error) {
	if b.miss {
		for _, p := range bufs {
			clear(p[:len(p)/2])
		}
		return 0, scsi.ErrWouldBlock
	}
	b.nowait.Add(1)
	return b.fill(bufs, off), nil
}

// TestServeNowaitReads serves READs in the nowait mode over the fake ring,
// one at a time so that the UIO waiter takes them: hits complete inline
// (no worker ReadAt), misses complete through a worker with the right
// data, and the stats count every command once either way. WRITE never
// runs inline in this mode.
func TestServeNowaitReads(t *testing.T) {
	for _, miss := range []bool{false, true} {
		t.Run(map[bool]string{false: "hit", true: "miss"}[miss], func(t *testing.T) {
			be := nowaitBackend{miss: miss, reads: new(atomic.Int64), nowait: new(atomic.Int64)}
			l := newBackendLUN(t, 2, be)
			l.inline = inlineNowait
			s := serveFake(t, l, 8)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const n = 200
			for i := range n {
				lba := uint32(i * 9)
				resp, data, err := s.k.Do(ctx, read10(lba, 8), nil, 4096)
				if err != nil || resp.Status != statusGood {
					t.Fatalf("READ %d: %+v, %v", i, resp, err)
				}
				for j, b := range data {
					if off := int64(lba)*512 + int64(j); b != patternAt(off) {
						t.Fatalf("READ %d (miss: %v): byte %d is %#x, want %#x", i, miss, j, b, patternAt(off))
					}
				}
			}
			if resp, _, err := s.k.Do(ctx, write10(0, 8, false), make([]byte, 4096), 0); err != nil || resp.Status != statusGood {
				t.Fatalf("WRITE: %+v, %v", resp, err)
			}
			// A WRITE may block: it took a blocking slot, so the
			// ring woke another executor to wait for the kernel.
			if st := s.ring.Stats(); st.Handoffs == 0 {
				t.Errorf("a WRITE ran as a memory command in the nowait mode: %+v", st)
			}
			s.stop(t)
			st := l.Stats()
			rs := st.Kinds[KindRead]
			if rs.Ops != n || rs.Latency.Count() != n || rs.Bytes != n*4096 || rs.Errors != 0 {
				t.Errorf("read stats: %d ops, %d latencies, %d bytes, %d errors; want %d, %d, %d, 0",
					rs.Ops, rs.Latency.Count(), rs.Bytes, rs.Errors, n, n, n*4096)
			}
			if st.InFlight != 0 {
				t.Errorf("%d commands in flight after stop", st.InFlight)
			}
			hits, misses := st.NowaitReads, st.NowaitFallbacks
			if hits != uint64(be.nowait.Load()) {
				t.Errorf("NowaitReads %d, backend served %d nowait reads", hits, be.nowait.Load())
			}
			if miss {
				// Every READ the waiter tried went to a worker; the ring
				// goroutine sends the others there directly.
				if hits != 0 || misses == 0 || be.reads.Load() != n {
					t.Errorf("misses: NowaitReads %d, NowaitFallbacks %d, worker reads %d; want 0, some, %d",
						hits, misses, be.reads.Load(), n)
				}
				return
			}
			if hits == 0 || misses != 0 || hits+uint64(be.reads.Load()) != n {
				t.Errorf("hits: NowaitReads %d, NowaitFallbacks %d, worker reads %d; want some, 0, %d in all",
					hits, misses, be.reads.Load(), n)
			}
		})
	}
}

// TestInlinePolicy resolves the default inline mode for files on the
// host's file systems.
func TestInlinePolicy(t *testing.T) {
	shm := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "lunbridge-policy-"); err == nil {
			shm = d
			t.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	tmp := t.TempDir()
	for _, tc := range []struct {
		name   string
		dir    string
		o      Options
		mode   inlineMode
		on     bool
		want   inlineIO
		onlyPC bool // only where tmp is a page-cache file system
	}{
		{name: "tmpfs", dir: shm, on: true, want: ioAll},
		{name: "page cache", dir: tmp, on: true, want: ioNowaitReads, onlyPC: true},
		{name: "page cache, direct I/O", dir: tmp, o: Options{DirectIO: true}, on: true, want: ioWorkers},
		{name: "off", dir: tmp, mode: inlineOff, on: false, want: ioWorkers},
		{name: "all", dir: tmp, mode: inlineAll, on: true, want: ioAll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.dir == "" {
				t.Skip("no tmpfs at /dev/shm")
			}
			if tc.onlyPC {
				pageCacheFS(t, tc.dir)
			}
			l, _ := openNowaitLUN(t, tc.dir, tc.o)
			if tc.o.DirectIO && l.be.direct == nil {
				t.Skip("the file system refused O_DIRECT")
			}
			l.inline = tc.mode
			if on, io := l.inlinePolicy(); on != tc.on || io != tc.want {
				t.Errorf("inlinePolicy() = %v, %v; want %v, %v", on, io, tc.on, tc.want)
			}
		})
	}
}

// TestServeNowaitAllocs extends TestServeSteadyStateAllocs to READs
// served inline from the page cache: one at a time (so that the UIO
// waiter takes them), they allocate nothing once warm.
func TestServeNowaitAllocs(t *testing.T) {
	l := newCachedFileLUN(t, 4)
	l.inline = inlineNowait
	s := serveFake(t, l, 64)
	defer s.stop(t)
	cdbs := benchCmds[1].cdbs()
	ctx := context.Background()
	i := 0
	run := func() {
		for range 32 {
			if _, err := s.k.Submit(ctx, cdbs[i%len(cdbs)], nil, 4096); err != nil {
				t.Fatal(err)
			}
			i++
			for s.k.InFlight() > 0 {
				runtime.Gosched()
			}
		}
	}
	for range 20 {
		run()
	}
	perCmd := testing.AllocsPerRun(50, run) / 32
	if perCmd >= 0.1 {
		t.Errorf("%.3f allocations per inline nowait READ in steady state, want 0", perCmd)
	}
	if st := l.Stats(); st.NowaitReads == 0 {
		t.Errorf("no READ served inline (NowaitReads 0, NowaitFallbacks %d)", st.NowaitFallbacks)
	}
}

// TestFSKind classifies file system magics: only the listed local
// page-cache file systems get nowait reads, network and FUSE ones never.
func TestFSKind(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  int64
		want fsKind
	}{
		{"tmpfs", unix.TMPFS_MAGIC, fsMemory},
		{"ramfs", unix.RAMFS_MAGIC, fsMemory},
		{"ext4", unix.EXT4_SUPER_MAGIC, fsPageCache},
		{"xfs", unix.XFS_SUPER_MAGIC, fsPageCache},
		{"btrfs", unix.BTRFS_SUPER_MAGIC, fsPageCache},
		{"fuse", unix.FUSE_SUPER_MAGIC, fsOther},
		{"nfs", unix.NFS_SUPER_MAGIC, fsOther},
		{"cifs", unix.CIFS_SUPER_MAGIC, fsOther},
		{"smb2", unix.SMB2_SUPER_MAGIC, fsOther},
		{"smb", unix.SMB_SUPER_MAGIC, fsOther},
		{"ceph", unix.CEPH_SUPER_MAGIC, fsOther},
		{"9p", unix.V9FS_MAGIC, fsOther},
		{"afs", unix.AFS_SUPER_MAGIC, fsOther},
		{"overlay", unix.OVERLAYFS_SUPER_MAGIC, fsOther},
		{"f2fs", unix.F2FS_SUPER_MAGIC, fsOther},
		{"unknown", 0x12345678, fsOther},
		// statfs's f_type is signed on some architectures: a magic with
		// the top bit set may come sign-extended.
		{"cifs sign-extended", signExtended(unix.CIFS_SUPER_MAGIC), fsOther},
		{"btrfs sign-extended", signExtended(unix.BTRFS_SUPER_MAGIC), fsPageCache},
	} {
		if got := fsKindOf(tc.typ); got != tc.want {
			t.Errorf("fsKindOf(%s %#x) = %d, want %d", tc.name, tc.typ, got, tc.want)
		}
	}
}

// signExtended is magic as a signed 32-bit f_type gives it.
func signExtended(magic uint32) int64 { return int64(int32(magic)) }

// TestBackingFSNotRegular: a device node lives on devtmpfs, which
// statfs calls tmpfs; it is not a memory-backed file.
func TestBackingFSNotRegular(t *testing.T) {
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if fsKindOf(st.Type) != fsMemory {
		t.Skipf("/dev is on file system type %#x here, not tmpfs: nothing to test", st.Type)
	}
	if got := backingFS(int(f.Fd())); got != fsOther {
		t.Errorf("backingFS(/dev/null) = %d, want fsOther", got)
	}
}

// TestRingWrites checks that a LUN on a page-cache file system gets an
// io_uring where the kernel offers one, that large buffered writes go
// through it and small ones and reads do not, and that what goes through
// it lands in the file.
func TestRingWrites(t *testing.T) {
	dir := t.TempDir()
	pageCacheFS(t, dir)
	l, _ := openNowaitLUN(t, dir, Options{})
	be := l.be
	if be.ring == nil {
		r, err := uring.New(2)
		if err != nil {
			t.Skipf("no io_uring here: %v", err)
		}
		r.Close()
		t.Fatal("a LUN on a page-cache file system has no io_uring although the kernel offers one")
	}
	big := pattern(1<<20, 3)
	bufs := [][]byte{big[:4096], big[4096 : 1<<19], big[1<<19:]}
	before := be.ring.Transfers()
	if n, err := be.WriteAt(bufs, 0); err != nil || n != len(big) {
		t.Fatalf("WriteAt of 1 MiB = %d, %v", n, err)
	}
	if be.ring.Transfers() == before {
		t.Error("a 1 MiB buffered write did not go through the ring")
	}
	small := pattern(4096, 5)
	before = be.ring.Transfers()
	if _, err := be.WriteAt([][]byte{small}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := be.ReadAt([][]byte{make([]byte, 1<<20)}, 0); err != nil {
		t.Fatal(err)
	}
	if got := be.ring.Transfers(); got != before {
		t.Errorf("a 4 KiB write and a read made %d transfers through the ring, want none", got-before)
	}
	got := make([]byte, 1<<20)
	if _, err := be.f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:4096], small) || !bytes.Equal(got[4096:], big[4096:]) {
		t.Error("the file does not hold what was written")
	}
	if be.ringFor(be.fd+1000, 1<<20) != nil {
		t.Error("a write through another descriptor (O_DIRECT's) would go through the ring")
	}
}
