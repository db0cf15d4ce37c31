// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/internal/fakering"
	"github.com/lunbridge/lunbridge/tcmu"
)

// Names that try to leave configfs (core/user_0/NAME, the fabric's LUN
// links) or the FUSE view (/run/lunbridge/NAME) are refused before
// anything is created. (The view's own file names, "version" and "luns",
// are the view's to reserve: fusefs.ReservedName.)
func TestValidNameAttacks(t *testing.T) {
	for _, name := range []string{
		"..", ".", "../x", "../../etc", "a/b", "/abs", "a/../b", "x/",
		"a\x00b", "\x00", "a\nb", "a b", "a\\b", "a:b", "a*", "a%2fb",
		"-rf", ".hidden", "lun\u2215x", "é",
		strings.Repeat("a", MaxNameLen+1), strings.Repeat("a", 4096),
	} {
		if err := ValidName(name); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalid", name, err)
		}
	}
	for _, name := range []string{"a", "disk0", "vm-1.img_2", strings.Repeat("a", MaxNameLen)} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", name, err)
		}
	}
}

// The view's control file hands names straight to Daemon.Control: an
// escaping name is refused there too, and no backing file is made.
func TestControlNameAttacks(t *testing.T) {
	dir := t.TempDir()
	d := NewDaemon(DaemonOptions{Kernel: &fakeKernel{t: t}})
	defer d.Close(context.Background())
	img := filepath.Join(dir, "x.img")
	for _, name := range []string{"..", "../x", "a/b", "a\x00b", strings.Repeat("n", MaxNameLen+1)} {
		line := "export " + name + " " + img + " size=1M fabric=none"
		if err := d.Control(t.Context(), "", line); !errors.Is(err, ErrInvalid) {
			t.Errorf("Control(%q) = %v, want ErrInvalid", line, err)
		}
		if err := d.Control(t.Context(), name, "offline"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Control(%q, offline) = %v, want ErrNotFound", name, err)
		}
	}
	if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused export created %s (%v)", img, err)
	}
	if len(d.List()) != 0 {
		t.Errorf("List() = %+v after refused exports, want none", d.List())
	}
}

// swapLink points the symlink link at target atomically (rename over it),
// as an attacker with write access to the link's directory would.
func swapLink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".new"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// A LUN whose backing path is a symlink keeps serving the file the link
// named at open time when the link is swapped to another file during or
// after Open: every transfer, the O_DIRECT descriptor's included, goes to
// the first file.
func TestSymlinkSwapAfterOpen(t *testing.T) {
	dir := t.TempDir()
	const size = 1 << 20
	good, victim := filepath.Join(dir, "good.img"), filepath.Join(dir, "victim.img")
	for _, p := range []string{good, victim} {
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "disk")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	// Swapped between the open and the O_DIRECT reopen, the narrowest
	// window, and the link stays swapped while the LUN serves.
	testHookOpened = func() { swapLink(t, victim, link) }
	defer func() { testHookOpened = nil }()
	l := serveLUN(t, Options{Name: "swap", Path: link, DirectIO: true})

	p := pattern(64<<10, 7)
	l.mustGood(t, write10(0, 128, false), p, 0)
	if l.be.direct == nil {
		t.Log("the temp file system refuses O_DIRECT: only the buffered path is checked")
	} else {
		// Page-aligned buffers take the O_DIRECT descriptor.
		mem, err := unix.Mmap(-1, 0, len(p), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(mem)
		copy(mem, p)
		before := l.be.directIOs.Load()
		if _, err := l.be.WriteAt([][]byte{mem}, 512<<10); err != nil {
			t.Fatal(err)
		}
		if l.be.directIOs.Load() == before {
			t.Error("the aligned write did not take the O_DIRECT descriptor")
		}
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	g, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g[:len(p)], p) {
		t.Error("the file the link named at open did not get the write")
	}
	if l.be.direct != nil && !bytes.Equal(g[512<<10:512<<10+len(p)], p) {
		t.Error("the file the link named at open did not get the O_DIRECT write")
	}
	v, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v, make([]byte, size)) {
		t.Error("I/O was redirected to the file the swapped link names")
	}
}

// reopen follows the descriptor, not the name. A reopen by name (what
// Open did for O_DIRECT before) would land on the swapped-in file: the
// test checks that too, so it shows the attack it guards against.
func TestReopenByDescriptor(t *testing.T) {
	dir := t.TempDir()
	good, victim := filepath.Join(dir, "good"), filepath.Join(dir, "victim")
	for _, p := range []string{good, victim} {
		if err := os.WriteFile(p, []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(link, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	swapLink(t, victim, link)
	vst, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	byName, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer byName.Close()
	if st, err := byName.Stat(); err != nil || !os.SameFile(st, vst) {
		t.Fatalf("a reopen by name did not reach the swapped-in file (%v): the attack is not set up", err)
	}
	d, err := reopen(f, os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	gst, _ := os.Stat(good)
	if st, err := d.Stat(); err != nil || !os.SameFile(st, gst) {
		t.Errorf("reopen(f) is not on the file f was opened on (%v)", err)
	}
}

// Creating a missing backing file never follows a symlink at the path:
// a dangling link to a file elsewhere is refused and nothing is created
// at its target.
func TestCreateRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere", "owned-by-attacker")
	if err := os.Mkdir(filepath.Dir(target), 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "new.img")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	l, err := Open(Options{Name: "new", Path: link, Size: 1 << 20})
	if err == nil {
		l.Close()
		t.Fatal("Open created a backing file through a dangling symlink")
	}
	if !errors.Is(err, syscall.EEXIST) && !errors.Is(err, syscall.ELOOP) {
		t.Errorf("Open through a dangling symlink = %v, want EEXIST or ELOOP", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the symlink's target was created (%v)", err)
	}
}

// ringsKernel is a fakeKernel that keeps each LUN's fake kernel, and
// writes a corrupt entry (len_op 0) into the ring of the LUN named bad
// before it is served.
type ringsKernel struct {
	bad string
	mu  sync.Mutex
	k   map[string]*fakering.Kernel // protected by mu
}

func (r *ringsKernel) Attach(ctx context.Context, l *LUN, spec ExportSpec) (Device, error) {
	k, err := fakering.NewKernel(fakering.Options{})
	if err != nil {
		return nil, err
	}
	if l.Name() == r.bad {
		if _, err := k.Submit(ctx, read10(0, 1), nil, 512); err != nil {
			return nil, err
		}
		// tcmu_cmd_entry_hdr.len_op: length 0, TCMU_OP_CMD.
		binary.NativeEndian.PutUint32(k.Mem()[k.LastEntry():], 1)
	}
	ring, err := tcmu.NewRing(k.Mem(), k.Notifier(), tcmu.RingOptions{})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.k[l.Name()] = k
	r.mu.Unlock()
	return &fakeDevice{k: k, ring: ring}, nil
}

// A corrupt ring entry stops that LUN (StateFailed, ErrCorruptRing) and
// nothing else: the daemon's other LUN keeps serving.
func TestCorruptRingStopsOneLUN(t *testing.T) {
	dir := t.TempDir()
	rk := &ringsKernel{bad: "bad", k: map[string]*fakering.Kernel{}}
	d := NewDaemon(DaemonOptions{Kernel: rk})
	defer d.Close(context.Background())
	for _, name := range []string{"good", "bad"} {
		o := Options{Name: name, Path: filepath.Join(dir, name+".img"), Size: 1 << 20}
		if _, err := d.Add(t.Context(), o, ExportSpec{Fabric: "none"}); err != nil {
			t.Fatal(err)
		}
	}
	bad, err := d.LUN("bad")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for bad.Info().State != StateFailed {
		if time.Now().After(deadline) {
			t.Fatalf("LUN bad is %v after a corrupt ring entry, want %v", bad.Info().State, StateFailed)
		}
		time.Sleep(10 * time.Millisecond)
	}
	good, err := d.LUN("good")
	if err != nil {
		t.Fatal(err)
	}
	if st := good.Info().State; st != StateOnline {
		t.Errorf("LUN good is %v, want %v", st, StateOnline)
	}
	rk.mu.Lock()
	k := rk.k["good"]
	rk.mu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if r, _, err := k.Do(ctx, read10(0, 8), nil, 8*512); err != nil || r.Status != 0 {
		t.Fatalf("READ on LUN good after LUN bad failed: %+v, %v", r, err)
	}
	if err := d.Remove(t.Context(), "bad"); !errors.Is(err, tcmu.ErrCorruptRing) {
		t.Errorf("Remove(bad) = %v, want ErrCorruptRing", err)
	}
	if r, _, err := k.Do(ctx, read10(0, 8), nil, 8*512); err != nil || r.Status != 0 {
		t.Fatalf("READ on LUN good after LUN bad was removed: %+v, %v", r, err)
	}
}
