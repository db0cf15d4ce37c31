// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/fabric"
	"github.com/lunbridge/lunbridge/integration/vmtest"
	"github.com/lunbridge/lunbridge/tcmu"
)

// guestHalfEnv selects the guest half of a self-hosted test. The host half
// boots a VM that runs this package's test binary with the variable set to
// the test's name; the test then runs its guest half, which drives configfs
// through the tcmu and fabric packages against the real kernel.
const guestHalfEnv = "LUNBRIDGE_GUEST_HALF"

// guestHalf reports whether this process is the guest half of t.
func guestHalf(t *testing.T) bool { return os.Getenv(guestHalfEnv) == t.Name() }

// selfInVM returns opts set up to run t's guest half: the integration
// test binary is put in the share and run between pre and post (shell),
// with -test.v=test2json so that guestResults can report each guest test.
func selfInVM(t *testing.T, opts vmtest.Options, pre, post string) vmtest.Options {
	t.Helper()
	vmtest.Require(t)
	bin := vmtest.BuildTestBinary(t, "./integration")
	if opts.Files == nil {
		opts.Files = map[string]string{}
	}
	opts.Files["integration.test"] = bin
	opts.Script = pre + "\n" + guestHalfEnv + "=" + t.Name() +
		" /mnt/host/integration.test -test.run '^" + t.Name() + "$' -test.v=test2json -test.count=1\n" + post
	return opts
}

// runSelf runs t's guest half (selfInVM) and waits for it (waitSelf).
func runSelf(t *testing.T, opts vmtest.Options, pre, post string) vmtest.Result {
	t.Helper()
	return waitSelf(t, vmtest.Boot(t, selfInVM(t, opts, pre, post)))
}

// waitSelf waits for a guest half, reports its tests one by one
// (guestResults), and fails t if the guest script failed.
func waitSelf(t *testing.T, vm *vmtest.VM) vmtest.Result {
	t.Helper()
	res, err := vm.Wait()
	guestResults(t, res.Console)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("guest half exited with status %d after %s", res.ExitCode, res.Elapsed.Round(100*time.Millisecond))
	}
	return res
}

// waitScript waits for a guest script started with vmtest.Boot and fails
// t if qemu failed or the script exited non-zero.
func waitScript(t *testing.T, vm *vmtest.VM) vmtest.Result {
	t.Helper()
	res, err := vm.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("guest script exited with status %d", res.ExitCode)
	}
	return res
}

// guestResults reads the guest test binary's -test.v=test2json output
// from the console with "go tool test2json" and reports each guest test
// as a subtest of t: "guest" for t's own guest half, "guest/SUB" for its
// subtests. A guest test that failed fails its subtest with the guest's
// output; one that skipped skips; one with no result (the guest died
// first) fails.
func guestResults(t *testing.T, console string) {
	t.Helper()
	cmd := exec.Command("go", "tool", "test2json")
	cmd.Stdin = strings.NewReader(console)
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("go tool test2json: %v", err)
		return
	}
	var order []string
	result := map[string]string{}
	output := map[string]*strings.Builder{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var e struct{ Action, Test, Output string }
		if err := dec.Decode(&e); err != nil {
			t.Errorf("go tool test2json: %v", err)
			return
		}
		if e.Test == "" {
			continue
		}
		if _, ok := output[e.Test]; !ok {
			order = append(order, e.Test)
			output[e.Test] = &strings.Builder{}
		}
		switch e.Action {
		case "output":
			output[e.Test].WriteString(e.Output)
		case "pass", "fail", "skip":
			result[e.Test] = e.Action
		}
	}
	if len(order) == 0 {
		t.Error("no guest test results in the console")
	}
	for _, name := range order {
		sub := "guest"
		if rest, ok := strings.CutPrefix(name, t.Name()+"/"); ok {
			sub += "/" + rest
		}
		t.Run(sub, func(t *testing.T) {
			switch result[name] {
			case "pass":
			case "skip":
				t.Skipf("skipped in the guest:\n%s", output[name])
			case "fail":
				t.Errorf("failed in the guest:\n%s", output[name])
			default:
				t.Errorf("no result from the guest:\n%s", output[name])
			}
		})
	}
}

// guestLib runs a function of the vmtest guest library (signal, waitfor)
// from a guest half.
func guestLib(t *testing.T, fn string, args ...string) {
	t.Helper()
	script := ". /lib/vmtest.sh; " + fn + ` "$@"`
	out, err := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("guest %s %v: %v\n%s", fn, args, err, out)
	}
}

const (
	cfgTarget = "/sys/kernel/config/target"
	cfgCore   = cfgTarget + "/core"
)

// readTrim reads a configfs or sysfs attribute without its newline.
func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// writeAttr writes a configfs attribute from a guest half.
func writeAttr(t *testing.T, path, value string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		t.Fatalf("write %q to %s: %v", value, path, err)
	}
}

// configTree lists the directories under dir, recursively (configfs
// attributes are files and skipped), for before/after comparisons.
func configTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	var walk func(string)
	walk = func(d string) {
		ents, err := os.ReadDir(d)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			return
		}
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			if e.Type()&os.ModeSymlink != 0 {
				out = append(out, p+" (link)")
			} else if e.IsDir() {
				out = append(out, p)
				walk(p)
			}
		}
	}
	walk(dir)
	return out
}

// logAttribs logs every readable attribute in dir.
func logAttribs(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			lines = append(lines, e.Name()+"="+strings.TrimSpace(string(b)))
		}
	}
	t.Logf("%s: %s", dir, strings.Join(lines, " "))
}

// TestDeviceLifecycle creates TCMU devices with tcmu.OpenDevice in the real
// kernel and checks what the kernel kept (every attribute, the UIO name,
// the mailbox), one-opener exclusion, block/reset actions, resizing while
// enabled (through a netlink listener), adoption, refusal of a foreign
// backstore, and that Remove
// leaves configfs as found.
func TestDeviceLifecycle(t *testing.T) {
	if guestHalf(t) {
		deviceLifecycleGuest(t)
		return
	}
	runSelf(t, vmtest.Options{Timeout: 3 * time.Minute}, "", "target_leftovers")
}

func deviceLifecycleGuest(t *testing.T) {
	ctx := t.Context()
	before := configTree(t, cfgCore)

	// Defaults, 512-byte blocks.
	def, err := tcmu.OpenDevice(ctx, tcmu.DeviceConfig{Name: "lbdef", Config: "lbdef", Size: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	logAttribs(t, filepath.Join(def.Path(), "attrib"))
	for name, want := range map[string]string{
		"hw_block_size": "512", "hw_max_sectors": strconv.Itoa(tcmu.DefaultMaxSectors), "dev_size": "8388608",
		"cmd_time_out": "30", "qfull_time_out": "-1", "nl_reply_supported": "-1",
		"emulate_write_cache": "0", "tmr_notification": "0", "dev_config": "lunbridge/lbdef",
	} {
		if got := readTrim(t, filepath.Join(def.Path(), "attrib", name)); got != want {
			t.Errorf("default device: attrib/%s = %q, want %q", name, got, want)
		}
	}
	t.Logf("default device: map size %d bytes, info: %s", len(def.Mem()), readTrim(t, filepath.Join(def.Path(), "info")))
	if err := def.Remove(); err != nil {
		t.Fatal(err)
	}

	cfg := tcmu.DeviceConfig{
		Name: "lbdev0", HBA: 7, Config: "lbdev0",
		Size: 16 << 20, BlockSize: 4096, MaxSectors: 2048, MaxDataAreaMB: 32,
		CmdTimeout: 12 * time.Second, QfullTimeout: 7 * time.Second,
		WriteCache: true, TMRNotify: true,
	}
	d, err := tcmu.OpenDevice(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Adopted() {
		t.Error("new device: Adopted() = true")
	}
	attrib := filepath.Join(d.Path(), "attrib")
	logAttribs(t, attrib)
	for name, want := range map[string]string{
		"hw_block_size": "4096", "hw_max_sectors": "2048", "dev_size": "16777216",
		"max_data_area_mb": "32", "cmd_time_out": "12", "qfull_time_out": "7",
		"nl_reply_supported": "-1", "emulate_write_cache": "1", "tmr_notification": "1",
		"dev_config": "lunbridge/lbdev0",
	} {
		if got := readTrim(t, filepath.Join(attrib, name)); got != want {
			t.Errorf("attrib/%s = %q, want %q", name, got, want)
		}
	}
	uio := filepath.Base(d.UIO())
	if got, want := readTrim(t, "/sys/class/uio/"+uio+"/name"), "tcm-user/7/lbdev0/lunbridge/lbdev0"; got != want {
		t.Errorf("UIO name = %q, want %q", got, want)
	}
	mapSize, err := strconv.ParseInt(readTrim(t, "/sys/class/uio/"+uio+"/maps/map0/size"), 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	mem := d.Mem()
	ne := binary.NativeEndian
	version, flags := ne.Uint16(mem[0:]), ne.Uint16(mem[2:])
	cmdrOff, cmdrSize := ne.Uint32(mem[4:]), ne.Uint32(mem[8:])
	t.Logf("mailbox: version %d flags %#x cmdr_off %d cmdr_size %d; map %#x bytes; info: %s",
		version, flags, cmdrOff, cmdrSize, mapSize, readTrim(t, filepath.Join(d.Path(), "info")))
	if version != 2 || cmdrOff != 128 || int64(len(mem)) != mapSize {
		t.Errorf("mailbox version %d, cmdr_off %d, len(Mem) %d; want 2, 128, %d", version, cmdrOff, len(mem), mapSize)
	}
	if want := int64(cmdrOff+cmdrSize) + 32<<20; mapSize != want {
		t.Errorf("map size %#x, want command area %#x + 32 MiB data", mapSize, cmdrOff+cmdrSize)
	}

	// The kernel allows one opener: a second OpenDevice adopts the
	// configfs side but gets ErrBusy on the UIO device.
	if d2, err := tcmu.OpenDevice(ctx, cfg); !errors.Is(err, tcmu.ErrBusy) {
		if err == nil {
			d2.Close()
		}
		t.Errorf("second OpenDevice while open = %v, want ErrBusy", err)
	}

	// Actions on an enabled device (no LUN yet).
	if err := d.Block(); err != nil {
		t.Errorf("Block: %v", err)
	}
	if got := readTrim(t, filepath.Join(d.Path(), "action", "block_dev")); got != "blocked" {
		t.Errorf("action/block_dev after Block = %q, want blocked", got)
	}
	if err := d.Unblock(); err != nil {
		t.Errorf("Unblock: %v", err)
	}
	for _, level := range []int{1, 2} {
		if err := d.ResetRing(level); err != nil {
			t.Errorf("ResetRing(%d): %v", level, err)
		}
	}
	if err := d.Recover(); err != nil {
		t.Errorf("Recover: %v", err)
	}

	// dev_size while enabled: the kernel first multicasts a netlink
	// reconfiguration event and fails with ESRCH when nobody listens;
	// Resize listens itself for the duration of the write.
	err = d.Resize(32 << 20)
	t.Logf("Resize while enabled: %v; attrib/dev_size = %s", err, readTrim(t, filepath.Join(attrib, "dev_size")))
	if err != nil {
		t.Errorf("Resize while enabled = %v", err)
	} else {
		cfg.Size = 32 << 20
	}
	if got := readTrim(t, filepath.Join(attrib, "dev_size")); got != strconv.FormatInt(cfg.Size, 10) {
		t.Errorf("attrib/dev_size after Resize = %s, want %d", got, cfg.Size)
	}
	// Without a listener the same write is refused: that is what Resize
	// works around.
	err = os.WriteFile(filepath.Join(attrib, "dev_size"), []byte("16777216"), 0)
	t.Logf("plain write of dev_size while enabled: %v", err)
	if !errors.Is(err, syscall.ESRCH) {
		t.Errorf("plain write of dev_size while enabled = %v, want ESRCH", err)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Adoption with zero size and block size takes the kernel's values.
	a, err := tcmu.OpenDevice(ctx, tcmu.DeviceConfig{Name: "lbdev0", HBA: 7, Config: "lbdev0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Config(); !a.Adopted() || got.Size != cfg.Size || got.BlockSize != 4096 || got.MaxSectors != 2048 ||
		got.CmdTimeout != 12*time.Second || a.UIO() != d.UIO() {
		t.Errorf("adopted: Adopted %v, Config %+v, UIO %s; want true, size %d, 4096, 2048, 12s, %s",
			a.Adopted(), got, a.UIO(), cfg.Size, d.UIO())
	}
	if ne.Uint16(a.Mem()[0:]) != 2 {
		t.Error("adopted mapping: mailbox version is not 2")
	}
	mismatch := cfg
	mismatch.Size = 8 << 20 // neither the old nor the resized size
	if _, err := tcmu.OpenDevice(ctx, mismatch); !errors.Is(err, tcmu.ErrMismatch) {
		t.Errorf("OpenDevice with another size = %v, want ErrMismatch", err)
	}
	list, err := tcmu.ListDevices(tcmu.DefaultConfigfsRoot)
	if err != nil {
		t.Fatal(err)
	}
	want := []tcmu.DeviceInfo{{Name: "lbdev0", HBA: 7, Path: d.Path(), Config: "lbdev0", Size: cfg.Size, BlockSize: 4096, MaxSectors: cfg.MaxSectors, Enabled: true}}
	if !slices.Equal(list, want) {
		t.Errorf("ListDevices = %+v, want %+v", list, want)
	}

	// A backstore that is not lunbridge's is refused and left alone.
	foreign := filepath.Join(cfgCore, "user_7", "theirs")
	if err := os.Mkdir(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	writeAttr(t, filepath.Join(foreign, "control"), "dev_config=other/x,dev_size=1048576")
	writeAttr(t, filepath.Join(foreign, "enable"), "1")
	_, err = tcmu.OpenDevice(ctx, tcmu.DeviceConfig{Name: "theirs", HBA: 7, Config: "x", Size: 1 << 20})
	if !errors.Is(err, tcmu.ErrNotOurs) {
		t.Errorf("OpenDevice over a foreign backstore = %v, want ErrNotOurs", err)
	}
	if got := readTrim(t, filepath.Join(foreign, "attrib", "dev_config")); got != "other/x" {
		t.Errorf("foreign dev_config = %q after refusal, want other/x", got)
	}
	if list, _ := tcmu.ListDevices(tcmu.DefaultConfigfsRoot); len(list) != 1 {
		t.Errorf("ListDevices with a foreign backstore = %+v, want only lbdev0", list)
	}
	// Remove keeps user_7 while the foreign backstore is in it.
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("foreign backstore after Remove: %v", err)
	}
	if err := os.Remove(foreign); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Dir(foreign)); err != nil {
		t.Fatal(err)
	}
	if after := configTree(t, cfgCore); !slices.Equal(after, before) {
		t.Errorf("configfs core after Remove = %q, want %q", after, before)
	}
}

// TestDeviceResetRing observes action/reset_ring on a TCMU device whose
// commands nobody serves: linking it to a tcm_loop LUN makes the kernel's
// SCSI scan queue an INQUIRY in the ring. Recover (block, reset_ring 1,
// unblock) must set cmd_head and cmd_tail to 0 and complete the INQUIRY
// with BUSY; the initiator retries it, so the same command shows up again
// at the start of the ring. Level 2 fails commands (CHECK CONDITION), so
// the scan gives up, the link returns and AddLUN finds no disk.
func TestDeviceResetRing(t *testing.T) {
	if guestHalf(t) {
		deviceResetRingGuest(t)
		return
	}
	runSelf(t, vmtest.Options{Timeout: 4 * time.Minute}, "", "target_leftovers")
}

func deviceResetRingGuest(t *testing.T) {
	ctx := t.Context()
	d, err := tcmu.OpenDevice(ctx, tcmu.DeviceConfig{Name: "lbring", Config: "lbring", Size: 8 << 20, CmdTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Remove(); err != nil {
			t.Error(err)
		}
	}()
	mem := d.Mem()
	ne := binary.NativeEndian
	head := func() uint32 { return ne.Uint32(mem[12:]) } // tcmu_mailbox.cmd_head
	tail := func() uint32 { return ne.Uint32(mem[64:]) } // tcmu_mailbox.cmd_tail
	// opcode, cmd_id and SCSI opcode of the entry at ring offset off.
	entry := func(off uint32) (op uint32, id uint16, cdb0 byte) {
		e := mem[128+off:]
		op, id = ne.Uint32(e[0:])&7, ne.Uint16(e[4:])
		if op == 1 { // TCMU_OP_CMD: req.cdb_off is a __u64 at 24
			cdb0 = mem[ne.Uint64(e[24:])]
		}
		return op, id, cdb0
	}
	waitHead := func(what string, cond func(uint32) bool) bool {
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if cond(head()) {
				return true
			}
		}
		t.Errorf("%s: cmd_head = %d after 30 s", what, head())
		return false
	}

	// The notifier parks in the poller and honours its context.
	n := d.Notifier()
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = n.Wait(wctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with no command queued = %v, want DeadlineExceeded", err)
	}

	wwn, nexus := fabric.LoopWWNs("lbring")
	lt := &fabric.LoopTarget{WWN: wwn, NexusWWN: nexus, ScanTimeout: 5 * time.Second}
	added := make(chan error, 1)
	go func() {
		_, err := lt.AddLUN(context.Background(), 0, d.Path())
		added <- err
	}()
	// The scan's INQUIRY wakes the notifier.
	wctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	err = n.Wait(wctx)
	cancel()
	if err != nil {
		t.Errorf("Wait for the scan's INQUIRY = %v", err)
	}
	if !waitHead("scan", func(h uint32) bool { return h != 0 }) {
		t.FailNow()
	}
	if err := n.Kick(); err != nil {
		t.Errorf("Kick = %v", err)
	}
	// Linked: the LUN exists (export_count > 0) while its scan waits.
	list, err := tcmu.ListDevices(tcmu.DefaultConfigfsRoot)
	if err != nil || len(list) != 1 || !list[0].Linked {
		t.Errorf("ListDevices during the scan = %+v, %v; want lbring linked", list, err)
	}
	h0 := head()
	op, id0, cdb0 := entry(0)
	t.Logf("before reset: cmd_head %d cmd_tail %d, entry at 0: op %d cmd_id %d cdb[0] %#x", h0, tail(), op, id0, cdb0)
	if op != 1 || cdb0 != 0x12 {
		t.Errorf("first ring entry: op %d cdb[0] %#x, want TCMU_OP_CMD INQUIRY (0x12)", op, cdb0)
	}

	if err := d.Recover(); err != nil {
		t.Fatal(err)
	}
	h1, t1 := head(), tail()
	t.Logf("right after Recover: cmd_head %d cmd_tail %d", h1, t1)
	// reset_ring zeroes cmd_head and cmd_tail; the INQUIRY completed with
	// BUSY may already be queued again by now, at offset 0.
	if (h1 != 0 && h1 != h0) || t1 != 0 {
		t.Errorf("after Recover: cmd_head %d cmd_tail %d, want 0 (or %d: the retry) and 0", h1, t1, h0)
	}
	// The retried INQUIRY lands at offset 0 again: without the reset it
	// would follow the first entry and cmd_head would reach 2*%d.
	if waitHead("retry after reset", func(h uint32) bool { return h != 0 }) {
		time.Sleep(500 * time.Millisecond) // let a second command show, if any
		op, id, cdb0 := entry(0)
		t.Logf("after retry: cmd_head %d cmd_tail %d, entry at 0: op %d cmd_id %d cdb[0] %#x", head(), tail(), op, id, cdb0)
		if op != 1 || cdb0 != 0x12 || head() != h0 {
			t.Errorf("after reset: entry at 0 op %d cdb[0] %#x, cmd_head %d; want INQUIRY and cmd_head %d",
				op, cdb0, head(), h0)
		}
	}

	// Hard failure until the scan gives up and AddLUN returns.
	resets := 0
	giveUp := time.After(90 * time.Second)
	for done := false; !done; {
		select {
		case err := <-added:
			t.Logf("AddLUN after %d level-2 resets: %v", resets, err)
			if err == nil {
				t.Error("AddLUN found a disk although every command failed")
				lt.Remove()
			}
			done = true
		case <-time.After(200 * time.Millisecond):
			if head() != 0 {
				if err := d.ResetRing(2); err != nil {
					t.Fatal(err)
				}
				resets++
			}
		case <-giveUp:
			t.Fatal("AddLUN still blocked after 90 s of level-2 resets")
		}
	}
	if err := lt.Remove(); err != nil {
		t.Error(err)
	}
	if got := fabricTargets(t, "loopback"); len(got) != 0 {
		t.Errorf("loopback leftovers: %q", got)
	}
}
