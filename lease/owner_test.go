// SPDX-License-Identifier: Apache-2.0

package lease

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func backingFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func claim(t *testing.T, path string, gateway bool) (*Hold, error) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the hold has its own descriptor
	h, err := Claim(f, Owner{PID: os.Getpid(), Host: hostname(t), LUN: "d0", Gateway: gateway})
	if err == nil {
		t.Cleanup(func() { h.Close() })
	}
	return h, err
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestClaimConflicts is the ownership matrix: plain exports exclude
// everyone, gateways share with gateways only.
func TestClaimConflicts(t *testing.T) {
	for _, tc := range []struct {
		name          string
		first, second bool // gateway?
		refused       bool
		want          string
	}{
		{"export/export", false, false, true, "is already exported by another lunbridge"},
		{"export/gateway", false, true, true, "is exported by a plain (non-gateway) lunbridge"},
		{"gateway/export", true, false, true, "is shared by the gateways of a group"},
		{"gateway/gateway", true, true, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := backingFile(t)
			if _, err := claim(t, path, tc.first); err != nil {
				t.Fatalf("first claim: %v", err)
			}
			_, err := claim(t, path, tc.second)
			if !tc.refused {
				if err != nil {
					t.Fatalf("second claim = %v, want nil", err)
				}
				return
			}
			var herr *HeldError
			if !errors.Is(err, ErrHeld) || !errors.As(err, &herr) {
				t.Fatalf("second claim = %v, want a *HeldError", err)
			}
			msg := err.Error()
			wantWho := fmt.Sprintf("pid %d on %s, LUN d0", os.Getpid(), hostname(t))
			for _, w := range []string{path, tc.want, wantWho} {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message %q is more than one line", msg)
			}
			if herr.Gateways != tc.first {
				t.Errorf("Gateways = %v, want %v", herr.Gateways, tc.first)
			}
		})
	}
}

// TestClaimByOtherPath: a symlink to the file is the same file, and the
// refusal still finds the owner record beside the file itself.
func TestClaimByOtherPath(t *testing.T) {
	path := backingFile(t)
	link := filepath.Join(t.TempDir(), "link.img")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := claim(t, path, false); err != nil {
		t.Fatal(err)
	}
	_, err := claim(t, link, false)
	var herr *HeldError
	if !errors.As(err, &herr) || herr.Owner == nil || herr.Owner.PID != os.Getpid() {
		t.Fatalf("claim through a symlink = %v, want a refusal naming pid %d", err, os.Getpid())
	}
}

// TestClaimRelease: Close releases the lock and removes the owner record.
func TestClaimRelease(t *testing.T) {
	path := backingFile(t)
	h, err := claim(t, path, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path + OwnerRecordSuffix)
	if err != nil || !strings.HasPrefix(string(b), fmt.Sprintf("lunbridge-owner pid=%d ", os.Getpid())) {
		t.Fatalf("owner record = %q, %v", b, err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + OwnerRecordSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("owner record after Close: %v, want it gone", err)
	}
	if _, err := claim(t, path, false); err != nil {
		t.Fatalf("claim after Close = %v", err)
	}
}

// TestStaleRecord: a record left by a dead process never blocks (the lock
// decides), and never names the wrong holder.
func TestStaleRecord(t *testing.T) {
	path := backingFile(t)
	dead := deadPID(t)
	stale := Owner{PID: dead, Host: hostname(t), LUN: "old", Since: time.Now()}
	if err := os.WriteFile(path+OwnerRecordSuffix, stale.encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := claim(t, path, false)
	if err != nil {
		t.Fatalf("claim over a stale record = %v", err)
	}
	// The holder could not write its record (a read-only directory,
	// say): the stale one must not be named as the holder.
	if err := os.WriteFile(path+OwnerRecordSuffix, stale.encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = claim(t, path, false)
	var herr *HeldError
	if !errors.As(err, &herr) || herr.Owner != nil || !strings.Contains(err.Error(), "holder unknown") {
		t.Fatalf("claim = %v, want a refusal with the holder unknown", err)
	}
	h.Close()
}

// TestRecordSymlink: the owner record is never written through a
// symlink.
func TestRecordSymlink(t *testing.T) {
	path := backingFile(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, path+OwnerRecordSuffix); err != nil {
		t.Fatal(err)
	}
	h, err := claim(t, path, false)
	if err != nil {
		t.Fatal(err)
	}
	if h.RecordErr == nil {
		t.Error("RecordErr = nil, want the refusal to follow the symlink")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("victim = %q: written through the symlink", b)
	}
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Skip("no /bin/true:", err)
	}
	return cmd.Process.Pid
}

// TestClaimDiesWithHolder: a holder killed with SIGKILL leaves its
// record, but not its lock: the next claim succeeds.
func TestClaimDiesWithHolder(t *testing.T) {
	if p := os.Getenv("LEASE_TEST_HOLD"); p != "" {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err == nil {
			_, err = Claim(f, Owner{PID: os.Getpid(), Host: "h", LUN: "child"})
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("held")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	path := backingFile(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestClaimDiesWithHolder$")
	cmd.Env = append(os.Environ(), "LEASE_TEST_HOLD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64)
	n, _ := out.Read(b)
	if !strings.HasPrefix(string(b[:n]), "held") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("holder said %q", b[:n])
	}
	_, err = claim(t, path, false)
	var herr *HeldError
	if !errors.As(err, &herr) || herr.Owner == nil || herr.Owner.PID != cmd.Process.Pid || herr.Owner.LUN != "child" {
		t.Fatalf("claim while the child holds it = %v, want a refusal naming pid %d", err, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := claim(t, path, false); err != nil {
		t.Fatalf("claim after the holder was killed = %v", err)
	}
	if b, err := os.ReadFile(path + OwnerRecordSuffix); err != nil || !strings.Contains(string(b), "pid="+strconv.Itoa(os.Getpid())) {
		t.Errorf("owner record = %q, %v; want this process's", b, err)
	}
}

// TestClaimDevice: a device node is locked like a file, but no owner
// record is written beside it (that would be a file in /dev).
func TestClaimDevice(t *testing.T) {
	dir := t.TempDir()
	node := filepath.Join(dir, "null")
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Skip("cannot make a device node:", err)
	}
	if _, err := claim(t, node, false); err != nil {
		t.Fatal(err)
	}
	_, err := claim(t, node, false)
	if !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "holder unknown") {
		t.Fatalf("second claim of the device = %v, want a refusal with the holder unknown", err)
	}
	if _, err := os.Lstat(node + OwnerRecordSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("owner record beside a device node: %v", err)
	}
}
