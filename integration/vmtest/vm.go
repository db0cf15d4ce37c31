// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
)

// Defaults for Options.
const (
	DefaultTimeout  = 5 * time.Minute
	DefaultMemoryMB = 1024
)

// Options describe one guest run.
type Options struct {
	// Script is the shell script the guest runs (busybox sh, with GuestLib
	// sourced first and "set -e -x" in force, in /tmp). Its exit status is
	// Result.ExitCode.
	Script string
	// Files are copied into the share before boot: guest name (a path
	// relative to /mnt/host) -> host path. Modes are kept, so executables
	// stay executable.
	Files map[string]string
	// Net adds a user-mode (slirp) NIC: the guest's eth0 is 10.0.2.15/24 and
	// its TCP port 3260 is forwarded from 127.0.0.1:HostPort() on the host.
	// The guest can reach nothing else (restrict=on).
	Net bool
	// MemoryMB is the guest RAM (default DefaultMemoryMB).
	MemoryMB int
	// Timeout bounds the whole run, boot to poweroff (default
	// DefaultTimeout). The guest is killed when it expires.
	Timeout time.Duration
	// Console receives the guest console (kernel messages, script output),
	// line by line. Run and Boot default it to t.Log.
	Console io.Writer
	// NoTrace runs the script without "set -x".
	NoTrace bool
	// KernelArgs are added to the guest kernel's command line, e.g.
	// "clocksource=tsc tsc=reliable" for benchmarks.
	KernelArgs string
	// DiskMB, if positive, attaches an empty sparse raw image of that many
	// MiB as the guest's /dev/vda (virtio-blk, cache=none, aio=threads: the
	// guest's writes reach the host file with O_DIRECT rather than stay in
	// the host's page cache). The image is the share's .vmtest-disk0.img
	// and is removed with the share.
	DiskMB int
}

// Result is the outcome of a run whose script finished.
type Result struct {
	// ExitCode is the exit status of the guest script.
	ExitCode int
	// Console is everything the guest printed (CR removed).
	Console string
	// ShareDir is the host directory shared as /mnt/host; files the script
	// wrote there can be read until the VM is closed (for Run, until the end
	// of the test).
	ShareDir string
	// Elapsed is the wall time from starting qemu to its exit.
	Elapsed time.Duration
}

// Errors from VM.Wait when the script did not finish. They wrap the reason.
var (
	// ErrTimeout: the run exceeded Options.Timeout and the guest was killed.
	ErrTimeout = errors.New("vmtest: guest timed out")
	// ErrCrashed: qemu exited without the script's exit status: a kernel
	// panic, a harness setup failure in the guest, or a qemu error.
	ErrCrashed = errors.New("vmtest: guest ended without an exit status")
)

// VM is a running guest.
type VM struct {
	share   string
	port    int
	cmd     *exec.Cmd // the current qemu: wait replaces it on a reboot
	qemu    string
	args    []string
	cancel  context.CancelFunc
	timeout time.Duration
	timeCtx context.Context
	release func()
	start   time.Time

	done      chan struct{} // closed when qemu exited and the console is drained
	result    Result
	err       error
	closeOnce sync.Once
}

// Start boots a guest and returns at once; the script runs while the caller
// acts on the host (WaitReady, Signal, HostPort) and Wait collects the
// result. Close must be called (it kills a guest still running and removes
// the share). Prefer Run or Boot in tests: they also apply Require.
func Start(ctx context.Context, opts Options) (*VM, error) {
	if strings.ContainsFunc(opts.KernelArgs, unicode.IsControl) {
		return nil, fmt.Errorf("vmtest: kernel arguments %q contain a control character", opts.KernelArgs)
	}
	a, err := prepare(ctx)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MemoryMB <= 0 {
		opts.MemoryMB = DefaultMemoryMB
	}
	if opts.Console == nil {
		opts.Console = io.Discard
	}
	share, err := os.MkdirTemp("", "vmtest-share-")
	if err != nil {
		return nil, fmt.Errorf("vmtest: share: %w", err)
	}
	vm := &VM{share: share, done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(share)
			if vm.release != nil {
				vm.release()
			}
		}
	}()
	if err := vm.fillShare(opts); err != nil {
		return nil, err
	}
	// Wait for a slot before the timeout starts: time spent queueing behind
	// another guest is not the guest's fault.
	queued := time.Now()
	if vm.release, err = acquireSlot(ctx); err != nil {
		return nil, err
	}
	if d := time.Since(queued); d > time.Second {
		fmt.Fprintf(opts.Console, "vmtest: waited %s for a VM slot (LUNBRIDGE_VM_SLOTS=%d)\n", d.Round(time.Second), vmSlots())
	}
	args := []string{
		"-accel", "tcg", "-cpu", "max", // qemu64 lacks pclmul: crc32c-intel & co fail with ENODEV
		"-m", strconv.Itoa(opts.MemoryMB), "-smp", "2",
		"-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio",
		"-kernel", a.kernel, "-initrd", a.initrd,
		// panic=-1 with -no-reboot turns a guest panic into a qemu exit.
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 quiet loglevel=4 " + opts.KernelArgs),
		"-virtfs", "local,path=" + share + ",mount_tag=host,security_model=none",
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
	}
	if opts.DiskMB > 0 {
		img := filepath.Join(share, diskImage)
		if err := makeSparse(img, int64(opts.DiskMB)<<20); err != nil {
			return nil, err
		}
		args = append(args, "-drive", "file="+img+",if=virtio,format=raw,cache=none,aio=threads")
	}
	if opts.Net {
		if vm.port, err = freePort(); err != nil {
			return nil, err
		}
		args = append(args,
			"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:3260", vm.port),
			// romfile= skips the iPXE option ROM: faster, quieter boot.
			"-device", "virtio-net-pci,netdev=n0,romfile=")
	} else {
		args = append(args, "-nic", "none")
	}

	vm.timeCtx, vm.cancel = context.WithTimeout(ctx, opts.Timeout)
	vm.timeout = opts.Timeout
	vm.qemu, vm.args = a.qemu, args
	vm.start = time.Now()
	pr, err := vm.launch(opts.Console)
	if err != nil {
		vm.cancel()
		return nil, err
	}
	go vm.wait(pr, opts.Console)
	ok = true
	return vm, nil
}

// launch starts qemu and returns the read end of its console.
func (vm *VM) launch(console io.Writer) (*os.File, error) {
	vm.cmd = exec.CommandContext(vm.timeCtx, vm.qemu, vm.args...)
	// If the test process dies (a go test -timeout panic), take qemu with it
	// rather than leave a guest running for minutes.
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("vmtest: pipe: %w", err)
	}
	vm.cmd.Stdout, vm.cmd.Stderr = pw, pw // qemu errors land in the console too
	if err := vm.cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("vmtest: start qemu: %w", err)
	}
	pw.Close()
	fmt.Fprintf(console, "vmtest: qemu pid %d, share %s, timeout %s%s\n",
		vm.cmd.Process.Pid, vm.share, vm.timeout, vm.portNote())
	return pr, nil
}

func (vm *VM) portNote() string {
	if vm.port == 0 {
		return ""
	}
	return fmt.Sprintf(", guest :3260 at 127.0.0.1:%d", vm.port)
}

// fillShare writes the script, the config flags and opts.Files.
func (vm *VM) fillShare(opts Options) error {
	meta := filepath.Join(vm.share, ".vmtest")
	if err := os.MkdirAll(meta, 0o755); err != nil {
		return fmt.Errorf("vmtest: share: %w", err)
	}
	set := "set -e -x"
	if opts.NoTrace {
		set = "set -e"
	}
	run := ". /lib/vmtest.sh\n" + set + "\n" + opts.Script + "\n"
	if err := os.WriteFile(filepath.Join(meta, "run.sh"), []byte(run), 0o644); err != nil {
		return fmt.Errorf("vmtest: share: %w", err)
	}
	if opts.Net {
		if err := os.WriteFile(filepath.Join(meta, "net"), nil, 0o644); err != nil {
			return fmt.Errorf("vmtest: share: %w", err)
		}
	}
	for _, name := range sortedKeys(opts.Files) {
		dst := filepath.Join(vm.share, filepath.FromSlash(name))
		if !strings.HasPrefix(dst, vm.share+string(filepath.Separator)) || strings.HasPrefix(filepath.Clean(name), ".vmtest") {
			return fmt.Errorf("vmtest: share: bad guest name %q", name)
		}
		if err := copyFile(dst, opts.Files[name]); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("vmtest: share: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("vmtest: share: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("vmtest: share: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return fmt.Errorf("vmtest: share: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("vmtest: share: copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("vmtest: share: %w", err)
	}
	return nil
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago. qemu
// binds it for the hostfwd rule; only 127.0.0.1 is ever used.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("vmtest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// wait copies the console until qemu closes it, reaps qemu, and decides the
// outcome. It is the only goroutine Start starts; done is its join.
func (vm *VM) wait(console io.ReadCloser, w io.Writer) {
	defer close(vm.done)
	defer vm.release()
	defer vm.cancel()
	for boots := 1; ; boots++ {
		out, qerr := vm.copyConsole(console, w)
		timedOut := errors.Is(vm.timeCtx.Err(), context.DeadlineExceeded)
		canceled := vm.timeCtx.Err() != nil && !timedOut
		vm.result = Result{Console: out, ShareDir: vm.share, Elapsed: time.Since(vm.start)}
		fmt.Fprintf(w, "vmtest: qemu exited after %s\n", vm.result.Elapsed.Round(100*time.Millisecond))
		data, rerr := os.ReadFile(filepath.Join(vm.share, ".vmtest", "exit"))
		code, perr := strconv.Atoi(strings.TrimSpace(string(data)))
		switch {
		case rerr == nil && perr == nil:
			vm.result.ExitCode = code
		case timedOut:
			vm.err = fmt.Errorf("%w after %s (killed)%s", ErrTimeout, vm.timeout, tail(out, 30))
		case canceled:
			vm.err = fmt.Errorf("vmtest: guest killed: %w", context.Cause(vm.timeCtx))
		case diedBooting(out) && boots <= bootRetries:
			// Nothing of the test ran in the guest yet: boot it again.
			fmt.Fprintf(w, "vmtest: the guest died while booting, before its script started "+
				"(a kernel or emulator fault, not the test's); booting again (%d of %d)\n", boots, bootRetries)
			next, err := vm.launch(w)
			if err != nil {
				vm.err = fmt.Errorf("%w: reboot after a boot crash: %v%s", ErrCrashed, err, tail(out, 30))
				return
			}
			console = next
			continue
		default:
			reason := "qemu exited: " + fmt.Sprint(qerr)
			if qerr == nil {
				reason = "qemu exited 0 (guest powered off or panicked)"
			}
			if i := strings.LastIndex(out, setupFailedLine); i >= 0 {
				reason = strings.SplitN(out[i:], "\n", 2)[0]
			}
			vm.err = fmt.Errorf("%w: %s%s", ErrCrashed, reason, tail(out, 30))
		}
		return
	}
}

// bootRetries is how many times a guest that dies before its script starts
// is booted again. Under TCG a guest kernel rarely panics in early boot (CI
// saw "Fatal exception in interrupt" 1.3 s into a 6.12 boot); that says
// nothing about the test, whose script never ran.
const bootRetries = 1

// readyLine is what the guest's init prints just before it runs the script;
// setupFailedLine starts what it prints when its own setup fails.
const (
	readyLine       = "vmtest: guest ready"
	setupFailedLine = "vmtest: SETUP FAILED:"
)

// diedBooting reports whether a guest whose qemu exited without an exit
// status did so before its script started: no ready line, and no harness
// setup failure (a broken setup fails the same way every time).
func diedBooting(console string) bool {
	return !strings.Contains(console, readyLine) && !strings.Contains(console, setupFailedLine)
}

// copyConsole copies one qemu's console to w until qemu closes it, reaps
// qemu, and returns what it printed (cleaned) and qemu's exit error.
func (vm *VM) copyConsole(console io.ReadCloser, w io.Writer) (string, error) {
	var all bytes.Buffer
	sc := bufio.NewScanner(console)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := cleanLine(sc.Text())
		all.WriteString(line)
		all.WriteByte('\n')
		fmt.Fprintln(w, line)
	}
	// The read end is ours; qemu has exited or closed stdout.
	console.Close()
	return all.String(), vm.cmd.Wait()
}

// ansiRE matches the terminal control sequences SeaBIOS and the kernel's
// console print (CSI sequences and ESC c, "reset").
var ansiRE = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|c)`)

// cleanLine drops CRs and terminal control sequences from a console line.
func cleanLine(s string) string {
	return ansiRE.ReplaceAllString(strings.ReplaceAll(s, "\r", ""), "")
}

// tail returns the last n lines of s, indented, for error messages.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\nlast console lines:\n\t" + strings.Join(lines, "\n\t")
}

// ShareDir is the host directory the guest sees as /mnt/host.
func (vm *VM) ShareDir() string { return vm.share }

// HostPort is the 127.0.0.1 port forwarded to the guest's TCP port 3260
// (0 without Options.Net).
func (vm *VM) HostPort() int { return vm.port }

// WaitReady waits until the guest script runs `signal NAME`. It fails if
// ctx ends or the guest exits first.
func (vm *VM) WaitReady(ctx context.Context, name string) error {
	p := filepath.Join(vm.share, ".vmtest", "guest", name)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vmtest: waiting for guest signal %q: %w", name, ctx.Err())
		case <-vm.done:
			if _, err := os.Stat(p); err == nil {
				return nil
			}
			return fmt.Errorf("vmtest: guest exited before signal %q", name)
		case <-tick.C:
		}
	}
}

// Signal lets the guest's `waitfor NAME` return.
func (vm *VM) Signal(name string) error {
	dir := filepath.Join(vm.share, ".vmtest", "host")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("vmtest: signal %s: %w", name, err)
	}
	// Rename so the guest never sees a half-made entry.
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		return fmt.Errorf("vmtest: signal %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("vmtest: signal %s: %w", name, err)
	}
	return nil
}

// Wait waits for the guest to power off and returns the script's result. The
// error is ErrTimeout or ErrCrashed (wrapped, with the console's last lines)
// when there is no exit status; Result.Console is filled in either case.
func (vm *VM) Wait() (Result, error) {
	<-vm.done
	return vm.result, vm.err
}

// Done is closed when the guest has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Close kills the guest if it still runs, waits for it and removes the
// share. It is safe to call more than once.
func (vm *VM) Close() error {
	vm.closeOnce.Do(func() {
		vm.cancel()
		<-vm.done
		os.RemoveAll(vm.share)
	})
	return nil
}

// diskImage is the name of Options.DiskMB's image in the share directory.
const diskImage = ".vmtest-disk0.img"

// makeSparse creates path as a sparse file of size bytes.
func makeSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("vmtest: disk image: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("vmtest: disk image: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("vmtest: disk image: %w", err)
	}
	return nil
}
