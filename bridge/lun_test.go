// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/internal/fakering"
	"github.com/lunbridge/lunbridge/tcmu"
)

// testLUN is a LUN served on the in-process ring.
type testLUN struct {
	*LUN
	k    *fakering.Kernel
	stop func() error // cancels Serve and returns its error
}

// serveLUN opens a LUN with o and serves it on a fake kernel until the
// test ends.
func serveLUN(t *testing.T, o Options) *testLUN {
	t.Helper()
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return serveOpened(t, l)
}

func serveOpened(t *testing.T, l *LUN) *testLUN {
	t.Helper()
	k, err := fakering.NewKernel(fakering.Options{DataSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ring, err := tcmu.NewRing(k.Mem(), k.Notifier(), tcmu.RingOptions{DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, ring) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil && !errors.Is(err, tcmu.ErrDrainTimeout) {
			t.Errorf("Serve: %v", err)
		}
		l.Close()
		if err := k.Err(); err != nil {
			t.Errorf("fake kernel: %v", err)
		}
	})
	return &testLUN{LUN: l, k: k, stop: stop}
}

// CDB builders (SBC-4).
func read10(lba uint32, blocks uint16) []byte {
	c := []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], blocks)
	return c
}

func write10(lba uint32, blocks uint16, fua bool) []byte {
	c := read10(lba, blocks)
	c[0] = 0x2a
	if fua {
		c[1] |= 0x08
	}
	return c
}

func readCapacity16() []byte {
	return []byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}
}

var (
	testUnitReady = []byte{0, 0, 0, 0, 0, 0}
	syncCache10   = []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}
)

// unmap returns an UNMAP CDB and its parameter list for one extent.
func unmap(lba uint64, blocks uint32) (cdb, param []byte) {
	param = make([]byte, 24)
	binary.BigEndian.PutUint16(param[0:], 22)
	binary.BigEndian.PutUint16(param[2:], 16)
	binary.BigEndian.PutUint64(param[8:], lba)
	binary.BigEndian.PutUint32(param[16:], blocks)
	cdb = []byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}
	return cdb, param
}

// do runs one command and returns its response.
func (l *testLUN) do(t *testing.T, cdb, out []byte, inLen int) fakering.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, _, err := l.k.Do(ctx, cdb, out, inLen)
	if err != nil {
		t.Fatalf("command %x: %v", cdb, err)
	}
	return r
}

// mustGood runs a command that must succeed and returns its data-in.
func (l *testLUN) mustGood(t *testing.T, cdb, out []byte, inLen int) []byte {
	t.Helper()
	r := l.do(t, cdb, out, inLen)
	if r.Status != 0 {
		t.Fatalf("command %x: status %#x sense %s, want GOOD", cdb, r.Status, senseString(r.Sense))
	}
	return r.Data
}

// senseString shows key/ASC/ASCQ of fixed-format sense data.
func senseString(s []byte) string {
	k, asc, ascq := senseOf(s)
	return strings.ToUpper(hex2(k) + "/" + hex2(asc) + "/" + hex2(ascq))
}

func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&15]})
}

func senseOf(s []byte) (key, asc, ascq byte) {
	if len(s) < 14 {
		return 0xff, 0xff, 0xff
	}
	return s[2] & 0x0f, s[12], s[13]
}

// wantSense runs a command that must fail with the given sense.
func (l *testLUN) wantSense(t *testing.T, cdb, out []byte, inLen int, key, asc, ascq byte) {
	t.Helper()
	r := l.do(t, cdb, out, inLen)
	if r.Status != statusCheckCondition {
		t.Fatalf("command %x: status %#x, want CHECK CONDITION %02X/%02X/%02X", cdb, r.Status, key, asc, ascq)
	}
	if k, a, q := senseOf(r.Sense); k != key || a != asc || q != ascq {
		t.Fatalf("command %x: sense %s, want %02X/%02X/%02X", cdb, senseString(r.Sense), key, asc, ascq)
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.img")
	if err := os.WriteFile(existing, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(dir, "odd.img")
	if err := os.WriteFile(odd, make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		o        Options
		wantSize int64
		wantErr  string
	}{
		{"create sparse", Options{Name: "a", Path: filepath.Join(dir, "new.img"), Size: 8 << 20}, 8 << 20, ""},
		{"existing keeps its size", Options{Name: "a", Path: existing}, 1 << 20, ""},
		{"grow with explicit size", Options{Name: "a", Path: filepath.Join(dir, "grow.img"), Size: 1 << 20}, 1 << 20, ""},
		{"missing without size", Options{Name: "a", Path: filepath.Join(dir, "none.img")}, 0, "give a size"},
		{"shrink refused", Options{Name: "a", Path: existing, Size: 512 << 10}, 0, "refusing to shrink"},
		{"shrink forced", Options{Name: "a", Path: existing, Size: 512 << 10, Shrink: true}, 512 << 10, ""},
		{"bad block size", Options{Name: "a", Path: existing, BlockSize: 1024}, 0, "must be 512 or 4096"},
		{"size not a block multiple", Options{Name: "a", Path: existing, Size: 1<<20 + 100}, 0, "multiple"},
		{"file not a block multiple", Options{Name: "a", Path: odd}, 0, "multiple"},
		{"name with slash", Options{Name: "a/b", Path: existing}, 0, "only letters"},
		{"name dot-dot", Options{Name: "..", Path: existing}, 0, "must not start"},
		{"empty name", Options{Name: "", Path: existing}, 0, "length"},
		{"directory", Options{Name: "a", Path: dir}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "grow with explicit size" {
				if err := os.WriteFile(tc.o.Path, make([]byte, 4096), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			l, err := Open(tc.o)
			if tc.wantSize == 0 {
				if err == nil {
					l.Close()
					t.Fatalf("Open(%+v) succeeded, want an error", tc.o)
				}
				if !errors.Is(err, ErrInvalid) && tc.wantErr != "" {
					t.Errorf("Open error %v does not wrap ErrInvalid", err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Open error = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if got := l.Size(); got != tc.wantSize {
				t.Errorf("Size() = %d, want %d", got, tc.wantSize)
			}
			st, err := os.Stat(tc.o.Path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.o.Size > 0 && !tc.o.Shrink && st.Size() != tc.wantSize {
				t.Errorf("file size = %d, want %d", st.Size(), tc.wantSize)
			}
		})
	}
}

// lunSuite runs the data-path checks on a LUN whose backing file is path.
func lunSuite(t *testing.T, path string) {
	l := serveLUN(t, Options{Name: "disk0", Path: path, Size: 4 << 20})
	p := pattern(256<<10, 1)

	// WRITE then READ through the ring; the bytes land in the file.
	l.mustGood(t, write10(16, 512, false), p, 0)
	got := l.mustGood(t, read10(16, 512), nil, len(p))
	if !bytes.Equal(got, p) {
		t.Fatalf("READ(10) after WRITE(10): data differs")
	}
	l.mustGood(t, syncCache10, nil, 0)
	file := make([]byte, len(p))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(file, 16*512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, p) {
		t.Fatalf("backing file at LBA 16 differs from what was written")
	}

	// FUA write.
	l.mustGood(t, write10(1024, 8, true), p[:4096], 0)

	// UNMAP: the range reads back as zeros.
	cdb, param := unmap(16, 128)
	l.mustGood(t, cdb, param, 0)
	got = l.mustGood(t, read10(16, 128), nil, 128*512)
	if !bytes.Equal(got, make([]byte, 128*512)) {
		t.Errorf("READ after UNMAP: not zeros")
	}
	got = l.mustGood(t, read10(144, 1), nil, 512)
	if !bytes.Equal(got, p[128*512:129*512]) {
		t.Errorf("READ after UNMAP: the block after the range changed")
	}

	// Past the end: LOGICAL BLOCK ADDRESS OUT OF RANGE.
	l.wantSense(t, read10(8191, 2), nil, 1024, 0x05, 0x21, 0x00)

	// Concurrent writers and readers on disjoint ranges.
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := pattern(32<<10, byte(10+i))
			lba := uint32(2048 + i*64)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if r, _, err := l.k.Do(ctx, write10(lba, 64, false), data, 0); err != nil || r.Status != 0 {
				errs <- "write failed"
				return
			}
			r, back, err := l.k.Do(ctx, read10(lba, 64), nil, len(data))
			if err != nil || r.Status != 0 || !bytes.Equal(back, data) {
				errs <- "read back differs"
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	s := l.Stats()
	if got := s.Kinds[KindWrite].Bytes; got < uint64(len(p))+16*32<<10 {
		t.Errorf("write bytes = %d, want at least %d", got, len(p)+16*32<<10)
	}
	if s.Kinds[KindUnmap].Ops != 1 || s.Kinds[KindSync].Ops != 1 {
		t.Errorf("unmap ops = %d, sync ops = %d, want 1 and 1", s.Kinds[KindUnmap].Ops, s.Kinds[KindSync].Ops)
	}
	if s.SenseKeyErrors[0x05] != 1 || s.Kinds[KindRead].Errors != 1 {
		t.Errorf("illegal request errors = %d, read errors = %d, want 1 and 1", s.SenseKeyErrors[0x05], s.Kinds[KindRead].Errors)
	}
	if s.InFlight != 0 || s.InFlightMax == 0 {
		t.Errorf("in flight = %d (max %d), want 0 (max > 0)", s.InFlight, s.InFlightMax)
	}
	if s.Kinds[KindRead].Latency.Count() != s.Kinds[KindRead].Ops {
		t.Errorf("read latency count %d != read ops %d", s.Kinds[KindRead].Latency.Count(), s.Kinds[KindRead].Ops)
	}
	// The ring's counters: every command was handed back by some kick,
	// the kernel signalled, and a kick carries at least one command.
	ops, _, _ := s.Total()
	if s.RingKicks == 0 || s.RingKicks > ops || s.RingWakeups == 0 {
		t.Errorf("ring kicks %d, wakeups %d for %d commands, want 1..%d kicks and some wakeups", s.RingKicks, s.RingWakeups, ops, ops)
	}
}

func TestLUNPlainDir(t *testing.T) {
	lunSuite(t, filepath.Join(t.TempDir(), "disk.img"))
}

func TestControls(t *testing.T) {
	l := serveLUN(t, Options{Name: "disk0", Path: filepath.Join(t.TempDir(), "d.img"), Size: 1 << 20})
	block := pattern(512, 3)

	// Read-only: DATA PROTECT / WRITE PROTECTED.
	if err := l.Control("read-only 1"); err != nil {
		t.Fatal(err)
	}
	l.wantSense(t, write10(0, 1, false), block, 0, 0x07, 0x27, 0x00)
	l.mustGood(t, read10(0, 1), nil, 512)
	if !l.Info().ReadOnly {
		t.Error("Info().ReadOnly = false after read-only 1")
	}
	if err := l.Control("read-only 0"); err != nil {
		t.Fatal(err)
	}
	l.mustGood(t, write10(0, 1, false), block, 0)

	// Offline: NOT READY; online again.
	if err := l.Control("offline"); err != nil {
		t.Fatal(err)
	}
	if got := l.Info().State; got != StateOffline {
		t.Errorf("state = %v, want offline", got)
	}
	r := l.do(t, testUnitReady, nil, 0)
	if k, _, _ := senseOf(r.Sense); r.Status != statusCheckCondition || k != 0x02 {
		t.Errorf("TEST UNIT READY offline: status %#x sense %s, want NOT READY", r.Status, senseString(r.Sense))
	}
	if err := l.Control("online"); err != nil {
		t.Fatal(err)
	}
	l.mustGood(t, testUnitReady, nil, 0)

	// Resize: grows the file, raises CAPACITY DATA HAS CHANGED once, and
	// READ CAPACITY reports the new size.
	if err := l.Control("resize 2M"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(l.path); err != nil || st.Size() != 2<<20 {
		t.Errorf("file after resize: %v, %v; want 2 MiB", st, err)
	}
	l.wantSense(t, testUnitReady, nil, 0, 0x06, 0x2a, 0x09)
	rc := l.mustGood(t, readCapacity16(), nil, 32)
	if last := binary.BigEndian.Uint64(rc); last != 2<<20/512-1 {
		t.Errorf("READ CAPACITY(16) last LBA = %d, want %d", last, 2<<20/512-1)
	}
	l.mustGood(t, write10(3000, 1, false), block, 0)

	// Bad controls change nothing.
	for _, line := range []string{"resize 1M", "resize 1000", "resize x", "read-only 2", "offline now", "frobnicate", ""} {
		if err := l.Control(line); !errors.Is(err, ErrInvalid) {
			t.Errorf("Control(%q) = %v, want ErrInvalid", line, err)
		}
	}
	if l.Size() != 2<<20 || l.Info().ReadOnly || l.Info().State != StateOnline {
		t.Errorf("state changed by bad controls: size %d, info %+v", l.Size(), l.Info())
	}

	// flush and reset-stats.
	if err := l.Control("flush"); err != nil {
		t.Fatal(err)
	}
	if err := l.Control("reset-stats"); err != nil {
		t.Fatal(err)
	}
	s := l.Stats()
	if ops, _, _ := s.Total(); ops != 0 || s.RingKicks != 0 || s.RingWakeups != 0 {
		t.Errorf("after reset-stats: %d ops, %d kicks, %d wakeups; want none", ops, s.RingKicks, s.RingWakeups)
	}
	// Counting starts again from the reset.
	l.mustGood(t, testUnitReady, nil, 0)
	if s := l.Stats(); s.RingKicks == 0 || s.RingKicks > 1 {
		t.Errorf("one command after reset-stats: %d kicks, want 1", s.RingKicks)
	}
}

// TestWriteThrough checks that the write-cache mode is what initiators and
// operators see: WCE in the caching mode page and Info().WriteCache.
func TestWriteThrough(t *testing.T) {
	for _, wt := range []bool{false, true} {
		l := serveLUN(t, Options{Name: "d", Path: filepath.Join(t.TempDir(), "d.img"), Size: 1 << 20, WriteThrough: wt})
		// MODE SENSE(6), caching page 08h.
		page := l.mustGood(t, []byte{0x1a, 0x08, 0x08, 0, 64, 0}, nil, 64)
		if len(page) < 7 {
			t.Fatalf("MODE SENSE caching page: %d bytes", len(page))
		}
		wce := page[4+2]&0x04 != 0
		if wce == wt {
			t.Errorf("write-through %v: WCE = %v", wt, wce)
		}
		if l.Info().WriteCache == wt {
			t.Errorf("write-through %v: Info().WriteCache = %v", wt, l.Info().WriteCache)
		}
	}
}

// TestDaemonControl drives the daemon's control grammar with a kernel
// that serves LUNs on the fake ring.
func TestDaemonControl(t *testing.T) {
	dir := t.TempDir()
	changes := 0
	d := NewDaemon(DaemonOptions{Kernel: &fakeKernel{t: t}, OnChange: func() { changes++ }})
	defer d.Close(context.Background())
	ctx := context.Background()
	if err := d.Control(ctx, "", "export a "+filepath.Join(dir, "a.img")+" size=1M block-size=4096 fabric=none"); err != nil {
		t.Fatal(err)
	}
	if err := d.Control(ctx, "", "export b "+filepath.Join(dir, "b.img")+" size=2M read-only=1"); err != nil {
		t.Fatal(err)
	}
	list := d.List()
	if len(list) != 2 || list[0].Name != "a" || list[1].Name != "b" {
		t.Fatalf("List() = %+v, want a and b", list)
	}
	if list[0].BlockSize != 4096 || list[0].Size != 1<<20 || !list[1].ReadOnly || list[1].Size != 2<<20 {
		t.Errorf("List() = %+v", list)
	}
	for _, tc := range []struct {
		name, line string
		want       error
	}{
		{"", "export a " + filepath.Join(dir, "c.img") + " size=1M", ErrExists},
		{"", "export c " + filepath.Join(dir, "c.img") + " size=1M colour=red", ErrInvalid},
		{"", "export c", ErrInvalid},
		{"", "export ../x " + filepath.Join(dir, "x.img") + " size=1M", ErrInvalid},
		{"", "remove nosuch", ErrNotFound},
		{"", "destroy a", ErrInvalid},
		{"nosuch", "offline", ErrNotFound},
		{"a", "offline", nil},
	} {
		if err := d.Control(ctx, tc.name, tc.line); !errors.Is(err, tc.want) && (err != nil || tc.want != nil) {
			t.Errorf("Control(%q, %q) = %v, want %v", tc.name, tc.line, err, tc.want)
		}
	}
	if err := d.Control(ctx, "", "remove a"); err != nil {
		t.Fatal(err)
	}
	if list := d.List(); len(list) != 1 || list[0].Name != "b" {
		t.Errorf("List() after remove = %+v", list)
	}
	if changes != 3 {
		t.Errorf("OnChange called %d times, want 3", changes)
	}
}

// fakeKernel attaches LUNs to fake rings.
type fakeKernel struct{ t *testing.T }

func (f *fakeKernel) Attach(ctx context.Context, l *LUN, spec ExportSpec) (Device, error) {
	k, err := fakering.NewKernel(fakering.Options{})
	if err != nil {
		return nil, err
	}
	ring, err := tcmu.NewRing(k.Mem(), k.Notifier(), tcmu.RingOptions{})
	if err != nil {
		return nil, err
	}
	return &fakeDevice{k: k, ring: ring}, nil
}

type fakeDevice struct {
	k    *fakering.Kernel
	ring *tcmu.Ring
}

func (d *fakeDevice) Ring() *tcmu.Ring                                   { return d.ring }
func (d *fakeDevice) UIO() string                                        { return "/dev/uio-fake" }
func (d *fakeDevice) Export(ctx context.Context) (string, string, error) { return "none", "", nil }
func (d *fakeDevice) Unexport(ctx context.Context) error                 { return nil }
func (d *fakeDevice) Resize(size int64) error                            { return nil }
func (d *fakeDevice) Remove() error                                      { return d.k.Err() }

// TestMapped checks GET LBA STATUS's view of the file: SEEK_DATA and
// SEEK_HOLE through fileBackend.Mapped.
func TestMapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.img")
	l, err := Open(Options{Name: "m", Path: path, Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.be.WriteAt([][]byte{pattern(64<<10, 4)}, 1<<20); err != nil {
		t.Fatal(err)
	}
	mapped, n, err := l.be.Mapped(0)
	if err != nil {
		t.Fatal(err)
	}
	if !supportsHoles(t, path) {
		t.Skip("the temp file system reports no holes")
	}
	if mapped || n != 1<<20 {
		t.Errorf("Mapped(0) = %v, %d, want false, %d", mapped, n, 1<<20)
	}
	mapped, n, err = l.be.Mapped(1 << 20)
	if err != nil || !mapped || n < 64<<10 {
		t.Errorf("Mapped(1M) = %v, %d, %v, want true, >= 64K", mapped, n, err)
	}
	if err := l.be.Unmap(1<<20, 64<<10); err != nil {
		t.Fatal(err)
	}
	mapped, _, err = l.be.Mapped(1 << 20)
	if err != nil || mapped {
		t.Errorf("Mapped(1M) after Unmap = %v, %v, want false", mapped, err)
	}
}

// supportsHoles reports whether path's file system punches holes.
func supportsHoles(t *testing.T, path string) bool {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
	return err == nil && off > 0
}

func TestPreallocate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.img")
	var calls []int64
	l, err := Open(Options{Name: "p", Path: path, Size: 600 << 20, Preallocate: true,
		Progress: func(done, total int64) {
			if total != 600<<20 {
				t.Errorf("progress total = %d, want %d", total, 600<<20)
			}
			calls = append(calls, done)
		}})
	if errors.Is(err, unix.EOPNOTSUPP) {
		t.Skipf("the temp file system cannot preallocate: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if len(calls) != 3 || calls[2] != 600<<20 || calls[0] >= calls[1] {
		t.Errorf("progress calls = %v, want 3 increasing, ending at %d", calls, 600<<20)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if got := st.Blocks * 512; got < 600<<20 {
		t.Errorf("allocated %d bytes, want at least %d", got, 600<<20)
	}
}

// TestCopyFrom checks the EXTENDED COPY offload between two LUNs' files.
func TestCopyFrom(t *testing.T) {
	dir := t.TempDir()
	src, err := Open(Options{Name: "src", Path: filepath.Join(dir, "src.img"), Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := Open(Options{Name: "dst", Path: filepath.Join(dir, "dst.img"), Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	data := pattern(1<<20, 9)
	if _, err := src.be.WriteAt([][]byte{data}, 512<<10); err != nil {
		t.Fatal(err)
	}
	if err := dst.be.CopyFrom(src.be, 512<<10, 2<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := dst.be.ReadAt([][]byte{got}, 2<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("CopyFrom: destination differs from the source range")
	}
	if err := dst.be.CopyFrom(nullBackend{}, 0, 0, 512); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CopyFrom(another kind of backend) = %v, want errors.ErrUnsupported", err)
	}
}

// TestDirectIO checks that aligned transfers go around the page cache and
// that mixing them with unaligned, buffered ones stays coherent.
func TestDirectIO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "direct.img")
	l := serveLUN(t, Options{Name: "direct", Path: path, Size: 4 << 20, DirectIO: true})
	if l.be.direct == nil {
		t.Skip("the temp file system refuses O_DIRECT")
	}
	p := pattern(64<<10, 21)
	l.mustGood(t, write10(8, 128, false), p, 0)     // byte 4096: aligned
	l.mustGood(t, write10(9, 1, false), p[:512], 0) // byte 4608: buffered
	want := append([]byte{}, p...)
	copy(want[512:1024], p[:512])
	got := l.mustGood(t, read10(8, 128), nil, len(p))
	if !bytes.Equal(got, want) {
		t.Error("read after mixed direct and buffered writes differs")
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file[4096:4096+len(want)], want) {
		t.Error("backing file differs from what was written")
	}
	// The fake's data area is not page-aligned; the daemon's mapping
	// is. Drive the backend with page-aligned buffers from mmap.
	before := l.be.directIOs.Load()
	mem, err := unix.Mmap(-1, 0, 2*len(p), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	out, in := mem[:len(p)], mem[len(p):]
	copy(out, pattern(len(p), 22))
	if _, err := l.be.WriteAt([][]byte{out[:8192], out[8192:]}, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := l.be.ReadAt([][]byte{in}, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, out) {
		t.Error("direct read after direct write differs")
	}
	if n := l.be.directIOs.Load() - before; n != 2 {
		t.Errorf("%d transfers went through O_DIRECT, want 2 (the aligned write and read)", n)
	}
	if _, err := l.be.ReadAt([][]byte{in[1:4097]}, 1<<20); err != nil {
		t.Fatal(err)
	}
	if n := l.be.directIOs.Load() - before; n != 2 {
		t.Errorf("an unaligned buffer went through O_DIRECT (%d direct transfers)", n)
	}
}

// TestRingCountersSum: a LUN's ring counters add up over the rings it
// serves one after the other (a restart of Serve, a gateway's takeover).
func TestRingCountersSum(t *testing.T) {
	first := serveLUN(t, Options{Name: "disk0", Path: filepath.Join(t.TempDir(), "d.img"), Size: 1 << 20})
	first.mustGood(t, testUnitReady, nil, 0)
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	k1 := first.Stats().RingKicks
	second := serveOpened(t, first.LUN)
	second.mustGood(t, testUnitReady, nil, 0)
	second.mustGood(t, testUnitReady, nil, 0)
	if got := second.Stats().RingKicks; k1 != 1 || got != 3 {
		t.Errorf("kicks after one command on the first ring %d, after two more on the second %d; want 1 and 3", k1, got)
	}
}
