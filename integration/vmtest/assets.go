// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Modules is the list of kernel modules the guest loads, in no particular
// order: the insmod order, with every dependency, comes from
// `modprobe --show-depends` against the kernel package's own modules.dep.
//
// crc32c_generic and the virtio/9p modules are not symbol dependencies of
// anything else here: iscsi_target_mod asks the crypto API for "crc32c" by
// name, and the guest needs 9p over virtio for the host share.
var Modules = []string{
	"configfs", "target_core_mod", "target_core_user", "target_core_file",
	"target_core_iblock", "target_core_pscsi", "tcm_loop", "iscsi_target_mod",
	"scsi_mod", "sd_mod", "sg", "uio", "fuse",
	"virtio_pci", "virtio_net", "virtio_blk", "9p", "9pnet_virtio",
	"crc32c_generic",
	// The Linux initiator stack for open-iscsi in the guest; ext4 and
	// XFS on lunbridge LUNs.
	"iscsi_tcp", "ext4", "xfs",
	// brd (and xfs above): GlusterFS bricks need user.* xattrs, which
	// tmpfs lacks on 6.1; the Gluster harness puts XFS on a RAM disk.
	"brd",
	// dm-multipath and the ALUA device handler for multipathd in the
	// guest (TestMultipath). scsi_dh_alua is loaded before any disk
	// appears, so it attaches by itself to LUNs that report TPGS != 0;
	// multipath-tools 0.9 picks "service-time 0" as path selector.
	"dm_multipath", "dm_round_robin", "dm_service_time", "scsi_dh_alua",
}

// ErrMissingAsset reports that something the VM needs (a host tool, the
// kernel package) is not available on this machine. Require turns it into
// t.Skip, or t.Fatal when LUNBRIDGE_INTEGRATION=require.
var ErrMissingAsset = errors.New("vmtest: missing asset")

// assets are the prepared, cached inputs of every boot.
type assets struct {
	qemu    string // qemu-system-x86_64
	kernel  string // vmlinuz
	initrd  string // initramfs.cpio.gz
	kver    string // e.g. 6.1.0-56-amd64
	modules []string
}

var (
	assetsOnce sync.Once
	assetsVal  *assets
	assetsErr  error
)

// prepare returns the cached assets, building what is missing. It runs once
// per process; concurrent test processes serialize on a lock file in the
// cache directory.
func prepare(ctx context.Context) (*assets, error) {
	assetsOnce.Do(func() {
		assetsVal, assetsErr = prepareAssets(ctx)
	})
	return assetsVal, assetsErr
}

func missing(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMissingAsset, fmt.Sprintf(format, args...))
}

// lookTool finds a host tool in PATH, then in the sbin directories that a
// non-root PATH often lacks.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", missing("%s not found (run scripts/install-deps.sh)", name)
}

// CacheDir is where downloaded and built assets are kept between runs:
// $LUNBRIDGE_CACHE, or .cache/vmtest at the root of the module.
func CacheDir() (string, error) {
	if d := os.Getenv("LUNBRIDGE_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "vmtest"), nil
}

// RepoRoot returns the directory holding go.mod, found by walking up from
// the working directory (go test runs each package in its own directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("vmtest: repo root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vmtest: repo root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// lockCache takes an exclusive flock on the cache directory so that two test
// processes (go test runs packages in parallel) do not download or build the
// same asset at once. The returned func releases it.
func lockCache(ctx context.Context, dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("vmtest: cache lock: %w", err)
	}
	if err := flockCtx(ctx, f, syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("vmtest: cache lock: %w", err)
	}
	return func() { f.Close() }, nil // closing the fd drops the lock
}

func prepareAssets(ctx context.Context) (*assets, error) {
	a := &assets{}
	var err error
	if a.qemu = os.Getenv("VMTEST_QEMU"); a.qemu == "" {
		if a.qemu, err = lookTool("qemu-system-x86_64"); err != nil {
			return nil, err
		}
	}
	bb, err := staticBusybox()
	if err != nil {
		return nil, err
	}
	for _, tool := range []string{"dpkg-deb", "depmod", "modprobe"} {
		if _, err := lookTool(tool); err != nil {
			return nil, err
		}
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("vmtest: cache: %w", err)
	}
	unlock, err := lockCache(ctx, cache)
	if err != nil {
		return nil, err
	}
	defer unlock()

	deb, err := kernelDeb(ctx, cache)
	if err != nil {
		return nil, err
	}
	root, kver, err := extractKernel(ctx, cache, deb)
	if err != nil {
		return nil, err
	}
	a.kver = kver
	a.kernel = filepath.Join(root, "boot", "vmlinuz-"+kver)
	if _, err := os.Stat(a.kernel); err != nil {
		return nil, missing("kernel image: %v", err)
	}
	a.modules, err = moduleOrder(ctx, root, kver, Modules)
	if err != nil {
		return nil, err
	}
	a.initrd, err = buildInitramfs(cache, root, kver, bb, a.modules)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// staticBusybox finds busybox and checks that it is statically linked (the
// initramfs has no libc): Debian's busybox-static package, not busybox.
func staticBusybox() (string, error) {
	p, err := lookTool("busybox")
	if err != nil {
		return "", missing("busybox not found (apt-get install busybox-static)")
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", missing("busybox %s: %v", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", missing("%s is dynamically linked (apt-get install busybox-static)", p)
		}
	}
	return p, nil
}

// KernelEnv names the environment variable that selects the guest kernel
// line: "6.1" (the default, Debian 12's own kernel) or "6.12" (Debian 12's
// security archive, the kernel of Debian 13).
const KernelEnv = "LUNBRIDGE_KERNEL"

// kernelLine is one Debian kernel series the harness can boot. The package
// is never hard-coded: a metapackage names the current ABI, so a point
// release (6.1.0-57 -> -58, 6.12.118 -> 6.12.119) needs no change here.
type kernelLine struct {
	name string // the LUNBRIDGE_KERNEL value
	// meta is the metapackage whose Depends: names the current image.
	meta string
	// dep matches that dependency in `apt-cache depends meta`.
	dep *regexp.Regexp
	// suffix is appended to the dependency: 6.12's metapackage names the
	// signed image, whose contents are the -unsigned package's plus a
	// signature; the -unsigned package is the one with no other Depends.
	suffix string
	// glob matches this line's .deb files in the cache, for the offline
	// fallback; it must never match another line's packages.
	glob string
}

var kernelLines = map[string]kernelLine{
	"6.1": {
		name: "6.1",
		meta: "linux-image-amd64",
		dep:  regexp.MustCompile(`Depends:\s*(linux-image-6\.1\.[0-9][^\s]*-amd64)\b`),
		glob: "linux-image-6.1.0-*-amd64_*.deb",
	},
	"6.12": {
		name:   "6.12",
		meta:   "linux-image-6.12-amd64",
		dep:    regexp.MustCompile(`Depends:\s*(linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64)\b`),
		suffix: "-unsigned",
		glob:   "linux-image-6.12.*-amd64-unsigned_*.deb",
	},
}

// KernelLine returns the selected kernel line, "6.1" or "6.12", from
// LUNBRIDGE_KERNEL (empty means 6.1). Tests use it where the two kernels
// behave differently (docs/kernels.md lists where).
func KernelLine() string {
	if v := os.Getenv(KernelEnv); v != "" {
		return v
	}
	return "6.1"
}

func selectedKernelLine() (kernelLine, error) {
	l, ok := kernelLines[KernelLine()]
	if !ok {
		return kernelLine{}, fmt.Errorf("vmtest: %s=%q: want 6.1 or 6.12", KernelEnv, KernelLine())
	}
	return l, nil
}

// kernelDeb returns the path of the selected line's linux-image .deb in the
// cache, downloading it with apt-get if needed. VMTEST_KERNEL names a .deb
// to use instead.
func kernelDeb(ctx context.Context, cache string) (string, error) {
	if p := os.Getenv("VMTEST_KERNEL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", missing("VMTEST_KERNEL: %v", err)
		}
		return filepath.Abs(p)
	}
	line, err := selectedKernelLine()
	if err != nil {
		return "", err
	}
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("vmtest: cache: %w", err)
	}
	pkg, resolveErr := resolveKernelPackage(ctx, cache, line)
	if resolveErr != nil {
		// Offline or not Debian: fall back to a package downloaded earlier.
		old, _ := filepath.Glob(filepath.Join(debs, line.glob))
		if len(old) > 0 {
			sort.Strings(old)
			return old[len(old)-1], nil
		}
		return "", resolveErr
	}
	if have, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb")); len(have) > 0 {
		return have[0], nil
	}
	aptGet, err := lookTool("apt-get")
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(debs, "download-")
	if err != nil {
		return "", fmt.Errorf("vmtest: cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, aptGet, "download", pkg)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", missing("apt-get download %s: %v\n%s", pkg, err, out)
	}
	got, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(got) != 1 {
		return "", missing("apt-get download %s: no .deb produced", pkg)
	}
	dst := filepath.Join(debs, filepath.Base(got[0]))
	if err := os.Rename(got[0], dst); err != nil {
		return "", fmt.Errorf("vmtest: cache: %w", err)
	}
	return dst, nil
}

// resolveKernelPackage asks apt which image the line's metapackage depends
// on. apt-cache takes seconds, so the answer is remembered in the cache (one
// memo per line) together with the mtime of apt's lists: it is asked again
// only after an apt-get update.
func resolveKernelPackage(ctx context.Context, cache string, line kernelLine) (string, error) {
	memo := filepath.Join(cache, "debs", "resolved")
	if line.name != "6.1" {
		memo += "-" + line.name // 6.1 keeps the memo's old name
	}
	stamp := ""
	if st, err := os.Stat("/var/lib/apt/lists"); err == nil {
		stamp = st.ModTime().UTC().Format(time.RFC3339Nano)
		if b, err := os.ReadFile(memo); err == nil {
			if f := strings.Fields(string(b)); len(f) == 2 && f[0] == stamp {
				return f[1], nil
			}
		}
	}
	pkg, err := aptKernelPackage(ctx, line)
	if err == nil && stamp != "" {
		os.WriteFile(memo, []byte(stamp+" "+pkg+"\n"), 0o644) // only a hint: ignore errors
	}
	return pkg, err
}

func aptKernelPackage(ctx context.Context, line kernelLine) (string, error) {
	aptCache, err := lookTool("apt-cache")
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, aptCache, "depends", line.meta).Output()
	if err != nil {
		return "", missing("apt-cache depends %s: %v (run apt-get update)", line.meta, err)
	}
	return parseKernelDepends(line, out)
}

// parseKernelDepends picks the image package out of `apt-cache depends`
// output for the line's metapackage.
func parseKernelDepends(line kernelLine, out []byte) (string, error) {
	m := line.dep.FindSubmatch(out)
	if m == nil {
		return "", missing("apt-cache depends %s names no kernel image of the %s line (run apt-get update):\n%s", line.meta, line.name, out)
	}
	return string(m[1]) + line.suffix, nil
}

// extractKernel unpacks the .deb once into cache/kernel/<deb name>/ and runs
// depmod there (the package ships no modules.dep). It returns the root and
// the kernel release.
func extractKernel(ctx context.Context, cache, deb string) (root, kver string, err error) {
	name := strings.TrimSuffix(filepath.Base(deb), ".deb")
	root = filepath.Join(cache, "kernel", name)
	if _, err := os.Stat(filepath.Join(root, ".complete")); err != nil {
		if err := unpackKernel(ctx, root, deb); err != nil {
			return "", "", err
		}
	}
	kvers, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*"))
	if len(kvers) != 1 {
		return "", "", missing("%s: want one lib/modules/<release>, found %d", deb, len(kvers))
	}
	return root, filepath.Base(kvers[0]), nil
}

func unpackKernel(ctx context.Context, root, deb string) error {
	if err := os.RemoveAll(root); err != nil {
		return fmt.Errorf("vmtest: cache: %w", err)
	}
	tmp := root + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("vmtest: cache: %w", err)
	}
	dpkgDeb, _ := lookTool("dpkg-deb")
	if out, err := exec.CommandContext(ctx, dpkgDeb, "-x", deb, tmp).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return missing("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	kvers, _ := filepath.Glob(filepath.Join(tmp, "lib", "modules", "*"))
	if len(kvers) != 1 {
		os.RemoveAll(tmp)
		return missing("%s: want one lib/modules/<release>, found %d", deb, len(kvers))
	}
	depmod, _ := lookTool("depmod")
	if out, err := exec.CommandContext(ctx, depmod, "-b", tmp, filepath.Base(kvers[0])).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("vmtest: depmod: %w\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return fmt.Errorf("vmtest: cache: %w", err)
	}
	if err := os.Rename(tmp, root); err != nil {
		return fmt.Errorf("vmtest: cache: %w", err)
	}
	return nil
}

// moduleOrder returns the .ko paths (relative to lib/modules/KVER) to insmod,
// dependencies first, each once. modprobe prints "insmod /path" lines for
// loadable modules and "builtin NAME" for built-in ones.
func moduleOrder(ctx context.Context, root, kver string, mods []string) ([]string, error) {
	modprobe, _ := lookTool("modprobe")
	base := filepath.Join(root, "lib", "modules", kver) + "/"
	seen := map[string]bool{}
	var order []string
	for _, m := range mods {
		out, err := exec.CommandContext(ctx, modprobe, "-d", root, "-S", kver, "--show-depends", m).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("vmtest: modprobe --show-depends %s: %w\n%s", m, err, out)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "insmod" {
				continue
			}
			rel, ok := strings.CutPrefix(filepath.Clean(f[1]), filepath.Clean(base)+"/")
			if !ok {
				return nil, fmt.Errorf("vmtest: modprobe --show-depends %s: path %s outside %s", m, f[1], base)
			}
			if !seen[rel] {
				seen[rel] = true
				order = append(order, rel)
			}
		}
	}
	return order, nil
}

// buildInitramfs writes cache/initramfs/<hash>.cpio.gz unless it exists. The
// hash covers everything in the image (busybox, modules, init and guest
// library), so a changed input gives a new image and an unchanged one is
// reused across runs.
func buildInitramfs(cache, root, kver, busybox string, modules []string) (string, error) {
	files := map[string][]byte{} // guest path -> content
	perms := map[string]uint32{}
	add := func(name string, perm uint32, data []byte) {
		files[name] = data
		perms[name] = perm
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return "", missing("busybox: %v", err)
	}
	add("bin/busybox", 0o755, bb)
	add("init", 0o755, []byte(initScript))
	add("lib/vmtest.sh", 0o644, []byte(GuestLib))
	add("bin/hostrun", 0o755, []byte(hostrunScript))
	add("sbin/modprobe", 0o755, []byte(modprobeScript))
	modDir := filepath.Join(root, "lib", "modules", kver)
	order := make([]string, 0, len(modules))
	for _, m := range modules {
		name, data, err := readModule(modDir, m)
		if err != nil {
			return "", err
		}
		add("lib/modules/"+name, 0o644, data)
		order = append(order, name)
	}
	add("lib/modules/vmtest.order", 0o644, []byte(strings.Join(order, "\n")+"\n"))

	h := sha256.New()
	for _, name := range sortedKeys(files) {
		fmt.Fprintf(h, "%s %o %d\n", name, perms[name], len(files[name]))
		h.Write(files[name])
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	dir := filepath.Join(cache, "initramfs")
	out := filepath.Join(dir, "initramfs-"+kver+"-"+sum+".cpio.gz")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("vmtest: cache: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("vmtest: cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := writeInitramfs(tmp, files, perms); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("vmtest: initramfs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("vmtest: initramfs: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("vmtest: initramfs: %w", err)
	}
	return out, nil
}

// moduleDecompressors are the host tools that unpack compressed modules:
// Debian's 6.12 packages ship .ko.xz, and busybox insmod loads only plain
// .ko (it has no decompressor, and the kernel's own in-kernel decompression
// is for finit_module with MODULE_INIT_COMPRESSED_FILE, which busybox does
// not use).
var moduleDecompressors = map[string]string{".xz": "xz", ".zst": "zstd"}

// readModule returns the plain .ko name and contents of module rel (a path
// under dir as modprobe printed it), decompressing .ko.xz and .ko.zst.
func readModule(dir, rel string) (string, []byte, error) {
	ext := filepath.Ext(rel)
	tool, compressed := moduleDecompressors[ext]
	if !compressed {
		data, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return "", nil, fmt.Errorf("vmtest: module: %w", err)
		}
		return rel, data, nil
	}
	bin, err := lookTool(tool)
	if err != nil {
		return "", nil, missing("%s needs %s to decompress: %v", rel, tool, err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-dc", filepath.Join(dir, rel))
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		return "", nil, fmt.Errorf("vmtest: module %s: %s -dc: %w: %s", rel, tool, err, stderr.Bytes())
	}
	return strings.TrimSuffix(rel, ext), data, nil
}

// guestDirs exist in every guest: mount points and LIO's persistent
// reservation state directory (PR OUT fails with 02/08/00 without it).
var guestDirs = []string{"proc", "sys", "dev", "tmp", "run", "root", "etc/target/pr",
	"mnt/host", "hostroot", "sbin", "usr/bin", "usr/sbin"}

func writeInitramfs(w io.Writer, files map[string][]byte, perms map[string]uint32) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return fmt.Errorf("vmtest: initramfs: %w", err)
	}
	cw := newCPIOWriter(zw)
	for _, d := range guestDirs {
		cw.mkdirAll(d)
	}
	cw.symlink("bin/sh", "busybox")
	for _, name := range sortedKeys(files) {
		cw.file(name, perms[name], files[name])
	}
	if err := cw.close(); err != nil {
		return fmt.Errorf("vmtest: initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("vmtest: initramfs: %w", err)
	}
	return nil
}
