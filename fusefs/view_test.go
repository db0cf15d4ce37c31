// SPDX-License-Identifier: Apache-2.0

package fusefs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/bridge"
)

// fakeLUNs is an in-memory daemon: it applies the canonical commands to
// its LUNInfo values and records them.
type fakeLUNs struct {
	mu       sync.Mutex
	luns     map[string]*bridge.LUNInfo // protected by mu
	calls    []string                   // "NAME: LINE"; protected by mu
	failWith error                      // returned by Control; protected by mu
	onChange func()                     // called after export/remove (View.Refresh)
}

func newFake(names ...string) *fakeLUNs {
	f := &fakeLUNs{luns: make(map[string]*bridge.LUNInfo)}
	for _, n := range names {
		l := testLUN(n)
		f.luns[n] = &l
	}
	return f
}

func (f *fakeLUNs) List() []bridge.LUNInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []bridge.LUNInfo
	for _, l := range f.luns {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b bridge.LUNInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (f *fakeLUNs) Control(ctx context.Context, name, line string) error {
	changed, err := f.control(name, line)
	if changed && f.onChange != nil {
		f.onChange()
	}
	return err
}

func (f *fakeLUNs) control(name, line string) (changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name+": "+line)
	if f.failWith != nil {
		return false, f.failWith
	}
	fields := strings.Fields(line)
	if name == "" {
		switch fields[0] {
		case "export":
			if _, ok := f.luns[fields[1]]; ok {
				return false, fmt.Errorf("export %s: %w", fields[1], bridge.ErrExists)
			}
			l := testLUN(fields[1])
			l.Path = fields[2]
			f.luns[l.Name] = &l
			return true, nil
		case "remove":
			if _, ok := f.luns[fields[1]]; !ok {
				return false, fmt.Errorf("remove %s: %w", fields[1], bridge.ErrNotFound)
			}
			delete(f.luns, fields[1])
			return true, nil
		}
		return false, fmt.Errorf("fake: %q: %w", line, bridge.ErrInvalid)
	}
	l, ok := f.luns[name]
	if !ok {
		return false, fmt.Errorf("lun %s: %w", name, bridge.ErrNotFound)
	}
	switch fields[0] {
	case "online":
		l.State = bridge.StateOnline
	case "offline":
		l.State = bridge.StateOffline
	case "read-only":
		l.ReadOnly = fields[1] == "1"
	case "resize":
		_, err := fmt.Sscan(fields[1], &l.Size)
		return false, err
	case "flush":
	case "reset-stats":
		l.Stats = bridge.Stats{}
	case "snapshot", "delete-snapshot":
	default:
		return false, fmt.Errorf("fake: %q: %w", line, bridge.ErrInvalid)
	}
	return false, nil
}

// takeCalls returns and forgets the Control calls so far.
func (f *fakeLUNs) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeLUNs) update(name string, fn func(*bridge.LUNInfo)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.luns[name])
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

// needRoot skips a test of what only root may do, as the daemon is.
func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s", what)
	}
}

// testLogger sends the view's log to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startView runs a View on mnt until the returned stop is called (or the
// test ends); stop returns Run's error.
func startView(t *testing.T, luns LUNs, opts Options) (v *View, stop func() error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.Version == "" {
		opts.Version = "lunbridge test"
	}
	v = New(luns, opts)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- v.Run(ctx) }()
	select {
	case <-v.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-errc
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return v, stop
}

// mountFake mounts a view of f on a fresh directory and returns its path.
func mountFake(t *testing.T, f *fakeLUNs) (mnt string, v *View) {
	t.Helper()
	needMount(t)
	mnt = t.TempDir()
	v, _ = startView(t, f, Options{Mountpoint: mnt})
	f.onChange = v.Refresh
	return mnt, v
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestViewRead(t *testing.T) {
	f := newFake("d0", "d1")
	mnt, _ := mountFake(t, f)
	l := testLUN("d0")

	if got := readString(t, filepath.Join(mnt, "version")); got != "lunbridge test\n" {
		t.Errorf("version = %q", got)
	}
	if got, want := readString(t, filepath.Join(mnt, "luns")), string(renderLUNs(nil, f.List(), nil)); got != want {
		t.Errorf("luns = %q, want %q", got, want)
	}
	for file, want := range map[string]string{
		"info":       string(renderInfo(nil, nil, &l)),
		"stats":      string(renderStats(nil, nil, &l)),
		"stats.json": string(renderStatsJSON(nil, nil, &l)),
		"latency":    string(renderLatency(nil, nil, &l)),
		"state":      "online\n",
		"read_only":  "0\n",
		"size":       "1073741824\n",
	} {
		p := filepath.Join(mnt, "d0", file)
		if got := readString(t, p); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
		// st_size is the size of the content, for tools that trust it.
		if st, err := os.Stat(p); err != nil || st.Size() != int64(len(want)) {
			t.Errorf("stat %s: size %v, %v, want %d", file, st.Size(), err, len(want))
		}
	}
	var m map[string]uint64
	if err := json.Unmarshal([]byte(readString(t, filepath.Join(mnt, "d0", "stats.json"))), &m); err != nil || m["write_ops"] != 101 {
		t.Errorf("stats.json: write_ops = %d, %v", m["write_ops"], err)
	}

	names := func(dir string) []string {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("readdir: %v", err)
		}
		var n []string
		for _, e := range ents {
			n = append(n, e.Name())
		}
		return n
	}
	if got, want := names(mnt), []string{"d0", "d1", "luns", "version"}; !slices.Equal(got, want) {
		t.Errorf("ls / = %q, want %q", got, want)
	}
	want := []string{"ctl", "info", "latency", "read_only", "size", "snapshots", "state", "stats", "stats.json"}
	if got := names(filepath.Join(mnt, "d1")); !slices.Equal(got, want) {
		t.Errorf("ls /d1 = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(mnt, "nope")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat /nope: %v, want ENOENT", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "d0", "nope")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat /d0/nope: %v, want ENOENT", err)
	}
}

func TestViewModes(t *testing.T) {
	f := newFake("d0")
	mnt, _ := mountFake(t, f)
	for path, want := range map[string]os.FileMode{
		".":             os.ModeDir | 0o555,
		"d0":            os.ModeDir | 0o555,
		"version":       0o444,
		"luns":          0o644,
		"d0/info":       0o444,
		"d0/stats":      0o444,
		"d0/stats.json": 0o444,
		"d0/latency":    0o444,
		"d0/state":      0o644,
		"d0/read_only":  0o644,
		"d0/size":       0o644,
		"d0/ctl":        0o200,
	} {
		st, err := os.Stat(filepath.Join(mnt, path))
		if err != nil {
			t.Errorf("stat %s: %v", path, err)
			continue
		}
		if st.Mode() != want {
			t.Errorf("mode of %s = %v, want %v", path, st.Mode(), want)
		}
	}
	// Root is let through by the kernel; the view itself refuses.
	for _, tc := range []struct {
		path string
		flag int
	}{
		{"version", os.O_WRONLY},
		{"d0/info", os.O_WRONLY},
		{"d0/stats", os.O_RDWR},
		{"d0/stats.json", os.O_WRONLY | os.O_TRUNC},
		{"d0/latency", os.O_WRONLY},
		{"d0/ctl", os.O_RDONLY},
		{"d0/ctl", os.O_RDWR},
	} {
		fd, err := os.OpenFile(filepath.Join(mnt, tc.path), tc.flag, 0)
		if err == nil {
			fd.Close()
		}
		if !errors.Is(err, syscall.EACCES) {
			t.Errorf("open %s flags %#x: %v, want EACCES", tc.path, tc.flag, err)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "d0", "info"), []byte("x\n"), 0); !errors.Is(err, syscall.EACCES) {
		t.Errorf("write info: %v, want EACCES", err)
	}
	if err := os.Chmod(filepath.Join(mnt, "d0", "state"), 0o666); err == nil {
		t.Errorf("chmod state succeeded")
	}
	if err := os.Mkdir(filepath.Join(mnt, "d9"), 0o755); err == nil {
		t.Errorf("mkdir in the view succeeded")
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("refused opens called Control: %q", calls)
	}
}

// TestViewWrite writes with os.WriteFile (open O_TRUNC, one write) and
// checks the command that reached the daemon, or the errno and that none
// did.
func TestViewWrite(t *testing.T) {
	f := newFake("d0")
	mnt, _ := mountFake(t, f)
	for _, tc := range []struct {
		file, data string
		err        syscall.Errno
		call       string // "" if Control must not be called
	}{
		{"d0/state", "offline\n", 0, "d0: offline"},
		{"d0/state", "online", 0, "d0: online"},
		{"d0/state", "offline extra\n", syscall.EINVAL, ""},
		{"d0/state", "online\noffline\n", syscall.EINVAL, ""},
		{"d0/state", "\n", syscall.EINVAL, ""},
		{"d0/state", "failed\n", syscall.EINVAL, ""},
		{"d0/read_only", "1\n", 0, "d0: read-only 1"},
		{"d0/read_only", "yes\n", syscall.EINVAL, ""},
		{"d0/size", "2G\n", 0, "d0: resize 2147483648"},
		{"d0/size", "1G\n", syscall.EINVAL, ""}, // now smaller
		{"d0/size", "2147483648\n", 0, ""},      // unchanged: no-op
		{"d0/size", "lots\n", syscall.EINVAL, ""},
		{"d0/ctl", "flush\n", 0, "d0: flush"},
		{"d0/ctl", "reset-stats\n", 0, "d0: reset-stats"},
		{"d0/ctl", "reboot\n", syscall.EINVAL, ""},
		{"d0/ctl", "snapshot s1\n", 0, "d0: snapshot s1"},
		{"d0/ctl", "snapshot s1 rate=64M\n", 0, "d0: snapshot s1 rate=67108864"},
		{"d0/ctl", "snapshot a/b\n", syscall.EINVAL, ""},
		{"d0/ctl", "snapshot a..b\n", syscall.EINVAL, ""},
		{"d0/ctl", "delete-snapshot s1\n", 0, "d0: delete-snapshot s1"},
		{"luns", "export d1 /srv/d1.img size=64M fabric=loop\n", 0, ": export d1 /srv/d1.img size=67108864 fabric=loop"},
		{"luns", "export d1 /srv/other.img\n", syscall.EEXIST, ": export d1 /srv/other.img"},
		{"luns", "export d2 rel.img\n", syscall.EINVAL, ""},
		{"luns", "export d2 /x bogus=1\n", syscall.EINVAL, ""},
		{"luns", "remove d1\n", 0, ": remove d1"},
		{"luns", "remove d1\n", syscall.ENOENT, ": remove d1"},
		{"luns", "remove\n", syscall.EINVAL, ""},
	} {
		err := os.WriteFile(filepath.Join(mnt, tc.file), []byte(tc.data), 0)
		if tc.err == 0 && err != nil || tc.err != 0 && !errors.Is(err, tc.err) {
			t.Errorf("write %s %q: %v, want %v", tc.file, tc.data, err, tc.err)
		}
		calls := f.takeCalls()
		if want := []string{tc.call}; tc.call == "" && len(calls) != 0 || tc.call != "" && !slices.Equal(calls, want) {
			t.Errorf("write %s %q: Control calls %q, want %q", tc.file, tc.data, calls, tc.call)
		}
	}
	if got := readString(t, filepath.Join(mnt, "d0", "size")); got != "2147483648\n" {
		t.Errorf("size after writes = %q", got)
	}
	if got := readString(t, filepath.Join(mnt, "d0", "read_only")); got != "1\n" {
		t.Errorf("read_only after writes = %q", got)
	}

	// Errors from the daemon that wrap no sentinel are EIO.
	f.mu.Lock()
	f.failWith = errors.New("backing store gone")
	f.mu.Unlock()
	if err := os.WriteFile(filepath.Join(mnt, "d0", "ctl"), []byte("flush\n"), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("flush with failing daemon: %v, want EIO", err)
	}
}

// TestViewShell drives the view the way a user does, through sh.
func TestViewShell(t *testing.T) {
	f := newFake("d0")
	mnt, _ := mountFake(t, f)
	sh := func(script string) (string, error) {
		// cd in the shell, not with cmd.Dir: the child's chdir would run
		// between vfork and exec, with the forking thread holding its P
		// in a raw syscall; if a stop-the-world starts then, the view's
		// own server cannot answer the chdir and this process hangs.
		cmd := exec.Command("sh", "-c", "cd "+mnt+" && "+script)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mustSh := func(script string) string {
		t.Helper()
		out, err := sh(script)
		if err != nil {
			t.Fatalf("sh -c %q: %v\n%s", script, err, out)
		}
		return out
	}

	mustSh("echo offline > d0/state")
	if got := mustSh("cat d0/state"); got != "offline\n" {
		t.Errorf("state after echo offline = %q", got)
	}
	// dash's builtin echo reports any write error as "I/O error"; the
	// coreutils one shows the errno.
	if out, err := sh("echo sideways > d0/state"); err == nil {
		t.Errorf("echo sideways > state: %v, %q; want a failure", err, out)
	}
	if out, err := sh("env echo sideways > d0/state"); err == nil || !strings.Contains(out, "nvalid argument") {
		t.Errorf("env echo sideways > state: %v, %q; want EINVAL", err, out)
	}
	if got := mustSh("cat d0/state"); got != "offline\n" {
		t.Errorf("state after a rejected write = %q", got)
	}
	// Two lines in one write(2) are refused as a whole.
	if _, err := sh("printf 'online\\noffline\\n' > d0/state"); err == nil {
		t.Errorf("two lines in one write were accepted")
	}
	// Appending works too: the offset does not matter.
	mustSh("echo online >> d0/state")
	mustSh("echo 20G > d0/size")
	if got := mustSh("cat d0/size"); got != "21474836480\n" {
		t.Errorf("size after echo 20G = %q", got)
	}
	if _, err := sh("echo 10G > d0/size"); err == nil {
		t.Errorf("shrinking was accepted")
	}
	if _, err := sh("echo hi > d0/stats"); err == nil {
		t.Errorf("echo into stats was accepted")
	}
	mustSh("echo 'export d1 /srv/d1.img size=1G' > luns")
	if got := mustSh("awk '$1==\"state\"{print $2}' d1/info"); got != "online\n" {
		t.Errorf("d1 state from info = %q", got)
	}
	if got := mustSh("grep -c . luns"); got != "2\n" {
		t.Errorf("luns has %q lines, want 2", got)
	}
	mustSh("echo reset-stats > d0/ctl")
	if got := mustSh("awk '$1==\"total_ops\"{print $2}' d0/stats"); got != "0\n" {
		t.Errorf("total_ops after reset-stats = %q", got)
	}
	want := []string{"d0: offline", "d0: online", "d0: resize 21474836480",
		": export d1 /srv/d1.img size=1073741824", "d0: reset-stats"}
	if got := f.takeCalls(); !slices.Equal(got, want) {
		t.Errorf("Control calls = %q, want %q", got, want)
	}
}

// TestViewSnapshot checks that a reader sees the counters as they were at
// open, however they move while it reads, and that the next open sees the
// new ones.
func TestViewSnapshot(t *testing.T) {
	f := newFake("d0")
	mnt, _ := mountFake(t, f)
	p := filepath.Join(mnt, "d0", "stats")
	fd, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	before := testLUN("d0")
	want := string(renderStats(nil, nil, &before))

	head := make([]byte, 10)
	if _, err := fd.Read(head); err != nil {
		t.Fatal(err)
	}
	f.update("d0", func(l *bridge.LUNInfo) {
		l.Stats.Kinds[bridge.KindRead].Ops += 1000
		l.Stats.InFlight = 0
	})
	rest, err := readAll(fd)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(head) + rest; got != want {
		t.Errorf("stats read across an update =\n%s\nwant the snapshot at open\n%s", got, want)
	}
	_, vals := parseStats(t, readString(t, p))
	if vals["read_ops"] != 1001 || vals["in_flight"] != 0 {
		t.Errorf("new open: read_ops %d in_flight %d, want 1001 0", vals["read_ops"], vals["in_flight"])
	}
}

func readAll(fd *os.File) (string, error) {
	var b strings.Builder
	buf := make([]byte, 7) // small reads: many requests against one handle
	for {
		n, err := fd.Read(buf)
		b.Write(buf[:n])
		if err != nil || n == 0 {
			if err != nil && err.Error() == "EOF" {
				err = nil
			}
			return b.String(), err
		}
	}
}

// TestViewRefresh checks that directories follow the LUNs, and that
// Refresh invalidates a directory the kernel still holds.
func TestViewRefresh(t *testing.T) {
	f := newFake("d0")
	mnt, v := mountFake(t, f)
	d1 := filepath.Join(mnt, "d1")
	if _, err := os.Stat(d1); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("stat d1 before export: %v", err)
	}
	f.mu.Lock()
	l := testLUN("d1")
	f.luns["d1"] = &l
	f.mu.Unlock()
	v.Refresh()
	if _, err := os.Stat(filepath.Join(d1, "stats")); err != nil {
		t.Fatalf("stat d1/stats after adding d1: %v", err)
	}

	// Hold d1 open as a directory, as a shell's working directory would.
	dir, err := os.Open(d1)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	held, err := os.Open(filepath.Join(d1, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	f.mu.Lock()
	delete(f.luns, "d1")
	f.mu.Unlock()
	v.Refresh()
	if _, err := os.Stat(d1); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat d1 after removal: %v, want ENOENT", err)
	}
	if _, err := os.Stat(filepath.Join(d1, "stats")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat d1/stats after removal: %v, want ENOENT", err)
	}
	// Relative to the held directory: the LUN is gone.
	if _, err := dir.ReadDir(-1); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("readdir of held d1 after removal: %v, want ENOENT", err)
	}
	if err := unix.Faccessat(int(dir.Fd()), "info", unix.R_OK, 0); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("access d1/info via held dir fd: %v, want ENOENT", err)
	}
	// A file opened before still reads its snapshot; writes find no LUN.
	if b, err := readAll(held); err != nil || b != "online\n" {
		t.Errorf("read held state = %q, %v", b, err)
	}
	if _, err := held.WriteString("offline\n"); err == nil {
		t.Errorf("write to a held state file of a removed LUN succeeded")
	}
	ents, err := os.ReadDir(mnt)
	if err != nil || len(ents) != 3 {
		t.Errorf("ls / after removal: %v, %v", ents, err)
	}

	// Export and remove through /luns: Control calls Refresh from inside
	// the write, which must not deadlock.
	for _, line := range []string{"export d2 /srv/d2.img", "remove d0"} {
		if err := os.WriteFile(filepath.Join(mnt, "luns"), []byte(line+"\n"), 0); err != nil {
			t.Fatalf("write luns %q: %v", line, err)
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, "d2", "info")); err != nil {
		t.Errorf("d2 after export: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "d0")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("d0 after remove: %v, want ENOENT", err)
	}
}

// TestViewUnmountWithOpenFile checks that Run unmounts and returns even
// though a file of the view is held open.
func TestViewUnmountWithOpenFile(t *testing.T) {
	needRoot(t, "a lazy unmount (umount2 MNT_DETACH) and aborting the connection in fusectl")
	needMount(t)
	f := newFake("d0")
	mnt := t.TempDir()
	_, stop := startView(t, f, Options{Mountpoint: mnt})
	held, err := os.Open(filepath.Join(mnt, "d0", "stats"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := stop(); err != nil {
		t.Fatalf("Run with a file held open: %v", err)
	}
	if isFUSE(t, mnt) {
		t.Errorf("%s is still a FUSE mount after Run returned", mnt)
	}
	if _, err := held.Read(make([]byte, 10)); err == nil {
		t.Errorf("read from a file of an aborted mount succeeded")
	}
}

func isFUSE(t *testing.T, path string) bool {
	t.Helper()
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		t.Fatalf("statfs %s: %v", path, err)
	}
	return s.Type == unix.FUSE_SUPER_MAGIC
}

// TestViewAllowOther checks that only root sees the view unless AllowOther
// is set, and that with it another user can read but not write.
func TestViewAllowOther(t *testing.T) {
	needRoot(t, "allow_other (without user_allow_other in /etc/fuse.conf) and switching users")
	needMount(t)
	const nobody = 65534
	asNobody := func(script string) (string, error) {
		cmd := exec.Command("sh", "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow_other=%v", allow), func(t *testing.T) {
			f := newFake("d0")
			mnt := t.TempDir()
			// Let nobody reach the mountpoint.
			if err := os.Chmod(filepath.Dir(mnt), 0o755); err != nil {
				t.Fatal(err)
			}
			startView(t, f, Options{Mountpoint: mnt, AllowOther: allow})
			out, err := asNobody("cat " + mnt + "/d0/state")
			if allow != (err == nil) {
				t.Errorf("nobody reading state: %v %q, want success %v", err, out, allow)
			}
			if allow && out != "online\n" {
				t.Errorf("nobody read state %q", out)
			}
			if _, err := asNobody("echo offline > " + mnt + "/d0/state"); err == nil {
				t.Errorf("nobody wrote state")
			}
			if calls := f.takeCalls(); len(calls) != 0 {
				t.Errorf("nobody reached Control: %q", calls)
			}
		})
	}
}

// A child process of the test binary mounts a view and waits to be
// killed, leaving a stale mount.
const childMountEnv = "FUSEFS_TEST_CHILD_MOUNT"

func TestChildMount(t *testing.T) {
	mnt := os.Getenv(childMountEnv)
	if mnt == "" {
		t.Skip("helper for TestViewStaleMount")
	}
	v := New(newFake("d0"), Options{Mountpoint: mnt, Version: "child"})
	go v.Run(context.Background())
	<-v.Ready()
	fmt.Println("mounted")
	select {} // until SIGKILL
}

func TestViewStaleMount(t *testing.T) {
	needRoot(t, "detaching a stale mount (umount2 MNT_DETACH)")
	needMount(t)
	mnt := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildMount$", "-test.count=1")
	cmd.Env = append(os.Environ(), childMountEnv+"="+mnt)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "mounted\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q, %v", line, err)
	}
	if got := readString(t, filepath.Join(mnt, "version")); got != "child\n" {
		t.Fatalf("child's version = %q", got)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(mnt); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat after killing the child: %v, want ENOTCONN (a stale mount)", err)
	}

	startView(t, newFake("d0"), Options{Mountpoint: mnt, Version: "parent"})
	if got := readString(t, filepath.Join(mnt, "version")); got != "parent\n" {
		t.Errorf("version after replacing the stale mount = %q", got)
	}
}

// TestViewRefusesLiveMount checks that a second view does not stack on a
// live one.
func TestViewRefusesLiveMount(t *testing.T) {
	needMount(t)
	mnt := t.TempDir()
	startView(t, newFake("d0"), Options{Mountpoint: mnt})
	err := New(newFake(), Options{Mountpoint: mnt}).Run(context.Background())
	if !errors.Is(err, syscall.EBUSY) {
		t.Errorf("second Run on a live mount: %v, want EBUSY", err)
	}
}
