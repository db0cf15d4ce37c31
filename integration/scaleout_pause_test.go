// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bufio"
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
// client's locks dropped, a WRITE is sent to the stopped owner through a
// session logged in before (it queues in its ring), the other gateway
// takes over and acknowledges writes, and the owner is resumed. The resumed gateway must not
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
	// A session logged in to the owner while it serves (libiscsi's login
	// ends with TEST UNIT READY), to send a WRITE once it is stopped.
	qctx, qcancel := context.WithTimeout(ctx, 90*time.Second)
	defer qcancel()
	session := exec.CommandContext(qctx, "qemu-io", "-f", "raw", path1)
	stdin, err := session.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := session.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	session.Stderr = session.Stdout
	if err := session.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The session is logged in once a read through it came back.
	fmt.Fprintf(stdin, "read 0 512\n")
	for l := range lines {
		if strings.Contains(l, "read 512/512 bytes") {
			break
		}
	}
	if err := vm.Signal("pause1"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitReady(ctx, "paused"); err != nil {
		t.Fatal(err)
	}
	// A WRITE to the stopped owner, without FUA, then SYNCHRONIZE
	// CACHE: it waits in the ring (the kernel times it out for the
	// initiator after --cmd-timeout) and is there when the owner
	// resumes, which must not carry it out.
	fmt.Fprintf(stdin, "write -P %d %d %d\nflush\nquit\n", 0x51, 3*chunk, chunk)
	stdin.Close()
	if err := vm.WaitReady(ctx, "taken"); err != nil {
		t.Fatal(err)
	}
	var out []string
	for l := range lines {
		out = append(out, l)
	}
	serr := session.Wait()
	t.Logf("WRITE sent to the stopped owner: %v\n%s", serr, strings.Join(out, "\n"))
	text := strings.Join(out, "\n")
	if strings.Contains(text, "wrote ") && !strings.Contains(text, "failed") {
		t.Error("the stopped owner acknowledged a write")
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
	// From here on the initiator behaves as a multipath one: it moves
	// to the other path on an error. The old owner may legitimately get
	// the LUN back: a WRITE that waited in its ring while it was stopped
	// reaches it as a standby, which counts as an initiator's wish for
	// that path (the implicit transition), and after the hold-down the
	// new owner hands over. Either way only one gateway acknowledges.
	paths := []string{path1, path2}
	cur := 1
	// multipath runs do through the current path, moving to the other
	// one on each error, until it succeeds; what names it in the log.
	multipath := func(what string, do func(path string) error) {
		t.Helper()
		start := time.Now()
		for {
			err := do(paths[cur])
			if err == nil {
				return
			}
			if time.Since(start) > 90*time.Second {
				t.Fatalf("%s: no path took it for 90 s: %v", what, err)
			}
			t.Logf("%s through path %d: %v", what, cur+1, err)
			cur = 1 - cur
			time.Sleep(500 * time.Millisecond)
		}
	}
	for k := 12; k < 16; k++ {
		multipath(fmt.Sprintf("chunk %d", k), func(path string) error { return write(path, k, byte(0x80+k)) })
	}

	// The read-back too: a hand-back may begin after the last write,
	// and the gateway handing over answers NOT READY (ASYMMETRIC ACCESS
	// STATE TRANSITION) meanwhile, which a multipath initiator retries.
	back := filepath.Join(t.TempDir(), "back.raw")
	multipath("read-back", func(path string) error {
		out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", "raw", path, back).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
		return nil
	})
	checkChunks(t, fmt.Sprintf("read through gateway %d", cur+1), back, want, chunk)
	if err := vm.Signal("finish"); err != nil {
		t.Fatal(err)
	}
	res := waitScript(t, vm)
	checkChunks(t, "the shared file", filepath.Join(res.ShareDir, "lun.img"), want, chunk)
}
