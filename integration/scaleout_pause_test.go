// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestScaleOutPause is issue 29's paused owner on the real kernel
// (testdata/scaleout-pause.sh): two gateways export one file, each through
// its own FUSE client (loopfs -locks). The host writes chunks WITHOUT FUA,
// each followed by SYNCHRONIZE CACHE (qemu-io's flush), through the owner;
// the owner daemon and its client are then stopped with SIGSTOP and the
// client's locks dropped, one more write is sent to the stopped owner
// (it queues in its ring), the other gateway takes over and acknowledges
// writes, and the owner is resumed. The resumed gateway must not
// acknowledge anything (the queued write nor new ones), and every chunk,
// read back through the new owner and in the file, must hold the last
// write acknowledged for it.
func TestScaleOutPause(t *testing.T) {
	vmtest.RequireTools(t, "qemu-io", "qemu-img")
	const (
		iqn1  = "iqn.2026-11.org.lunbridge.test:gw1"
		iqn2  = "iqn.2026-11.org.lunbridge.test:gw2"
		chunk = 64 << 10
		size  = 8 << 20
	)
	vm := vmtest.Boot(t, vmtest.Options{
		Net: true,
		Files: map[string]string{
			"lunbridge": vmtest.BuildLunbridge(t),
			"loopfs":    vmtest.BuildCommand(t, "./internal/cmd/loopfs"),
		},
		Script: guestScript("scaleout-pause", "IQN1", iqn1, "IQN2", iqn2),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	if err := vm.WaitReady(ctx, "ready"); err != nil {
		t.Fatal(err)
	}
	url := func(iqn string) string { return fmt.Sprintf("iscsi://127.0.0.1:%d/%s/0", vm.HostPort(), iqn) }
	path1, path2 := url(iqn1), url(iqn2)

	want := make([]byte, size)
	// write sends one chunk of pattern p without FUA, then SYNCHRONIZE
	// CACHE, through path; nil means both were acknowledged, and want
	// then holds the chunk.
	write := func(path string, k int, p byte) error {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(wctx, "qemu-io", "-f", "raw",
			"-c", fmt.Sprintf("write -P %d %d %d", p, k*chunk, chunk), "-c", "flush", path).CombinedOutput()
		if err == nil && strings.Contains(string(out), "failed") {
			err = fmt.Errorf("qemu-io: %s", strings.TrimSpace(string(out)))
		}
		if err != nil {
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
		copy(want[k*chunk:(k+1)*chunk], bytes.Repeat([]byte{p}, chunk))
		return nil
	}
	mustWrite := func(path string, k int, p byte) {
		t.Helper()
		start := time.Now()
		for {
			err := write(path, k, p)
			if err == nil {
				return
			}
			if time.Since(start) > 60*time.Second {
				t.Fatalf("chunk %d: not acknowledged for 60 s: %v", k, err)
			}
			t.Logf("chunk %d: %v; again", k, err)
			time.Sleep(500 * time.Millisecond)
		}
	}

	for k := range 8 {
		mustWrite(path1, k, byte(1+k))
	}
	if err := vm.Signal("pause1"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitReady(ctx, "paused"); err != nil {
		t.Fatal(err)
	}
	// A write to the stopped owner: it waits in the ring (the kernel
	// times it out for the initiator after --cmd-timeout) and is there
	// when the owner resumes.
	queued := make(chan error, 1)
	go func() { queued <- write(path1, 3, 0x51) }()
	if err := vm.WaitReady(ctx, "taken"); err != nil {
		t.Fatal(err)
	}
	if err := <-queued; err == nil {
		t.Error("the stopped owner acknowledged a write")
	} else {
		t.Logf("write to the stopped owner: %v", err)
	}
	for k := 2; k < 12; k++ {
		mustWrite(path2, k, byte(0x80+k))
	}
	if err := vm.Signal("resume1"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitReady(ctx, "resumed"); err != nil {
		t.Fatal(err)
	}
	// The resumed gateway acknowledges nothing, and the write queued in
	// its ring while it was stopped did not land.
	for _, k := range []int{2, 3, 12} {
		if err := write(path1, k, 0x61); err == nil {
			t.Errorf("chunk %d: the resumed old owner acknowledged a write", k)
		}
	}
	for k := 12; k < 16; k++ {
		mustWrite(path2, k, byte(0x80+k))
	}

	back := filepath.Join(t.TempDir(), "back.raw")
	hostCmd(ctx, t, "qemu-img", "convert", "-f", "raw", "-O", "raw", path2, back)
	checkChunks(t, "read through gateway 2", back, want, chunk)
	if err := vm.Signal("finish"); err != nil {
		t.Fatal(err)
	}
	res := waitScript(t, vm)
	checkChunks(t, "the shared file", filepath.Join(res.ShareDir, "lun.img"), want, chunk)
}
