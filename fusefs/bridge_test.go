// SPDX-License-Identifier: Apache-2.0

package fusefs_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fusefs"
	"github.com/lunbridge/lunbridge/internal/fakering"
	"github.com/lunbridge/lunbridge/tcmu"
)

// This file runs the view over a real bridge.Daemon whose LUNs are served
// on in-process rings (internal/fakering), so SCSI commands flow through
// the real ring, disk and counters and the view's numbers can be checked
// against them. Only the test imports tcmu, to build the rings; package
// fusefs itself does not.

// ringKernel is a bridge.Kernel whose devices are fake rings.
type ringKernel struct {
	mu   sync.Mutex
	devs map[string]*ringDev // by LUN name; protected by mu
}

func (k *ringKernel) Attach(ctx context.Context, l *bridge.LUN, spec bridge.ExportSpec) (bridge.Device, error) {
	fk, err := fakering.NewKernel(fakering.Options{CmdrSize: 256 << 10, DataSize: 2 << 20})
	if err != nil {
		return nil, err
	}
	r, err := tcmu.NewRing(fk.Mem(), fk.Notifier(), tcmu.RingOptions{})
	if err != nil {
		return nil, err
	}
	d := &ringDev{k: fk, ring: r, fabric: spec.Fabric}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.devs == nil {
		k.devs = map[string]*ringDev{}
	}
	k.devs[l.Name()] = d
	return d, nil
}

func (k *ringKernel) dev(name string) *ringDev {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.devs[name]
}

type ringDev struct {
	k      *fakering.Kernel
	ring   *tcmu.Ring
	fabric string
	mu     sync.Mutex
	size   int64 // last Resize; protected by mu
}

func (d *ringDev) Ring() *tcmu.Ring { return d.ring }
func (d *ringDev) UIO() string      { return "/dev/uio7" }
func (d *ringDev) Export(ctx context.Context) (string, string, error) {
	return d.fabric, "/dev/sdz", nil
}
func (d *ringDev) Unexport(ctx context.Context) error { return nil }
func (d *ringDev) Remove() error                      { return nil }
func (d *ringDev) Resize(size int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.size = size
	return nil
}

// rw sends READ(10) or WRITE(10) (SBC-4) for blocks 512-byte blocks at lba
// and returns the SCSI status and the sense key (CHECK CONDITION only).
func (d *ringDev) rw(t *testing.T, write bool, lba uint32, blocks uint16) (status, key uint8) {
	t.Helper()
	cdb := make([]byte, 10)
	cdb[0] = 0x28 // READ(10)
	var out []byte
	in := int(blocks) * 512
	if write {
		cdb[0] = 0x2a // WRITE(10)
		out = make([]byte, in)
		for i := range out {
			out[i] = byte(i)
		}
		in = 0
	}
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], blocks)
	return d.do(t, cdb, out, in)
}

func (d *ringDev) do(t *testing.T, cdb, out []byte, in int) (status, key uint8) {
	t.Helper()
	resp, _, err := d.k.Do(context.Background(), cdb, out, in)
	if err != nil {
		t.Fatalf("command %#x: %v", cdb[0], err)
	}
	if resp.Status == 0x02 && len(resp.Sense) > 2 {
		key = resp.Sense[2] & 0x0f // fixed format (SPC-4): SENSE KEY in byte 2
	}
	return resp.Status, key
}

// needMount skips the test when this process cannot mount FUSE: root
// mounts with mount(2), another user through fusermount3 (or fusermount).
func needMount(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		_, err3 := exec.LookPath("fusermount3")
		_, err := exec.LookPath("fusermount")
		if err3 != nil && err != nil {
			t.Skip("not root and no fusermount3 or fusermount (Debian: fuse3) to mount FUSE")
		}
	}
	fd, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no usable /dev/fuse: %v", err)
	}
	fd.Close()
}

// stats reads a stats file of the view.
func stats(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("stats line %q: %v", line, err)
		}
		m[k] = n
	}
	return m
}

// delta checks that each counter moved by exactly want since before.
func delta(t *testing.T, what string, before, after map[string]uint64, want map[string]uint64) {
	t.Helper()
	for k, w := range want {
		if got := after[k] - before[k]; got != w {
			t.Errorf("%s: %s moved by %d, want %d", what, k, got, w)
		}
	}
}

func TestViewOverBridge(t *testing.T) {
	needMount(t)
	k := &ringKernel{}
	var view *fusefs.View
	d := bridge.NewDaemon(bridge.DaemonOptions{
		Kernel:      k,
		Defaults:    bridge.Options{BlockSize: 512, Workers: 2},
		DefaultSpec: bridge.ExportSpec{Fabric: "loop"},
		OnChange:    func() { view.Refresh() },
	})
	mnt := t.TempDir()
	img := filepath.Join(t.TempDir(), "d0.img")
	view = fusefs.New(d, fusefs.Options{Mountpoint: mnt, Version: "test"})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- view.Run(ctx) }()
	select {
	case <-view.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := d.Close(context.Background()); err != nil {
			t.Errorf("Daemon.Close: %v", err)
		}
	})

	sh := func(script string) error {
		t.Helper()
		// cd in the shell, not with cmd.Dir (see TestViewShell).
		cmd := exec.Command("sh", "-c", "cd "+mnt+" && "+script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("sh -c %q: %v %s", script, err, out)
		}
		return err
	}
	mustSh := func(script string) {
		t.Helper()
		if err := sh(script); err != nil {
			t.Fatalf("sh -c %q failed", script)
		}
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(mnt, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// Export through /luns, as a user would.
	mustSh("echo export d0 " + img + " size=8M > luns")
	dev := k.dev("d0")
	if dev == nil {
		t.Fatal("export through /luns attached no device")
	}
	info := read("d0/info")
	for _, want := range []string{"size 8388608\n", "fabric loop\n", "fabric_path /dev/sdz\n", "uio /dev/uio7\n", "state online\n", "path " + img + "\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("d0/info lacks %q:\n%s", want, info)
		}
	}

	// I/O moves the counters by exactly what was done.
	before := stats(t, filepath.Join(mnt, "d0/stats"))
	for i := range 10 {
		if st, key := dev.rw(t, true, uint32(8*i), 8); st != 0 {
			t.Fatalf("WRITE(10): status %#x key %#x", st, key)
		}
	}
	for i := range 5 {
		if st, key := dev.rw(t, false, uint32(16*i), 16); st != 0 {
			t.Fatalf("READ(10): status %#x key %#x", st, key)
		}
	}
	if st, _ := dev.do(t, []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0); st != 0 { // SYNCHRONIZE CACHE(10)
		t.Fatalf("SYNCHRONIZE CACHE: status %#x", st)
	}
	// Past the end (8 MiB = 16384 blocks): LOGICAL BLOCK ADDRESS OUT OF RANGE.
	if st, key := dev.rw(t, false, 16384, 1); st != 2 || key != 5 {
		t.Fatalf("READ past the end: status %#x key %#x, want CHECK CONDITION, ILLEGAL REQUEST", st, key)
	}
	after := stats(t, filepath.Join(mnt, "d0/stats"))
	delta(t, "I/O", before, after, map[string]uint64{
		"write_ops": 10, "write_bytes": 10 * 8 * 512, "write_errors": 0,
		"read_ops": 6, "read_bytes": 5 * 16 * 512, "read_errors": 1,
		"sync_ops": 1, "errors_illegal_request": 1, "total_errors": 1,
	})
	if after["in_flight"] != 0 {
		t.Errorf("in_flight = %d with no command pending", after["in_flight"])
	}
	lat := read("d0/latency")
	if !strings.Contains(lat, "write count="+strconv.FormatUint(after["write_ops"], 10)+" ") {
		t.Errorf("latency write count does not match write_ops %d:\n%s", after["write_ops"], lat)
	}

	// Offline: media commands fail with NOT READY until back online.
	mustSh("echo offline > d0/state")
	if got := read("d0/state"); got != "offline\n" {
		t.Errorf("state = %q after echo offline", got)
	}
	before = stats(t, filepath.Join(mnt, "d0/stats"))
	if st, key := dev.rw(t, false, 0, 1); st != 2 || key != 2 {
		t.Errorf("READ while offline: status %#x key %#x, want CHECK CONDITION, NOT READY", st, key)
	}
	if err := sh("echo sideways > d0/state"); err == nil {
		t.Errorf("echo sideways > state succeeded")
	}
	mustSh("echo online > d0/state")
	if st, key := dev.rw(t, false, 0, 1); st != 0 {
		t.Errorf("READ back online: status %#x key %#x", st, key)
	}
	delta(t, "offline", before, stats(t, filepath.Join(mnt, "d0/stats")), map[string]uint64{
		"errors_not_ready": 1, "read_errors": 1, "read_ops": 2, "read_bytes": 512,
	})

	// Read-only: writes fail with DATA PROTECT.
	mustSh("echo 1 > d0/read_only")
	if st, key := dev.rw(t, true, 0, 1); st != 2 || key != 7 {
		t.Errorf("WRITE while read-only: status %#x key %#x, want CHECK CONDITION, DATA PROTECT", st, key)
	}
	mustSh("echo 0 > d0/read_only")
	if st, key := dev.rw(t, true, 0, 1); st != 0 {
		t.Errorf("WRITE after read_only=0: status %#x key %#x", st, key)
	}

	// Grow: the file, the device and the disk follow; shrinking is refused.
	mustSh("echo 16M > d0/size")
	if got := read("d0/size"); got != "16777216\n" {
		t.Errorf("size = %q after echo 16M", got)
	}
	if st, err := os.Stat(img); err != nil || st.Size() != 16<<20 {
		t.Errorf("backing file after grow: %v, %v", st.Size(), err)
	}
	dev.mu.Lock()
	if dev.size != 16<<20 {
		t.Errorf("device resized to %d, want %d", dev.size, 16<<20)
	}
	dev.mu.Unlock()
	if err := os.WriteFile(filepath.Join(mnt, "d0/size"), []byte("4M\n"), 0); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("shrink: %v, want EINVAL", err)
	}
	// The first command after the grow reports CAPACITY DATA HAS CHANGED
	// (UNIT ATTENTION); then the new blocks are there.
	for range 2 {
		if st, key := dev.rw(t, false, 16384, 1); st == 0 {
			break
		} else if key != 6 {
			t.Errorf("READ of a new block: status %#x key %#x", st, key)
		}
	}
	if st, key := dev.rw(t, false, 16384, 1); st != 0 {
		t.Errorf("READ of a new block: status %#x key %#x", st, key)
	}

	mustSh("echo flush > d0/ctl")
	mustSh("echo reset-stats > d0/ctl")
	if s := stats(t, filepath.Join(mnt, "d0/stats")); s["total_ops"] != 0 || s["total_errors"] != 0 {
		t.Errorf("after reset-stats: total_ops %d total_errors %d", s["total_ops"], s["total_errors"])
	}

	// Errors from the daemon map to errnos.
	if err := os.WriteFile(filepath.Join(mnt, "luns"), []byte("export d0 "+img+"\n"), 0); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("export of an existing name: %v, want EEXIST", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "luns"), []byte("remove nope\n"), 0); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("remove of a missing LUN: %v, want ENOENT", err)
	}

	// Remove: the directory goes with the LUN.
	mustSh("echo remove d0 > luns")
	if _, err := os.Stat(filepath.Join(mnt, "d0")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("d0 after remove: %v, want ENOENT", err)
	}
	if got := read("luns"); got != "" {
		t.Errorf("luns after remove = %q", got)
	}
}
